"""Label efficiency of every strategy: how many labels to reach 95% / 98% of full-pool accuracy.

Runs `models.simulate` (the code real rounds use) on the bundled datasets in two regimes and writes,
per dataset and regime, results.csv, curve.png / curve.svg and summary.json under the output folder,
plus a README.md table with the targets checked.

    python benchmarks/label_efficiency.py --seeds 5 --jobs 2            # everything (hours on 2 cores)
    python benchmarks/label_efficiency.py --datasets digits --regimes low --seeds 2   # a quick look
    python benchmarks/label_efficiency.py --datasets digits --regimes low --seeds 5 --resume   # add seeds 2-4

With --resume, the complete curves already in a result folder are kept and only the missing
(strategy, seed) pairs run, so a run cut short or a run with more seeds or strategies costs only
what is new.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.representation_1m import device_name
from models.simulate import (
    SimulationConfig,
    full_pool_accuracy,
    load_simulation_data,
    representation_cache,
    representation_for,
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


def finished_curves(run_dir: Path, settings: dict[str, int], config: SimulationConfig) -> tuple[dict, list[dict]]:
    """The meta.json of an earlier run of the same budget in `run_dir` and the rows of its complete
    (strategy, seed) curves; ({}, []) when there is none."""
    meta_path, csv_path = run_dir / "meta.json", run_dir / "results.csv"
    if not (meta_path.is_file() and csv_path.is_file()):
        return {}, []
    meta = json.loads(meta_path.read_text())
    if meta["config"] != settings or meta.get("strategy_params", {}) != config.params:
        raise SystemExit(f"--resume: {run_dir} was run with another budget or other strategy params")
    if meta.get("fine_tune", False) != config.fine_tune:
        raise SystemExit(f"--resume: {run_dir} was run with fine-tuning {'off' if config.fine_tune else 'on'}")
    with csv_path.open(newline="") as fh:
        rows = [
            {
                "strategy": r["strategy"],
                "seed": int(r["seed"]),
                "round": int(r["round"]),
                "labels": int(r["labels"]),
                "accuracy": float(r["accuracy"]),
                "seconds": float(r["seconds"]),
            }
            for r in csv.DictReader(fh)
        ]
    wanted = {(s, seed) for s in config.strategies for seed in range(config.seeds)}
    per_curve: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        per_curve.setdefault((row["strategy"], row["seed"]), []).append(row)
    keep = [
        row for key, curve in per_curve.items() if key in wanted and len(curve) == config.rounds + 1 for row in curve
    ]
    return (meta, keep) if keep else ({}, [])


def _fmt(v: float | None, limit: float) -> str:
    return f"> {limit:.0f}" if v is None else f"{v:.0f}"


def collect(out: Path) -> list[dict]:
    """Every finished dataset/regime run under `out` (each folder has meta.json and summary.json)."""
    runs = []
    for meta_path in sorted(out.glob("*/meta.json")):
        if not (meta_path.parent / "summary.json").is_file():
            continue  # a folder prepared for --resume whose run has not finished yet
        meta = json.loads(meta_path.read_text())
        meta["summary"] = json.loads((meta_path.parent / "summary.json").read_text())
        runs.append(meta)
    return runs


def device_line(meta: dict) -> str:
    """Where a run's curves and its representation were computed (runs before this was recorded
    were all on the 2-core CPU machine)."""
    parts = [f"Device: {meta.get('device', 'CPU, 2 cores')}"]
    if meta.get("representation_setting"):
        parts.append(f"representation of the {meta['representation_setting']} setting, read from the cache")
    if meta.get("fine_tune"):
        parts.append("fine-tuning on (the encoder fine-tuned with the head joins the challenge)")
    if meta.get("representation_s"):
        where = f" on {meta['representation_trained_on']}" if meta.get("representation_trained_on") else ""
        parts.append(f"representation trained{where} in {meta['representation_s']:.0f} s")
    return "; ".join(parts) + "."


def report(runs: list[dict]) -> str:
    lines = [
        "# Label efficiency",
        "",
        "Each curve starts from random labels; accuracy is on a held-out 20% test split; `full pool` is the "
        "same model trained on every pool label. Each run names the device it ran on.",
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
            device_line(run),
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
    elif not any(k in LATENT for k in strategies):
        out.append("- no latent-space strategy in this run: it extends baselines past another run's budget")
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
    parser.add_argument(
        "--learner",
        default="cnn",
        choices=["cnn", "simclr"],
        help="cnn: the earlier SmallCNN from scratch; simclr: calibrated head on a SimCLR representation "
        "(its result folders end in -simclr)",
    )
    parser.add_argument("--representation-epochs", type=int, default=None, help="default: the device setting")
    parser.add_argument(
        "--representation-setting",
        choices=["cpu", "cuda"],
        default=None,
        help="default: this device's; cuda on a CPU reads a GPU-trained representation from the cache",
    )
    parser.add_argument(
        "--fine-tune",
        action="store_true",
        help="a project's fine_tune setting: the representation's encoder, fine-tuned with the head, joins "
        "the challenge from 30 labels per class (--learner simclr; needs --tag)",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result folders, to keep a follow-up run apart")
    parser.add_argument("--initial", type=int, help="override the regime's first budget (needs --tag)")
    parser.add_argument("--batch", type=int, help="override the regime's batch size (needs --tag)")
    parser.add_argument("--rounds", type=int, help="override the regime's number of rounds (needs --tag)")
    parser.add_argument(
        "--full-pool-accuracy",
        type=float,
        help="reuse the full-pool accuracy an earlier run of the same dataset measured (saves minutes)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the complete curves already in the results folder and run only the missing ones",
    )
    args = parser.parse_args()
    overrides = {k: getattr(args, k) for k in ("initial", "batch", "rounds") if getattr(args, k) is not None}
    if overrides and not args.tag:
        # A changed budget must not overwrite the regime's canonical results folder.
        parser.error("--initial/--batch/--rounds change the regime, so they need --tag")
    if args.fine_tune and (args.learner != "simclr" or not args.tag):
        parser.error("--fine-tune fine-tunes the representation's encoder: it needs --learner simclr and --tag")
    out = Path(args.out)
    command = "python benchmarks/label_efficiency.py " + " ".join(sys.argv[1:])
    for dataset in args.datasets.split(","):
        data = load_simulation_data(dataset)
        base = SimulationConfig(
            strategies=[],
            learner=args.learner,
            representation_epochs=args.representation_epochs,
            representation_setting=args.representation_setting,
        )
        representation_s = None
        cached = representation_cache(data, base, out / "cache")
        if args.learner == "simclr" and not (cached is not None and cached.is_file()):
            # Timed on its own so the table can say what the representation cost on this device.
            clock = time.monotonic()
            representation_for(data, base, out / "cache")
            representation_s = round(time.monotonic() - clock, 1)
            print(f"{dataset}: representation trained in {representation_s} s", flush=True)
        if args.full_pool_accuracy is not None:
            full = args.full_pool_accuracy
        else:
            full = float(np.mean(full_pool_accuracy(data, range(3), base, out / "cache")))
        for regime_name in args.regimes.split(","):
            settings = regime(regime_name, len(data.pool_y)) | overrides
            config = SimulationConfig(
                strategies=args.strategies.split(","),
                seeds=args.seeds,
                jobs=args.jobs,
                params=json.loads(args.params) if args.params else {},
                learner=args.learner,
                representation_epochs=args.representation_epochs,
                representation_setting=args.representation_setting,
                fine_tune=args.fine_tune,
                **settings,
            )
            started = time.monotonic()
            print(f"{dataset} {regime_name}: {settings}, full-pool accuracy {full:.4f}", flush=True)
            suffix = "".join(f"-{part}" for part in ("simclr" if args.learner == "simclr" else "", args.tag) if part)
            run_dir = out / f"{dataset}-{regime_name}{suffix}"
            earlier_meta, earlier = finished_curves(run_dir, settings, config) if args.resume else ({}, [])
            kept = sorted({(r["strategy"], r["seed"]) for r in earlier})
            if args.resume:
                print(f"  keeping {len(kept)} finished curves from {run_dir.name}", flush=True)
            rows = earlier + run_simulation(
                data,
                config,
                cache=out / "cache",
                progress=lambda done, total: print(f"  {done}/{total} rounds", flush=True),
                skip=kept,
            )
            rows.sort(key=lambda r: (r["strategy"], r["seed"], r["round"]))
            title = f"{dataset}, {regime_name} budget{' (' + args.tag + ')' if args.tag else ''}"
            paths = write_results(rows, run_dir, title, full)
            meta = {
                "dataset": dataset,
                "regime": regime_name,
                "config": settings,
                "seeds": args.seeds,
                "minutes": round((time.monotonic() - started) / 60 + earlier_meta.get("minutes", 0), 1),
                "dir": run_dir.name,
                # A resumed run shows both commands: its curves come from both.
                "command": f"{earlier_meta['command']}` then `{command}" if earlier_meta else command,
                "tag": args.tag,
                "learner": args.learner,
                "strategy_params": config.params,
                "device": device_name(),
            }
            if args.representation_setting:
                meta["representation_setting"] = args.representation_setting
            if args.fine_tune:
                meta["fine_tune"] = True
            if representation_s is not None or "representation_s" in earlier_meta:
                meta["representation_s"] = representation_s or earlier_meta["representation_s"]
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
