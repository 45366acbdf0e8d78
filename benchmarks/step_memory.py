"""Peak memory of one round's step over a large pool in a learned representation, above its inputs.

The round worker at a million images peaked at 9.25 GB (round_1m.md) and no structure in it was
measured. This runs `models.active.run_step`, the step a round runs, on N pool images of D float32
features (ten Gaussian classes; memory does not depend on what the features show) with the pool's
kNN graph given, as the worker's warm cache gives it, and reads the process's peak resident memory
(VmHWM) after, against what was resident before. Each strategy runs in its own process, since the peak only goes up.
The pixels are a zero-copy view (the head alone reads no pixels), so what is measured is the step's
own working memory: the task model's predictions over every candidate, and the selection.

    python benchmarks/step_memory.py --out benchmarks/results/step_memory.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def reset_peak() -> None:
    """Sets the peak (VmHWM) back to what is resident now (Linux 4.0+), so the inputs' own
    temporaries (making the features) do not hide the step's peak."""
    Path("/proc/self/clear_refs").write_text("5")


def pool(n: int, dim: int, k: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, object]:
    """Features [n, dim], their classes, and a kNN graph of the same shape as PoolGraph.build's (k
    neighbours of the same class per image, symmetrised and normalised), built without a search."""
    import scipy.sparse as sp

    from models.learner import PoolGraph

    rng = np.random.default_rng(seed)
    classes = rng.integers(0, n_classes, n)
    centres = rng.standard_normal((n_classes, dim)).astype(np.float32)
    features = rng.standard_normal((n, dim), dtype=np.float32)
    features += 2 * centres[classes]
    members = [np.flatnonzero(classes == c) for c in range(n_classes)]
    neighbours = np.empty((n, k), dtype=np.int64)
    for rows in members:
        neighbours[rows] = rows[rng.integers(0, len(rows), (len(rows), k))]
    weights = rng.uniform(0.1, 1.0, n * k)
    w = sp.csr_matrix((weights, (np.repeat(np.arange(n), k), neighbours.ravel())), shape=(n, n))
    w = w + w.T
    d = sp.diags(1 / np.sqrt(np.asarray(w.sum(1)).ravel() + 1e-12))
    return features, classes, PoolGraph(neighbours=neighbours, weights=(d @ w @ d).tocsr())


def one_step(strategy: str, n: int, dim: int, labels: int, batch: int) -> dict[str, object]:
    import torch

    from models.active import run_step

    n_classes = 10
    features, classes, graph = pool(n, dim, 10, n_classes, seed=0)
    val = np.random.default_rng(1).integers(0, n, 500)
    eval_features, eval_y = features[val] + 0.1, classes[val]
    rng = np.random.default_rng(2)
    labelled = np.sort(rng.choice(n, labels, replace=False))
    candidates = np.setdiff1d(np.arange(n), labelled)
    pixels = np.broadcast_to(np.zeros((1, 1, 28, 28), np.uint8), (n, 1, 28, 28))
    reset_peak()
    before = status_mb("VmRSS")
    started = time.monotonic()
    step = run_step(
        pool_x=pixels,
        pool_ids=np.arange(1, n + 1),
        labelled_pos=labelled,
        labels=classes[labelled],
        candidate_pos=candidates,
        eval_x=np.zeros((len(val), 1, 28, 28), np.float32),
        eval_y=eval_y,
        n_classes=n_classes,
        strategy=strategy,
        params={},
        batch_size=batch,
        seed=0,
        device=torch.device("cpu"),
        latents=features,
        features=features,
        eval_features=eval_features,
        head_validation=True,
        graph=graph,
        challenger=None,
    )
    seconds = time.monotonic() - started
    after = status_mb("VmHWM")
    return {
        "strategy": strategy,
        "picked": len(step.selection.image_ids),
        "features_mb": round(features.nbytes / 2**20, 1),
        "resident_before_step_mb": round(before, 1),
        "peak_after_step_mb": round(after, 1),
        "step_above_inputs_mb": round(after - before, 1),
        "step_s": round(seconds, 1),
        "timings": {k: round(v, 2) for k, v in step.timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256, help="the 1M run's representation had 256 features")
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--strategies", default="random,entropy,margin")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    # spawn: each step starts from a fresh process, so its peak is its own.
    context = multiprocessing.get_context("spawn")
    for strategy in args.strategies.split(","):
        with context.Pool(1) as workers:
            row = workers.apply(one_step, (strategy, args.images, args.dim, args.labels, args.batch))
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {
        "command": "python benchmarks/step_memory.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} cores",
        "images": args.images,
        "dim": args.dim,
        "labels": args.labels,
        "steps": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
