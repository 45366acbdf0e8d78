"""Label propagation over a million-image pool graph on one thread and on several.

Every round with a learned representation spreads its labels over the pool's kNN graph (twenty
sparse products, `models.learner.PoolGraph.propagate`). scipy runs a sparse product on one core, so
at a million images it was 15 s of a round's task model (`step_memory.py`'s profile). The product is
now split into blocks of rows on the process's threads. This times both and checks that they give
the same scores bit for bit. The graph has PoolGraph.build's shape (10 neighbours per image,
symmetrised, normalised), built without a search (`benchmarks/step_memory.py::pool`).

    python benchmarks/propagation_threads.py --out benchmarks/results/propagation_threads.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.step_memory import pool  # noqa: E402
from models.cores import usable_cores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    _, classes, graph = pool(args.images, 8, 10, 10, seed=0)
    labelled = np.sort(np.random.default_rng(2).choice(args.images, args.labels, replace=False))
    counts = sorted({1, 2, usable_cores()})
    rows, reference = [], None
    for threads in counts:
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            scores = graph.propagate(labelled, classes[labelled], 10, threads=threads)
            seconds.append(time.perf_counter() - started)
        reference = scores if reference is None else reference
        row = {
            "threads": threads,
            "seconds": [round(s, 2) for s in seconds],
            "median_s": round(float(np.median(seconds)), 2),
            "same_as_one_thread": bool(np.array_equal(scores, reference)),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {
        "command": "python benchmarks/propagation_threads.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {usable_cores()} usable cores",
        "images": args.images,
        "edges": int(graph.weights.nnz),  # type: ignore[attr-defined]
        "runs": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
