"""How steady and how good the learner's curve is as random labels grow, between two variants of
its read-out on a joint representation:

  --compare select_by: one read-out, chosen by held-out balanced accuracy or by held-out log-loss;
  --compare read_out: one read-out (block, mode and C chosen on held-out log-loss), or the ensemble of
      the best read-out on all features and on each block, their tempered logits averaged (the
      default since stop 46).

Each seed draws one random order of the pool; budget n labels its first n images, so every curve is
nested, as a project's labels are. A learner that gains labels and loses test accuracy has chosen its
read-out on noise. The representation is the one `suggestlab simulate` trains on this device
(models.simulate.representation_for, cached under --cache); the learner is models.learner.fit_learner
with the blocks of the joint representation, as a round fits it.

    python benchmarks/learner_stability.py --datasets shapes10k,mnist5k --cache benchmarks/results/cache \
        > benchmarks/results/learner_stability.md
    python benchmarks/learner_stability.py --compare read_out --datasets textures10k-rgb \
        --labels 60,120,180,240,320,600,1000,2000 > benchmarks/results/learner_ensemble-textures10k-rgb.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.representation_1m import device_name  # noqa: E402
from benchmarks.representation_joint import joint_representation  # noqa: E402

VARIANTS = {"select_by": ("accuracy", "log-loss"), "read_out": ("one", "ensemble")}
# The label-efficiency benchmark's mid regime: 10 budgets, from one batch to ten.
STEP = {"digits": 20, "mnist5k": 100}
DEFAULT_STEP = 200


def _interval(values: list[float]) -> float:
    return 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k,mnist5k")
    parser.add_argument("--compare", choices=sorted(VARIANTS), default="select_by")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", type=int, default=10, help="how many budgets, one step apart")
    parser.add_argument("--labels", help="the budgets themselves, comma-separated (instead of --budgets)")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/results/cache"))
    args = parser.parse_args()

    from models.learner import PoolGraph, fit_learner

    variants = VARIANTS[args.compare]
    if args.compare == "select_by":
        print("# The learner's curve as random labels grow: read-out chosen by accuracy or by log-loss")
    else:
        print("# The learner's curve as random labels grow: one read-out, or the ensemble of the blocks' read-outs")
    print()
    print(f"Command: `python benchmarks/learner_stability.py {' '.join(sys.argv[1:])}`")
    print()
    print(
        f"{args.seeds} seeds; nested random labels (the first n of one random order per seed); test accuracy, "
        "mean ± 95% interval over seeds; the difference is paired by seed. A drop is one seed losing more than "
        "one point of test accuracy from one budget to the next. Both variants see the same labels and the "
        "same held-out folds."
    )
    print()
    print(f"Device: {device_name()}.")
    for name in args.datasets.split(","):
        data, pool, test, blocks, made = joint_representation(name, args.cache)
        graph = PoolGraph.build(pool)
        if args.labels:
            budgets = [int(b) for b in args.labels.split(",")]
        else:
            step = STEP.get(name, DEFAULT_STEP)
            budgets = [step * (i + 1) for i in range(args.budgets)]
        accuracy = {v: np.zeros((args.seeds, len(budgets))) for v in variants}
        chosen: dict[str, list[str]] = {v: [] for v in variants}
        seconds = {v: 0.0 for v in variants}
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(len(pool))
            for j, budget in enumerate(budgets):
                labelled = order[:budget]
                for variant in variants:
                    options = (
                        {"select_by": variant, "read_out": "one"}
                        if args.compare == "select_by"
                        else {"read_out": variant}
                    )
                    clock = time.monotonic()
                    learner = fit_learner(
                        pool,
                        labelled,
                        data.pool_y[labelled],
                        len(data.classes),
                        graph=graph,
                        seed=seed,
                        blocks=blocks,
                        **options,
                    )
                    seconds[variant] += time.monotonic() - clock
                    predicted = learner.predict_proba(test).argmax(1)
                    accuracy[variant][seed, j] = float((predicted == data.test_y).mean())
                    chosen[variant].append(_read_out(learner.info))
        first, second = variants
        print()
        print(f"## {name} (pool {len(pool)}, test {len(test)}; representation {made})")
        print()
        print(f"| labels | {first} | {second} | {second} - {first} (points) |")
        print("|---|---|---|---|")
        for j, budget in enumerate(budgets):
            cells = [f"{accuracy[v][:, j].mean():.4f} ± {_interval(list(accuracy[v][:, j])):.4f}" for v in variants]
            gap = 100 * (accuracy[second][:, j] - accuracy[first][:, j])
            print(f"| {budget} | " + " | ".join(cells) + f" | {gap.mean():+.2f} ± {_interval(list(gap)):.2f} |")
        print()
        print("| variant | mean over budgets | drops > 1 point (of seeds x steps) | worst drop | fit seconds |")
        print("|---|---|---|---|---|")
        for v in variants:
            steps = np.diff(accuracy[v], axis=1)
            drops = int((steps < -0.01).sum())
            worst = f"{steps.min():+.4f}" if steps.size else "-"
            print(f"| {v} | {accuracy[v].mean():.4f} | {drops} of {steps.size} | {worst} | {seconds[v]:.0f} |")
        print()
        print("Read-outs (block S/P/all, mode s/p, C; an ensemble lists its members), seed by seed, budget by budget:")
        print()
        for v in variants:
            print(f"- {v}: " + " ".join(chosen[v]))
        sys.stdout.flush()
    return 0


def _read_out(info: dict) -> str:
    # Under two labels in some class the learner propagates with no choice made (no C recorded).
    members = info.get("members") or [{"mode": info["mode"], "c": info.get("c", "-"), "block": info.get("block")}]
    return "+".join(
        f"{'all' if m['block'] is None else ('S' if m['block'][0] == 0 else 'P')}/{m['mode'][0]}{m['c']}"
        for m in members
    )


if __name__ == "__main__":
    raise SystemExit(main())
