"""Reads the committed label-efficiency results and answers the learner issue's questions:

* today's learner (SmallCNN from scratch, folders without -simclr) vs the new learner (head on a
  SimCLR representation, folders ending in -simclr; in runs since the CNN challenge, mixed with or
  replaced by a CNN on the pixels where that wins on held-out labels), both with random labels, at
  100 / 300 / 1,000 labels (mean over seeds, 95% interval);
* `auto` vs `random` under the new learner at every budget, paired by seed (mean difference and its
  95% interval), and whether auto is ever below random;
* labels each needs to reach 95% / 98% of full-pool accuracy.

  python benchmarks/learner_compare.py > benchmarks/results/learner.md
  python benchmarks/learner_compare.py --tag gpu > benchmarks/results/learner-gpu.md   # the GPU runs
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent.parent))

from benchmarks.label_efficiency import device_line  # noqa: E402


def load(run_dir: Path) -> dict[str, dict[int, dict[int, float]]]:
    """{strategy: {labels: {seed: accuracy}}}"""
    out: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    with (run_dir / "results.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["strategy"]][int(float(row["labels"]))][int(row["seed"])] = float(row["accuracy"])
    return out


def interval(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    half = 1.96 * arr.std(ddof=1) / np.sqrt(len(arr)) if len(arr) > 1 else float("nan")
    return float(arr.mean()), float(half)


def fmt(mean: float, half: float) -> str:
    return f"{mean:.3f} ± {half:.3f}" if np.isfinite(half) else f"{mean:.3f}"


def paired_learner_row(
    data: Any,
    arms: dict[str, tuple[np.ndarray, np.ndarray]],
    graphs: dict[str, Any],
    budget: int,
    seeds: int,
    blocks: Any,
) -> str:
    """A table row for two representations of one dataset (`arms`: name -> (pool, test) features):
    the test accuracy of the learner a round fits (models.learner.fit_learner) on the same random
    labels for both, per seed; each arm's mean ± 95% interval, then second - first paired by seed."""
    from models.learner import fit_learner

    scores: dict[str, list[float]] = {arm: [] for arm in arms}
    for seed in range(seeds):
        labelled = np.random.default_rng(seed).choice(len(data.pool_y), budget, replace=False)
        for arm, (pool, test) in arms.items():
            learner = fit_learner(
                pool, labelled, data.pool_y[labelled], len(data.classes), graph=graphs[arm], seed=seed, blocks=blocks
            )
            scores[arm].append(float((learner.predict_proba(test).argmax(1) == data.test_y).mean()))
    first, second = scores.values()
    gain, gain_half = interval([100 * (b - a) for a, b in zip(first, second, strict=True)])
    cells = [fmt(*interval(scores[arm])) for arm in arms]
    return f"| {budget} | " + " | ".join(cells) + f" | {gain:+.2f} ± {gain_half:.2f} |"


def learner_table(dataset: str, regimes: list[str], suffix: str = "") -> list[str]:
    lines = [
        f"### {dataset}: random labels, today's learner vs the new learner",
        "",
        "| labels | SmallCNN from scratch | new learner (head on SimCLR features) | difference (points) |",
        "|---|---|---|---|",
    ]
    cnn_runs: list[str] = []
    for regime in regimes:
        old_dir, new_dir = RESULTS / f"{dataset}-{regime}{suffix}", RESULTS / f"{dataset}-{regime}-simclr{suffix}"
        if not (old_dir / "results.csv").is_file():
            # The CNN from scratch has no representation to learn: where a tagged run has no CNN curves
            # of its own, the untagged (CPU) ones stand in, and the table says so.
            old_dir = RESULTS / f"{dataset}-{regime}"
        if not ((old_dir / "results.csv").is_file() and (new_dir / "results.csv").is_file()):
            continue
        cnn_runs.append(old_dir.name)
        old, new = load(old_dir).get("random", {}), load(new_dir).get("random", {})
        for labels in sorted(set(old) & set(new)):
            if labels not in (20, 40, 100, 300, 1000) and not (regime == "mid" and labels == max(new)):
                continue
            a, b = interval(list(old[labels].values())), interval(list(new[labels].values()))
            lines.append(f"| {labels} ({regime}) | {fmt(*a)} | {fmt(*b)} | {100 * (b[0] - a[0]):+.1f} |")
    if suffix:
        lines.insert(2, f"SmallCNN curves from: {', '.join(f'`{name}`' for name in cnn_runs) or 'none'}.\n")
    return [*lines, ""]


def auto_table(dataset: str, regime: str, suffix: str = "") -> list[str]:
    run_dir = RESULTS / f"{dataset}-{regime}-simclr{suffix}"
    if not (run_dir / "results.csv").is_file():
        return []
    data = load(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    meta = json.loads((run_dir / "meta.json").read_text())
    strategies = sorted(data, key=lambda s: (s != "auto", s != "random", s))
    variants = [s for s in strategies if s.startswith("auto@")]
    budgets = sorted(data["random"])
    lines = [
        f"### {dataset}, {regime} budget, new learner ({meta['seeds']} seeds; `{meta['command']}`)",
        "",
        device_line(meta),
        "",
        "Mean test accuracy ± 95% interval; last columns: auto (and each auto@ variant) - random, "
        "paired by seed (points, ± 95%).",
        "",
        "| labels | " + " | ".join(strategies) + " | auto - random |" + "".join(f" {v} - random |" for v in variants),
        "|---|" + "---|" * (len(strategies) + 1 + len(variants)),
    ]
    below: dict[str, list[int]] = {name: [] for name in ["auto", *variants]}
    for labels in budgets:
        cells = [fmt(*interval(list(data[s][labels].values()))) for s in strategies]
        gaps = []
        for name in below:
            seeds = sorted(set(data[name][labels]) & set(data["random"][labels]))
            mean, half = interval([100 * (data[name][labels][k] - data["random"][labels][k]) for k in seeds])
            if mean < -1e-9:
                below[name].append(labels)
            gaps.append(f"{mean:+.2f} ± {half:.2f}")
        lines.append(f"| {labels} | " + " | ".join(cells + gaps) + " |")
    full = summary["full_pool_accuracy"]
    lines += ["", f"Full-pool accuracy (new learner): {full:.4f}."]
    for name, at in below.items():
        lines.append(f"{name} below random (mean over seeds) at: {', '.join(map(str, at)) if at else 'no budget'}.")
    lines += [
        "",
        "| strategy | labels to 95% of full | labels to 98% of full | AUC |",
        "|---|---|---|---|",
    ]
    for s in strategies:
        info = summary["strategies"][s]
        reach = [info["labels_to_95pct_full"], info["labels_to_98pct_full"]]
        shown = ["not reached" if r is None else f"{r:.0f}" for r in reach]
        lines.append(f"| {s} | {shown[0]} | {shown[1]} | {info['area_under_curve']:.4f} |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="", help="the --tag of the label_efficiency runs to read (e.g. gpu)")
    parser.add_argument("--datasets", default="mnist5k,digits,shapes10k")
    args = parser.parse_args()
    suffix = f"-{args.tag}" if args.tag else ""
    command = " ".join(["python benchmarks/learner_compare.py", *sys.argv[1:]])
    out = [f"# The learner: measured (generated by `{command}`)", ""]
    for dataset in args.datasets.split(","):
        out += learner_table(dataset, ["low", "mid"], suffix)
        for regime in ("low", "mid"):
            out += auto_table(dataset, regime, suffix)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
