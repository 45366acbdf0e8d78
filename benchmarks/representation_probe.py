"""How far the CPU SimCLR setting gets on a dataset: epochs that fit a time budget, the NT-Xent loss
per epoch (chance is ln(2B - 1), 6.24 for batches of 256), and the head's test accuracy with random
labels on the resulting features.

    python benchmarks/representation_probe.py --dataset shapes10k --budget 300 \
        > benchmarks/results/representation_probe-shapes10k.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.simulate import load_simulation_data  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes10k")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of SimCLR training")
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--crop-min", type=float, default=0.35, help="smallest crop, as a fraction of the area")
    parser.add_argument("--strength", type=float, default=0.8, help="colour jitter strength (RGB)")
    parser.add_argument("--hue", type=float, default=0.2, help="largest hue turn, in turns (RGB)")
    parser.add_argument("--grayscale-p", type=float, default=0.2)
    args = parser.parse_args()

    from models.learner import PoolGraph, fit_learner
    from models.representation import SimCLR, default_augmentation, encode

    data = load_simulation_data(args.dataset)
    started = time.monotonic()
    augmentation = default_augmentation(
        crop_scale=(args.crop_min, 1.0), strength=args.strength, hue=args.hue, grayscale_p=args.grayscale_p
    )
    simclr = SimCLR(
        widths=tuple(int(w) for w in args.widths.split(",")),
        epochs=100,
        time_budget_s=args.budget,
        batch_size=args.batch,
        lr=args.lr,
        temperature=args.temperature,
        seed=0,
        augmentation=augmentation,
    ).fit(data.pool_x)
    seconds = time.monotonic() - started
    assert simclr.encoder is not None and simclr.history is not None
    pool, test = encode(simclr.encoder, data.pool_x), encode(simclr.encoder, data.test_x)
    graph = PoolGraph.build(pool)
    out = [
        f"# SimCLR on {args.dataset} within {args.budget:.0f} s (CPU)",
        "",
        f"Command: `python {' '.join(['benchmarks/representation_probe.py', *sys.argv[1:]])}`",
        "",
        f"{simclr.history.epochs} epochs in {seconds:.0f} s; pool {len(data.pool_y)}, test {len(data.test_y)}; "
        f"chance loss ln(2*{args.batch}-1) = {math.log(2 * args.batch - 1):.2f}.",
        "",
        "NT-Xent loss per epoch: " + ", ".join(f"{v:.2f}" for v in simclr.history.losses),
        "",
        "| random labels | head test accuracy (mean of 2 seeds) |",
        "|---|---|",
    ]
    for budget in (100, 300, 1000):
        accuracies = []
        for seed in (0, 1):
            labelled = np.random.default_rng(seed).choice(len(data.pool_y), budget, replace=False)
            learner = fit_learner(pool, labelled, data.pool_y[labelled], len(data.classes), graph=graph, seed=seed)
            accuracies.append(float((learner.predict_proba(test).argmax(1) == data.test_y).mean()))
        out.append(f"| {budget} | {np.mean(accuracies):.3f} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
