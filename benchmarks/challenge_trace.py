"""Why a learning curve jumps: the learner's choices round by round along one simulated curve
(issue #10). Runs one curve of the benchmark's loop (`models.simulate.run_one`, the rounds' own
`run_step`) and prints a JSON line per round: labels, test accuracy, the head's chosen read-out,
and the CNN challenge's held-out scores and verdict that the round applied.

    python benchmarks/challenge_trace.py --dataset symbols10k-rgb --strategy auto --seed 0 \
        --regime mid --representation-setting cuda
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.label_efficiency import regime  # noqa: E402
from models.simulate import SimulationConfig, load_simulation_data, run_one  # noqa: E402


def round_line(row: dict[str, Any], step: Any) -> dict[str, Any]:
    info = step.learner.info if step.learner is not None else {}
    challenge = info.get("challenge") or {}
    return {
        "labels": row["labels"],
        "accuracy": row["accuracy"],
        "mode": info.get("mode"),
        "read_out": info.get("chosen"),
        "challenge_scores": challenge.get("scores"),
        "challenge_chosen": challenge.get("chosen"),
        "challenger_fitted_on": challenge.get("fitted_on"),
        # What auto's guard reads (models.strategies.auto.held_out_skill) before it picks the next batch.
        "held_out_accuracy": step.learner.held_out_accuracy() if step.learner is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regime", choices=["low", "mid"], default="mid")
    parser.add_argument("--representation-setting", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--fine-tune", action="store_true", help="as a project's fine_tune setting")
    for budget in ("initial", "batch", "rounds"):
        parser.add_argument(f"--{budget}", type=int, help="override the regime's (as label_efficiency.py does)")
    parser.add_argument("--out", type=Path, help="also write the lines to this file")
    args = parser.parse_args()
    data = load_simulation_data(args.dataset)
    overrides = {k: getattr(args, k) for k in ("initial", "batch", "rounds") if getattr(args, k) is not None}
    config = SimulationConfig(
        strategies=[args.strategy],
        learner="simclr",
        representation_setting=args.representation_setting,
        fine_tune=args.fine_tune,
        **(regime(args.regime, len(data.pool_y)) | overrides),
    )
    lines: list[str] = []

    def show(row: dict[str, Any], step: Any) -> None:
        lines.append(json.dumps(round_line(row, step)))
        print(lines[-1], flush=True)

    run_one(data, args.strategy, args.seed, config, cache=args.cache, on_step=show)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
