"""Two label-efficiency runs of one dataset and regime, before and after a change, paired by seed: one
strategy's test accuracy at every budget, the difference with its 95% interval, and the mean difference
over a span of budgets (what a rule written before the runs judges).

    python benchmarks/paired_runs.py --before flags10k-rgb-low-simclr-cnn30 \
        --after flags10k-rgb-low-simclr-cnn10 --strategy random --span 100,300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent.parent))

from benchmarks.learner_compare import load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="result folder under benchmarks/results")
    parser.add_argument("--after", required=True)
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--span", default="100,300", help="first,last budget of the mean difference")
    args = parser.parse_args()
    before, after = load(RESULTS / args.before)[args.strategy], load(RESULTS / args.after)[args.strategy]
    low, high = (int(v) for v in args.span.split(","))
    print(f"# `{args.strategy}`: {args.after} against {args.before}")
    print()
    print(f"Command: `python benchmarks/paired_runs.py {' '.join(sys.argv[1:])}`")
    print()
    print("| labels | before | after | after - before (points, paired ± 95%) |")
    print("|---|---|---|---|")
    in_span = []
    for labels in sorted(set(before) & set(after)):
        seeds = sorted(set(before[labels]) & set(after[labels]))
        b = np.asarray([before[labels][s] for s in seeds])
        a = np.asarray([after[labels][s] for s in seeds])
        diff = 100 * (a - b)
        half = 1.96 * float(np.std(diff, ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(f"| {labels} | {b.mean():.3f} | {a.mean():.3f} | {diff.mean():+.2f} ± {half:.2f} |")
        if low <= labels <= high:
            in_span.append(diff.mean())
    print()
    print(f"Mean difference over {low}-{high} labels: {np.mean(in_span):+.2f} points ({len(in_span)} budgets).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
