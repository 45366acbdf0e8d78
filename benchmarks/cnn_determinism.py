"""Does the same seed give the same task CNN on this machine? (issue #11, "the same seed gives the same
picks"; issue #10, "deterministic ... with torch's deterministic settings, on GPU")

Trains the task CNN (models.training.fit_classifier, as rounds and the learner's challenger do) twice
with the same seed on 1,000 of the bundled MNIST digits, with the pooling it ships with (BinAverage)
and with the nn.AdaptiveAvgPool2d it replaced, and reports for each: whether the two runs' weights and
predictions are bit-identical, the largest weight difference, and any warning PyTorch raised about
an operation without a deterministic implementation. On a CPU every variant is deterministic; the
question is the GPU.

    python benchmarks/cnn_determinism.py --out benchmarks/results/cnn_determinism-gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from benchmarks.representation_1m import device_name  # noqa: E402
from models.nets.classifier import SmallCNN  # noqa: E402
from models.training import fit_classifier, predict_proba, select_device  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def train_twice(x: np.ndarray, y: np.ndarray, pooling: str, device: torch.device) -> dict[str, object]:
    runs, messages = [], set()
    for _ in range(2):
        torch.manual_seed(0)  # the initial weights, as fit_classifier draws them when given no model
        model = SmallCNN(1, 10).to(device)
        if pooling == "AdaptiveAvgPool2d":
            model.features[8] = nn.AdaptiveAvgPool2d(4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = fit_classifier(x, y, 10, seed=0, device=device, max_steps=300, model=model)
        messages |= {str(w.message).split(".")[0] for w in caught if "deterministic" in str(w.message)}
        runs.append((fitted.state_dict(), predict_proba(fitted, x)))
    (first, p1), (second, p2) = runs
    difference = max(float((first[k].double() - second[k].double()).abs().max()) for k in first)
    return {
        "pooling": pooling,
        "weights_identical": difference == 0.0,
        "largest_weight_difference": difference,
        "predictions_identical": bool(np.array_equal(p1, p2)),
        "nondeterminism_warnings": sorted(messages),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "cnn_determinism.json")
    args = parser.parse_args()
    device = select_device()
    data = load_dataset("mnist5k")
    x = (data.images[:1000].astype(np.float32) / 255.0)[:, None]
    y = np.asarray(data.labels[:1000], dtype=np.int64)
    out: dict[str, object] = {"device": device_name(device), "runs": []}
    for pooling in ("BinAverage", "AdaptiveAvgPool2d"):
        out["runs"].append(train_twice(x, y, pooling, device))  # type: ignore[union-attr]
        print(json.dumps(out["runs"][-1]), flush=True)  # type: ignore[index]
    out["command"] = "python benchmarks/cnn_determinism.py " + " ".join(sys.argv[1:])
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
