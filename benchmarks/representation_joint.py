"""What the joint representation (SimCLR's features beside k-means patch features) gives a head with
random labels, against each block alone and against the joint features without the learner's
choice of block. One representation per dataset, trained as `suggestlab simulate` trains it on this
device (models.simulate.representation_for, cached under --cache); then, for each seed and budget,
the same random labels for every variant, and the learner a round fits (models.learner.fit_learner,
k-fold over the labels), scored on the test split.

    python benchmarks/representation_joint.py --datasets shapes10k,mnist5k,symbols10k-rgb \
        --cache /tmp/bench/cache > benchmarks/results/representation_joint.md
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

from models.simulate import SimulationConfig, load_simulation_data  # noqa: E402

# Each variant: which columns the features are, and whether the learner may choose a block.
VARIANTS = (
    ("SimCLR block alone", "conv", False),
    ("patch block alone", "patches", False),
    ("joint, head reads all", "joint", False),
    ("joint, learner chooses the block (the product)", "joint", True),
)


def joint_representation(name: str, cache: Path) -> tuple[Any, np.ndarray, np.ndarray, list[int], str]:
    """The dataset, its pool and test features in this device's setting (trained, or read from the
    cache), the setting's block sizes, and how the features were had."""
    from models.representation import feature_blocks
    from models.simulate import _representation_setting, representation_cache, representation_for

    data = load_simulation_data(name)
    config = SimulationConfig(strategies=["random"])
    started = time.monotonic()
    cached = representation_cache(data, config, cache)
    was_cached = cached is not None and cached.is_file()
    pool, test = representation_for(data, config, cache)
    made = "read from the cache" if was_cached else f"trained in {time.monotonic() - started:.0f} s"
    blocks = feature_blocks(_representation_setting(config))
    assert blocks is not None and sum(blocks) == pool.shape[1], "the setting has no patch block"
    return data, pool, test, list(blocks), made


def learner_accuracy(
    data: Any,
    features: np.ndarray,
    test_features: np.ndarray,
    labelled: np.ndarray,
    graph: Any,
    seed: int,
    blocks: list[int] | None,
) -> tuple[float, Any]:
    """The product's learner fitted on the labelled rows of `features`, and its test accuracy."""
    from models.learner import fit_learner

    learner = fit_learner(
        features, labelled, data.pool_y[labelled], len(data.classes), graph=graph, seed=seed, blocks=blocks
    )
    predicted = learner.predict_proba(test_features).argmax(1)
    return float((predicted == data.test_y).mean()), learner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k,mnist5k,symbols10k-rgb")
    parser.add_argument("--budgets", default="20,40,100,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/suggestlab-bench/cache"))
    args = parser.parse_args()

    from models.learner import PoolGraph

    budgets = [int(b) for b in args.budgets.split(",")]
    print("# The joint representation: SimCLR beside k-means patch features, and the learner's choice of block")
    print()
    print(f"Command: `python benchmarks/representation_joint.py {' '.join(sys.argv[1:])}`")
    print()
    print(
        f"Random labels, {args.seeds} seeds (the same labels for every variant of a seed), test accuracy as "
        "mean ± 95% interval over seeds. Representation: this device's setting, as a project gets it."
    )
    for name in args.datasets.split(","):
        data, pool, test, blocks, made = joint_representation(name, args.cache)
        columns = {"conv": slice(0, blocks[0]), "patches": slice(blocks[0], None), "joint": slice(None)}
        print()
        sizes = f"pool {len(pool)}, test {len(test)}; features {blocks[0]} + {blocks[1]}"
        print(f"## {name} ({sizes}; representation {made})")
        print()
        print("| labels | " + " | ".join(v[0] for v in VARIANTS) + " | block chosen (seed by seed) |")
        print("|---" * (len(VARIANTS) + 2) + "|")
        graphs = {key: PoolGraph.build(np.ascontiguousarray(pool[:, cols])) for key, cols in columns.items()}
        for budget in budgets:
            cells, chosen = [], []
            for _, key, choose in VARIANTS:
                accuracies = []
                for seed in range(args.seeds):
                    labelled = np.random.default_rng(seed).choice(len(pool), budget, replace=False)
                    accuracy, learner = learner_accuracy(
                        data,
                        np.ascontiguousarray(pool[:, columns[key]]),
                        np.ascontiguousarray(test[:, columns[key]]),
                        labelled,
                        graphs[key],
                        seed,
                        blocks if choose else None,
                    )
                    accuracies.append(accuracy)
                    if choose:
                        block = learner.info.get("block")
                        chosen.append("all" if block is None else ("SimCLR" if block[0] == 0 else "patches"))
                mean = float(np.mean(accuracies))
                half = 1.96 * float(np.std(accuracies, ddof=1)) / np.sqrt(len(accuracies)) if len(accuracies) > 1 else 0
                cells.append(f"{mean:.3f} ± {half:.3f}")
            print(f"| {budget} | " + " | ".join(cells) + f" | {', '.join(chosen)} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
