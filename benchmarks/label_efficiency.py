"""Label efficiency of every strategy: how many labels to reach 95% / 98% of full-pool accuracy.

Runs `models.simulate` (the code real rounds use) on the bundled datasets in two regimes and writes,
per dataset and regime, results.csv, curve.png / curve.svg and summary.json under the output folder,
plus a README.md table with the targets checked.

    python benchmarks/label_efficiency.py --seeds 5 --jobs 2            # everything (hours on 2 cores)
    python benchmarks/label_efficiency.py --datasets digits --regimes low --seeds 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.simulate import (
    SimulationConfig,
    full_pool_accuracy,
    load_simulation_data,
    run_simulation,
    write_results,
)

DEFAULT_STRATEGIES = "random,entropy,margin,coreset,typiclust,snn-plain,snn,hybrid,si"
LATENT = ("snn", "snn-plain", "si", "hybrid", "coreset", "typiclust")


def regime(name: str, pool_size: int) -> dict[str, int]:
    if name == "low":
        return {"initial": 20, "batch": 20, "rounds": 15}
    # Mid budget: ten equal steps up to a quarter of the pool.
    step = max(1, round(pool_size * 0.025))
    return {"initial": step, "batch": step, "rounds": 9}


def _fmt(v: float | None, limit: float) -> str:
    return f"> {limit:.0f}" if v is None else f"{v:.0f}"


def collect(out: Path) -> list[dict]:
    """Every finished dataset/regime run under `out` (each folder has meta.json and summary.json)."""
    runs = []
    for meta_path in sorted(out.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        meta["summary"] = json.loads((meta_path.parent / "summary.json").read_text())
        runs.append(meta)
    return runs


def report(runs: list[dict]) -> str:
    lines = [
        "# Label efficiency",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, CPU only. Each curve starts from random labels; "
        "accuracy is on a held-out 20% test split; `full pool` is the same model trained on every pool label.",
        "",
    ]
    for run in runs:
        summary = run["summary"]
        full = summary["full_pool_accuracy"]
        strategies = summary["strategies"]
        max_labels = max(s["labels"][-1] for s in strategies.values())
        lines += [
            f"## {run['dataset']}, {run['regime']} budget{' — ' + run['tag'] if run.get('tag') else ''} "
            f"({run['config']['initial']} + {run['config']['rounds']} x {run['config']['batch']} labels, "
            f"{run['seeds']} seeds, {run['minutes']:.0f} min)",
            "",
            f"Command: `{run['command']}`",
            "",
            f"Full-pool accuracy {full:.4f}; 95% of it = {0.95 * full:.4f}, 98% = {0.98 * full:.4f}.",
            "",
            f"![curve]({run['dir']}/curve.svg)",
            "",
            "| strategy | labels to 95% | labels to 98% | AUC (mean acc.) | final acc. | vs random, every budget |",
            "|---|---|---|---|---|---|",
        ]
        random_mean = np.array(strategies.get("random", {}).get("mean_accuracy", []))
        for name, s in sorted(strategies.items(), key=lambda kv: -kv[1]["area_under_curve"]):
            mean = np.array(s["mean_accuracy"])
            if len(random_mean) == len(mean) and name != "random":
                wins = int((mean >= random_mean - 1e-9).sum())
                versus = f"{wins}/{len(mean)} budgets >= random"
            else:
                versus = ""
            lines.append(
                f"| {name} | {_fmt(s['labels_to_95pct_full'], max_labels)} "
                f"| {_fmt(s['labels_to_98pct_full'], max_labels)} "
                f"| {s['area_under_curve']:.4f} | {s['mean_accuracy'][-1]:.4f} | {versus} |"
            )
        lines.append("")
        lines += targets(strategies, max_labels)
        lines.append("")
    return "\n".join(lines)


def targets(strategies: dict, max_labels: float) -> list[str]:
    out = ["Targets:"]
    if "snn" in strategies and "random" in strategies:
        snn, rnd = np.array(strategies["snn"]["mean_accuracy"]), np.array(strategies["random"]["mean_accuracy"])
        ok = bool((snn >= rnd - 1e-9).all())
        worst = float((snn - rnd).min())
        out.append(
            f"- snn at or above random at every budget: **{'met' if ok else 'not met'}** (worst gap {worst:+.4f})"
        )
    latent = {k: v for k, v in strategies.items() if k in LATENT and v["labels_to_98pct_full"] is not None}
    random98 = strategies.get("random", {}).get("labels_to_98pct_full")
    if latent:
        best_name, best = min(latent.items(), key=lambda kv: kv[1]["labels_to_98pct_full"])
        if random98 is None:
            bound = best["labels_to_98pct_full"] / max_labels
            out.append(
                f"- best latent strategy ({best_name}) reaches 98% of full at {best['labels_to_98pct_full']:.0f} "
                f"labels; random does not within {max_labels:.0f}, so the ratio is below {bound:.0%}"
            )
        else:
            ratio = best["labels_to_98pct_full"] / random98
            out.append(
                f"- best latent strategy for 98% of full: {best_name}, {best['labels_to_98pct_full']:.0f} vs random "
                f"{random98:.0f} labels = {ratio:.0%} (target <= 60%: **{'met' if ratio <= 0.6 else 'not met'}**)"
            )
    else:
        out.append("- no latent-space strategy reached 98% of full-pool accuracy within this budget")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mnist5k,digits")
    parser.add_argument("--regimes", default="low,mid")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--params", default="", help="JSON per strategy")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result folders, to keep a follow-up run apart")
    args = parser.parse_args()
    out = Path(args.out)
    command = "python benchmarks/label_efficiency.py " + " ".join(sys.argv[1:])
    for dataset in args.datasets.split(","):
        data = load_simulation_data(dataset)
        full = float(np.mean(full_pool_accuracy(data, range(3))))
        for regime_name in args.regimes.split(","):
            settings = regime(regime_name, len(data.pool_y))
            config = SimulationConfig(
                strategies=args.strategies.split(","),
                seeds=args.seeds,
                jobs=args.jobs,
                params=json.loads(args.params) if args.params else {},
                **settings,
            )
            started = time.monotonic()
            print(f"{dataset} {regime_name}: {settings}, full-pool accuracy {full:.4f}", flush=True)
            rows = run_simulation(
                data,
                config,
                cache=out / "cache",
                progress=lambda done, total: print(f"  {done}/{total} rounds", flush=True),
            )
            run_dir = out / f"{dataset}-{regime_name}{'-' + args.tag if args.tag else ''}"
            title = f"{dataset}, {regime_name} budget{' (' + args.tag + ')' if args.tag else ''}"
            paths = write_results(rows, run_dir, title, full)
            meta = {
                "dataset": dataset,
                "regime": regime_name,
                "config": settings,
                "seeds": args.seeds,
                "minutes": round((time.monotonic() - started) / 60, 1),
                "dir": run_dir.name,
                "command": command,
                "tag": args.tag,
                "strategy_params": config.params,
            }
            (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
            print(f"  wrote {paths['summary']}", flush=True)
            notes = out / "NOTES.md"
            text = report(collect(out))
            if notes.is_file():
                # The hand-written reading of the figures goes first; the tables below are regenerated.
                text = notes.read_text() + "\n" + text
            (out / "README.md").write_text(text)
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
