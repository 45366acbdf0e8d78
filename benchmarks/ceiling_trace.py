"""Why a full-pool reference accuracy (a curve's ceiling) is what it is (issue #10): repeats
`models.simulate.full_pool_accuracy` for one dataset and prints, as one JSON object, the challenge's
held-out scores and verdict, the test accuracy of the head, of the CNN that predicts and of their mix,
and what a CNN trained on every pool label with the challenge's seed fits of its own training labels
(a stalled training shows there as chance).

    python benchmarks/ceiling_trace.py --dataset symbols10k-rgb \
        --out benchmarks/results/ceiling_trace-symbols10k-rgb.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()

    from models.simulate import SimulationConfig, full_pool_learner, load_simulation_data, representation_for
    from models.training import evaluate, fit_classifier, predict_proba

    data = load_simulation_data(args.dataset)
    pool, test = representation_for(data, SimulationConfig(strategies=[], learner="simclr"), args.cache)
    k = len(data.classes)

    def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
        return round(float(evaluate(probabilities, y, k)["accuracy"]), 4)

    learner = full_pool_learner(data, pool)
    head = learner.head
    p_head = head.predict_proba(test)
    figures: dict[str, object] = {
        "dataset": args.dataset,
        "challenge": learner.info.get("challenge"),
        "ceiling_test": accuracy(learner.predict_proba(test, data.test_x), data.test_y),
        "head_test": accuracy(p_head, data.test_y),
    }
    if learner.pixel is not None:
        q = predict_proba(learner.pixel.model, data.test_x, temperature=learner.pixel.temperature)
        figures["predicting_cnn_test"] = accuracy(q, data.test_y)
    # The refit on every label, as fit_challenger trains it (seed 0), judged on its own training labels.
    refit = fit_classifier(np.asarray(data.pool_x, dtype=np.float32), data.pool_y, k, seed=0)
    figures["refit_on_every_label"] = {
        "train": accuracy(predict_proba(refit, data.pool_x), data.pool_y),
        "test": accuracy(predict_proba(refit, data.test_x), data.test_y),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
