"""bfloat16 autocast against float32 for the representation's training (issue #11: "mixed precision
where it helps; the same seed gives the same picks").

The representation job trains SimCLR in bfloat16 autocast on a GPU (models.representation, the loss
in float32; features are always encoded in float32). This measures what that buys and costs: the
device setting's encoder trained on the 5,000 bundled MNIST digits for a fixed number of epochs (no
time budget, so both precisions take the same steps): bfloat16, float32, then bfloat16 again with the
same seed (the first run also pays the warm-up). Reported per run: training seconds (the patch
block's fit included, as in the job) and steps per second, and the features' quality as a
logistic-regression probe on 1,000 held-out digits, trained on 10 labels per class (mean of 5 draws)
and on all 4,000 others. The two bfloat16 runs say whether the same seed gives the same features.

    python benchmarks/precision.py --out benchmarks/results/precision-gpu.json   # on a GPU
    python benchmarks/precision.py --epochs 2 --out /tmp/precision.json         # a CPU smoke run
    python benchmarks/precision.py --dataset shapes10k --epochs 10 --out benchmarks/results/precision-cpu-shapes10k.json

`--time-budget-s` stops each training there, as a project's representation job is stopped: then the
precisions are compared at the same time, each taking the steps its speed allows.

On a CPU the probe's held-out images are the last 1,000 of the shuffled set, as on a GPU; the pool is
every other image (9,000 for shapes10k).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from benchmarks.representation_1m import device_name  # noqa: E402
from models.representation import SimCLR, setting_for  # noqa: E402
from models.training import select_device  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def probe(features: np.ndarray, labels: np.ndarray, *, held_out: int = 1000, draws: int = 5) -> dict[str, float]:
    """Held-out accuracy of a logistic regression on standardised features: from 10 labels per class
    (mean over `draws` seeded draws) and from every other image."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, test_x = features[:-held_out], features[-held_out:]
    train_y, test_y = labels[:-held_out], labels[-held_out:]
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)

    def score(rows: np.ndarray) -> float:
        model = LogisticRegression(max_iter=2000).fit(train_x[rows], train_y[rows])
        return float((model.predict(test_x) == test_y).mean())

    few = []
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        rows = np.concatenate([rng.choice(np.flatnonzero(train_y == c), 10, replace=False) for c in np.unique(labels)])
        few.append(score(rows))
    return {"probe_10_per_class": round(float(np.mean(few)), 4), "probe_all": round(score(np.arange(len(train_y))), 4)}


def train(
    x: np.ndarray, labels: np.ndarray, *, bf16: bool, epochs: int, device: object, time_budget_s: float | None = None
) -> tuple[dict, np.ndarray]:
    setting = setting_for(getattr(device, "type", "cpu"), epochs=epochs)
    # Without a budget both precisions take the same steps; with one, each gets the steps its speed
    # allows, as a project's representation job does.
    setting["time_budget_s"] = time_budget_s
    simclr = SimCLR.from_setting(setting, seed=0, device=device)  # type: ignore[arg-type]
    simclr.mixed_precision = bf16
    started = time.monotonic()
    simclr.fit(x)
    seconds = time.monotonic() - started
    features = simclr.transform(x)
    assert simclr.history is not None
    row = {
        "precision": "bfloat16" if bf16 else "float32",
        "seconds": round(seconds, 2),
        "steps": simclr.history.steps,
        "epochs_begun": simclr.history.epochs,
        "steps_per_s": round(simclr.history.steps / seconds, 2),
        "final_loss": round(simclr.history.losses[-1], 4),
        **probe(features, labels),
    }
    return row, features


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dataset", default="mnist5k", help="a dataset of app.datasets (mnist5k, shapes10k, ...)")
    parser.add_argument("--out", type=Path, default=RESULTS / "precision.json")
    parser.add_argument(
        "--time-budget-s", type=float, default=None, help="stop each training there, as the service does"
    )
    parser.add_argument(
        "--runs", default="bfloat16,float32,bfloat16-again", help="which of the three runs, in this order"
    )
    args = parser.parse_args()
    device = select_device()
    data = load_dataset(args.dataset)
    order = np.random.default_rng(0).permutation(len(data.labels))
    x = data.pixels()[order]
    labels = np.asarray(data.labels)[order]
    out: dict[str, object] = {
        "device": device_name(device),
        "dataset": args.dataset,
        "epochs": args.epochs,
        "time_budget_s": args.time_budget_s,
        "runs": [],
    }
    runs: list[dict] = out["runs"]  # type: ignore[assignment]
    features: dict[str, np.ndarray] = {}
    # float32 second, so neither precision alone pays the first run's warm-up (CUDA context, kernels).
    runs_wanted = args.runs.split(",")
    for name, bf16 in (("bfloat16", True), ("float32", False), ("bfloat16-again", True)):
        if name not in runs_wanted:
            continue
        row, features[name] = train(
            x, labels, bf16=bf16, epochs=args.epochs, device=device, time_budget_s=args.time_budget_s
        )
        runs.append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    if {"bfloat16", "bfloat16-again"} <= features.keys():
        same = features["bfloat16"] - features["bfloat16-again"]
        out["same_seed_bfloat16"] = {
            "identical": bool(np.array_equal(features["bfloat16"], features["bfloat16-again"])),
            "max_abs_difference": float(np.abs(same).max()),
        }
    out["command"] = "python benchmarks/precision.py " + " ".join(sys.argv[1:])
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
