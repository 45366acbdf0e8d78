"""Would the SimCLR block read better from two stages of the encoder than from its last one?

A candidate change, tried on the tuning set under a rule written before its first run (below), and
dropped. The variant's SimCLR block is the global average of stage 2 (64 features) beside that of
stage 3 (128, what the product reads), each standardised per feature and scaled to unit total
variance, the pair scaled to unit total variance; the patch block sits beside it as in the product,
and the learner chooses among the blocks as a round does. Both variants read the same trained
encoder (this device's setting, cached by `representation_joint.py` or trained here), the same
random labels per seed, and are scored on the test split.

The rule (2026-12-05, before any run): adopt if, on shapes10k, the product's mean is at least the
current one's at 100, 300 and 1,000 labels and at least one point higher averaged over the three.

    python benchmarks/representation_layers.py --datasets shapes10k,mnist5k \
        --cache /work/main/benchmarks/results/cache > benchmarks/results/representation_layers.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.simulate import SimulationConfig, encoder_for, load_simulation_data, representation_for  # noqa: E402

if TYPE_CHECKING:
    from models.representation import ConvEncoder

# conv.body's modules up to the end of stage 2: two (conv, BN, ReLU) stages of six and a pooling
# between them, plus the pooling before stage 3 left out.
STAGE_2_END = 13


def stage_2_features(conv: ConvEncoder, pixels: np.ndarray) -> np.ndarray:
    """[N, 64] global averages of stage 2's output, encoded the way the product encodes (batches,
    the layout the encoder trained in, float32)."""
    from torch import nn

    from models.representation import encode

    class Stage2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = conv.body[:STAGE_2_END]
            self.out_dim = conv.widths[1]

        def forward(self, x: Any) -> Any:
            return self.body(x).mean(dim=(2, 3))

    return encode(Stage2(), pixels)


def unit_block(pool: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised per feature (pool statistics), then scaled to unit total variance over the pool."""
    mean, std = pool.mean(0), pool.std(0) + 1e-6
    z_pool, z_test = (pool - mean) / std, (test - mean) / std
    scale = np.sqrt(z_pool.var(0).sum())
    return z_pool / scale, z_test / scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k,mnist5k")
    parser.add_argument("--budgets", default="100,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/suggestlab-bench/cache"))
    args = parser.parse_args()

    from models.learner import PoolGraph, fit_learner

    budgets = [int(b) for b in args.budgets.split(",")]
    print("# The SimCLR block from stages 2 and 3 of the encoder, against stage 3 alone")
    print()
    print(f"Command: `python benchmarks/representation_layers.py {' '.join(sys.argv[1:])}`")
    print()
    print(
        f"Random labels, {args.seeds} seeds (the same labels for both variants), test accuracy of the product's "
        "learner (it chooses the block) and of a head on the SimCLR block alone, mean over seeds."
    )
    for name in args.datasets.split(","):
        data = load_simulation_data(name)
        config = SimulationConfig(strategies=["random"])
        pool, test = representation_for(data, config, args.cache)
        conv = encoder_for(data, config, args.cache).conv.cpu()
        last = conv.out_dim
        stage_2 = unit_block(stage_2_features(conv, data.pool_x), stage_2_features(conv, data.test_x))
        stage_3 = unit_block(pool[:, :last], test[:, :last])
        both = [np.hstack([a, b]) / np.sqrt(2) for a, b in zip(stage_2, stage_3, strict=True)]
        with_patches = [
            np.ascontiguousarray(np.hstack([block, features[:, last:]]), dtype=np.float32)
            for block, features in zip(both, (pool, test), strict=True)
        ]
        variants = {
            "stage 3 (the product)": (pool, test, last),
            "stages 2 + 3": (with_patches[0], with_patches[1], both[0].shape[1]),
        }
        print()
        print(f"## {name} (pool {len(pool)}, test {len(test)})")
        print()
        print("| variant | labels | product | SimCLR block alone | product, seed by seed |")
        print("|---|---|---|---|---|")
        product: dict[tuple[str, int], float] = {}
        for variant, (features, test_features, width) in variants.items():
            blocks = [width, features.shape[1] - width]
            simclr, simclr_test = (
                np.ascontiguousarray(features[:, :width]),
                np.ascontiguousarray(test_features[:, :width]),
            )
            graph, simclr_graph = PoolGraph.build(features), PoolGraph.build(simclr)
            for budget in budgets:
                joint_scores, alone_scores = [], []
                for seed in range(args.seeds):
                    labelled = np.random.default_rng(seed).choice(len(features), budget, replace=False)
                    y = data.pool_y[labelled]
                    n_classes = len(data.classes)
                    learner = fit_learner(features, labelled, y, n_classes, graph=graph, seed=seed, blocks=blocks)
                    joint_scores.append(float((learner.predict_proba(test_features).argmax(1) == data.test_y).mean()))
                    alone = fit_learner(simclr, labelled, y, n_classes, graph=simclr_graph, seed=seed)
                    alone_scores.append(float((alone.predict_proba(simclr_test).argmax(1) == data.test_y).mean()))
                product[(variant, budget)] = float(np.mean(joint_scores))
                seeds = ", ".join(f"{s:.3f}" for s in joint_scores)
                print(f"| {variant} | {budget} | {np.mean(joint_scores):.4f} | {np.mean(alone_scores):.4f} | {seeds} |")
        names = list(variants)
        gains = [100 * (product[(names[1], b)] - product[(names[0], b)]) for b in budgets]
        print()
        print(
            f"Product, stages 2 + 3 minus stage 3, at {', '.join(map(str, budgets))} labels: "
            + " / ".join(f"{g:+.2f}" for g in gains)
            + f" points (mean {np.mean(gains):+.2f})."
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
