"""The CPU setting's time budget for a project's representation: 480 s whatever the pool, against a
budget in proportion to the pool's pixels (models.representation.pool_time_budget: 480 s up to
5,000 images of 28x28, at most 30 minutes).

For each dataset, the pool part (what a project's representation job trains on; the test split is
never seen) is learned twice with the CPU setting as the worker runs it, once under each budget,
each timed on this machine with nothing else running. Then, for each seed and label budget, the same
random labels for both, the learner a round fits (models.learner.fit_learner, the block choice
included), scored on the test split. Differences are paired by seed.

    python benchmarks/representation_budget.py --datasets shapes10k > benchmarks/results/representation_budget.md

The rule, written on 2026-12-07 before the first run: adopt the pool-scaled budget if, on shapes10k
(the tuning set) on this machine, its mean accuracy over 100, 300 and 1,000 labels is at least 1.0
point above the flat budget's, and it is not more than 1.0 point below at any of the three. A
held-out set run afterwards is reported and decides nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.learner_compare import paired_learner_row  # noqa: E402
from models.simulate import load_simulation_data  # noqa: E402

FLAT_BUDGET_S = 480.0


def learn(data: Any, budget_s: float, cache: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Pool and test features of the CPU setting stopped at `budget_s`, and what the training did."""
    import json

    import torch

    from models.representation import SimCLR, setting_for

    path = cache / f"budget-{data.name}-{len(data.pool_y)}-{budget_s:.0f}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return saved["pool"], saved["test"], json.loads(str(saved["info"]))
    setting = setting_for("cpu")
    setting["time_budget_s"] = budget_s
    started = time.monotonic()
    model = SimCLR.from_setting(setting, seed=0, device=torch.device("cpu")).fit(data.pool_x)
    seconds = time.monotonic() - started
    history = model.history
    assert history is not None
    info = {
        "budget_s": budget_s,
        "seconds": round(seconds, 1),
        "epochs_asked": setting["epochs"],
        "passes": round(history.steps / history.steps_per_epoch, 2),
        "precision": "bfloat16" if setting["bfloat16"] else "float32",
    }
    pool, test = model.transform(data.pool_x), model.transform(data.test_x)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, pool=pool, test=test, info=json.dumps(info))
    return pool, test, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k")
    parser.add_argument("--labels", default="40,100,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/suggestlab-bench/budget"))
    args = parser.parse_args()

    from benchmarks.representation_1m import device_name
    from models.learner import PoolGraph
    from models.representation import feature_blocks, pool_time_budget, setting_for

    blocks = feature_blocks(setting_for("cpu"))
    print("# A project's representation on a CPU: a flat 480 s budget against one in proportion to the pool")
    print()
    print(f"Command: `python benchmarks/representation_budget.py {' '.join(sys.argv[1:])}`")
    print()
    print(f"Device: {device_name()}. Random labels, {args.seeds} seeds (the same labels for both budgets),")
    print("test accuracy of the learner a round fits, mean ± 95% interval; the difference is paired by seed.")
    for name in args.datasets.split(","):
        data = load_simulation_data(name)
        size = data.pool_x.shape[-1]
        scaled = pool_time_budget(FLAT_BUDGET_S, len(data.pool_x), size)
        arms = {"flat": learn(data, FLAT_BUDGET_S, args.cache), "scaled": learn(data, scaled, args.cache)}
        print()
        print(f"## {name} (pool {len(data.pool_x)} of {size}x{size}, test {len(data.test_y)})")
        print()
        print("| budget | seconds | passes over the pool (of the setting's epochs) | precision |")
        print("|---|---|---|---|")
        for arm, (_, _, info) in arms.items():
            label = f"{arm}, {info['budget_s']:.0f} s"
            print(f"| {label} | {info['seconds']} | {info['passes']} of {info['epochs_asked']} | {info['precision']} |")
        print()
        print("| labels | flat 480 s | pool-scaled | scaled - flat (points) |")
        print("|---|---|---|---|")
        features = {arm: (pool, test) for arm, (pool, test, _) in arms.items()}
        graphs = {arm: PoolGraph.build(pool) for arm, (pool, _) in features.items()}
        for budget in [int(b) for b in args.labels.split(",")]:
            print(paired_learner_row(data, features, graphs, budget, args.seeds, blocks))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
