"""How steady the learner's curve is as random labels grow, with the read-out chosen by held-out
balanced accuracy (today's rule) or by held-out log-loss.

Each seed draws one random order of the pool; budget n labels its first n images, so every curve is
nested, as a project's labels are. A learner that gains labels and loses test accuracy has chosen its
read-out (block, C, mode) on noise. The representation is the one `suggestlab simulate` trains on
this device (models.simulate.representation_for, cached under --cache); the learner is
models.learner.fit_learner with the blocks of the joint representation, as a round fits it.

    python benchmarks/learner_stability.py --datasets shapes10k,mnist5k --cache benchmarks/results/cache \
        > benchmarks/results/learner_stability.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.representation_joint import joint_representation  # noqa: E402

CRITERIA = ("accuracy", "log-loss")
# The label-efficiency benchmark's mid regime: 10 budgets, from one batch to ten.
STEP = {"digits": 20, "mnist5k": 100}
DEFAULT_STEP = 200


def _interval(values: list[float]) -> float:
    return 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k,mnist5k")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", type=int, default=10, help="how many budgets, one step apart")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/results/cache"))
    args = parser.parse_args()

    from models.learner import PoolGraph, fit_learner

    print("# The learner's curve as random labels grow: read-out chosen by accuracy or by log-loss")
    print()
    print(f"Command: `python benchmarks/learner_stability.py {' '.join(sys.argv[1:])}`")
    print()
    print(
        f"{args.seeds} seeds; nested random labels (the first n of one random order per seed); test accuracy, "
        "mean ± 95% interval over seeds. A drop is one seed losing more than one point of test accuracy "
        "from one budget to the next. Both criteria see the same labels and the same held-out folds."
    )
    for name in args.datasets.split(","):
        data, pool, test, blocks, made = joint_representation(name, args.cache)
        graph = PoolGraph.build(pool)
        step = STEP.get(name, DEFAULT_STEP)
        budgets = [step * (i + 1) for i in range(args.budgets)]
        accuracy = {c: np.zeros((args.seeds, len(budgets))) for c in CRITERIA}
        chosen: dict[str, list[str]] = {c: [] for c in CRITERIA}
        seconds = {c: 0.0 for c in CRITERIA}
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(len(pool))
            for j, budget in enumerate(budgets):
                labelled = order[:budget]
                for criterion in CRITERIA:
                    clock = time.monotonic()
                    learner = fit_learner(
                        pool,
                        labelled,
                        data.pool_y[labelled],
                        len(data.classes),
                        graph=graph,
                        seed=seed,
                        blocks=blocks,
                        select_by=criterion,
                    )
                    seconds[criterion] += time.monotonic() - clock
                    predicted = learner.predict_proba(test).argmax(1)
                    accuracy[criterion][seed, j] = float((predicted == data.test_y).mean())
                    block = learner.info.get("block")
                    where = "all" if block is None else ("S" if block[0] == 0 else "P")
                    chosen[criterion].append(f"{where}/{learner.info['mode'][0]}{learner.info['c']}")
        print()
        print(f"## {name} (pool {len(pool)}, test {len(test)}; representation {made})")
        print()
        print("| labels | " + " | ".join(f"by {c}" for c in CRITERIA) + " |")
        print("|---" * (len(CRITERIA) + 1) + "|")
        for j, budget in enumerate(budgets):
            cells = [f"{accuracy[c][:, j].mean():.4f} ± {_interval(list(accuracy[c][:, j])):.4f}" for c in CRITERIA]
            print(f"| {budget} | " + " | ".join(cells) + " |")
        print()
        print("| criterion | mean over budgets | drops > 1 point (of seeds x steps) | worst drop | fit seconds |")
        print("|---|---|---|---|---|")
        for c in CRITERIA:
            steps = np.diff(accuracy[c], axis=1)
            drops = int((steps < -0.01).sum())
            worst = f"{steps.min():+.4f}" if steps.size else "-"
            print(f"| {c} | {accuracy[c].mean():.4f} | {drops} of {steps.size} | {worst} | {seconds[c]:.0f} |")
        print()
        print("Read-outs chosen (block S/P/all, mode s/p, C), seed by seed, budget by budget:")
        print()
        for c in CRITERIA:
            print(f"- {c}: " + " ".join(chosen[c]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
