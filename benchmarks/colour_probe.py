"""A probe, not the product: would a block of colour words beside the representation's blocks lift the
learner where the classes differ by colour, and what would it cost where colour is noise?

The CPU setting's SimCLR block sees every view with a full hue turn and half of them in grayscale, and
the patch block reads each patch along its own colour axis, so neither knows which hue a thing is
(NOTES, stop 49). The colour block here is the patch recipe with one-pixel patches: k-means on the
pool's pixel colours (K words), the triangle activation of every pixel, summed over the image's four
quadrants, standardised and projected on its top principal components, scaled to unit total
variance like the other blocks. The learner is `models.learner.fit_learner` with the blocks of the
joint representation (the product's ensemble), once on today's blocks and once with the colour
block as a third; the kNN graph is built on each variant's features. Random labels, the same for
both variants of a seed; test accuracy, mean ± 95% interval over seeds.

    python benchmarks/colour_probe.py --datasets fruits10k-rgb > benchmarks/results/colour_probe-fruits10k-rgb.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.representation_joint import joint_representation, learner_accuracy  # noqa: E402

WORDS = 32
OUT_DIM = 64
SAMPLED_PIXELS = 100_000


def _pooled(x: np.ndarray, words: torch.Tensor) -> torch.Tensor:
    """[N, 4 * WORDS] triangle activations of every pixel's colour, summed over the four quadrants."""
    out = []
    for start in range(0, len(x), 256):
        batch = torch.as_tensor(np.asarray(x[start : start + 256], dtype=np.float32))
        n, channels, side, _ = batch.shape
        distance = torch.cdist(batch.permute(0, 2, 3, 1).reshape(-1, channels), words)
        active = (distance.mean(-1, keepdim=True) - distance).clamp(min=0).view(n, side, side, -1)
        half = side // 2
        quadrants = (active[:, :half, :half], active[:, :half, half:], active[:, half:, :half], active[:, half:, half:])
        out.append(torch.cat([q.sum((1, 2)) for q in quadrants], dim=1))
    return torch.cat(out).double()


def colour_block(pool_x: np.ndarray, test_x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The pool's and the test split's colour blocks, learned from the pool alone."""
    from models.patches import _kmeans

    rng = np.random.default_rng(seed)
    images = rng.integers(0, len(pool_x), SAMPLED_PIXELS)
    rows, cols = rng.integers(0, pool_x.shape[-1], (2, SAMPLED_PIXELS))
    pixels = torch.as_tensor(np.asarray(pool_x[images, :, rows, cols], dtype=np.float32))
    words = _kmeans(pixels, WORDS, torch.Generator().manual_seed(seed))
    pool, test = _pooled(pool_x, words), _pooled(test_x, words)
    mean, scale = pool.mean(0), pool.std(0, unbiased=False) + 1e-6
    pool, test = (pool - mean) / scale, (test - mean) / scale
    values, vectors = torch.linalg.eigh(pool.T @ pool / len(pool))
    top = torch.argsort(values, descending=True)[:OUT_DIM]
    norm = values[top].clamp(min=0).sum().sqrt()
    return (pool @ vectors[:, top] / norm).float().numpy(), (test @ vectors[:, top] / norm).float().numpy()


def main() -> int:
    from models.learner import PoolGraph

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="fruits10k-rgb")
    parser.add_argument("--labels", default="100,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    args = parser.parse_args()
    budgets = [int(b) for b in args.labels.split(",")]
    print("# A colour block beside the representation's blocks (a probe, not the product)")
    print()
    print(f"Command: `python benchmarks/colour_probe.py {' '.join(sys.argv[1:])}`")
    print()
    print(f"Random labels, {args.seeds} seeds, the same labels for both variants of a seed; test accuracy, mean ± 95%.")
    for name in args.datasets.split(","):
        data, pool, test, blocks, made = joint_representation(name, args.cache)
        started = time.monotonic()
        colour_pool, colour_test = colour_block(data.pool_x, data.test_x)
        took = time.monotonic() - started
        variants = {
            "today's blocks": (pool, test, blocks),
            "with the colour block": (
                np.hstack([pool, colour_pool]),
                np.hstack([test, colour_test]),
                [*blocks, OUT_DIM],
            ),
        }
        graphs = {key: PoolGraph.build(np.ascontiguousarray(v[0])) for key, v in variants.items()}
        print()
        print(f"## {name} (representation {made}; colour block learned and applied in {took:.0f} s)")
        print()
        print("| labels | " + " | ".join(variants) + " | difference (points, paired ± 95%) |")
        print("|---|---|---|---|")
        for budget in budgets:
            accuracy: dict[str, list[float]] = {key: [] for key in variants}
            for seed in range(args.seeds):
                labelled = np.random.default_rng(seed).choice(len(pool), budget, replace=False)
                for key, (features, test_features, sizes) in variants.items():
                    score, _ = learner_accuracy(data, features, test_features, labelled, graphs[key], seed, sizes)
                    accuracy[key].append(score)
            cells = []
            for values in accuracy.values():
                half = 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values))
                cells.append(f"{np.mean(values):.3f} ± {half:.3f}")
            gain = 100 * (np.asarray(accuracy["with the colour block"]) - np.asarray(accuracy["today's blocks"]))
            half = 1.96 * float(np.std(gain, ddof=1)) / np.sqrt(len(gain))
            print(f"| {budget} | " + " | ".join(cells) + f" | {gain.mean():+.1f} ± {half:.1f} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
