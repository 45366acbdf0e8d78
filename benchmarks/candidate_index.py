"""What a latent strategy's nearest-neighbour search costs a round on a large pool (issue #11, "a warm
round on 1M images"): the graph built per round over the candidates, as rounds did before, against
one graph over the whole pool kept between rounds and searched with the labelled images filtered out
(`worker.pipeline.candidate_index`, `models.latent_index.IndexSubset`).

Features: pixel-PCA codes of augmented MNIST digits, as in `knn_scale.py` (the stand-in space a
round selects in before a representation is ready). Each round labels `--batch` more images and
asks for the neighbours of `--queries` codes moved off labelled ones (snn's search: k=30). Recall is
against exact search among that round's candidates.

    python benchmarks/candidate_index.py --out benchmarks/results/candidate_index.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from benchmarks.knn_scale import pca_codes  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.latent_index import LatentIndex  # noqa: E402
from worker.pipeline import WARM, candidate_index  # noqa: E402


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--exact-max", type=int, default=50_000, help="the LATENT_INDEX_EXACT_MAX setting")
    parser.add_argument("--ef", default="", help="efSearch values to try on the last round's kept graph")
    parser.add_argument("--skip-per-round", action="store_true", help="do not build the per-round graph")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    digits = load_dataset("mnist5k").images.astype(np.float32) / 255.0

    t = time.monotonic()
    features, _ = pca_codes(digits, args.n, args.dim, rng)
    features_s = time.monotonic() - t
    pool_ids = np.arange(args.n, dtype=np.int64) + 1
    order = rng.permutation(args.n)
    scale = float(np.median(np.linalg.norm(features[order[:500]] - features[order[500:1000]], axis=1))) / 10

    rounds = []
    for r in range(1, args.rounds + 1):
        labelled = np.sort(order[: r * args.batch])
        candidates = np.setdiff1d(np.arange(args.n), labelled)
        sources = features[labelled[rng.integers(0, len(labelled), args.queries)]]
        queries = sources + rng.normal(0, scale, sources.shape).astype(np.float32)
        WARM.hits.clear()
        t = time.monotonic()
        index = candidate_index(features, "space", pool_ids, candidates, exact_max=args.exact_max)
        prepare_s = time.monotonic() - t
        reused = "pool-index" in WARM.hits
        t = time.monotonic()
        _, found = index.kneighbors(queries, args.k)
        search_s = time.monotonic() - t
        exact = faiss.IndexFlatL2(args.dim)
        exact.add(np.ascontiguousarray(features[candidates]))
        _, truth = exact.search(queries, args.k)
        del exact
        row = {
            "round": r,
            "labelled": len(labelled),
            "kept_graph": {
                "prepare_s": round(prepare_s, 2),
                "reused": reused,
                "search_s": round(search_s, 3),
                f"recall@{args.k}": round(recall(found, truth), 4),
            },
        }
        if r == args.rounds and args.ef:
            for ef in (int(e) for e in args.ef.split(",")):
                index.base.index.hnsw.efSearch, index.base.ef_per_neighbour = ef, 0
                t = time.monotonic()
                _, found = index.kneighbors(queries, args.k)
                row["kept_graph"][f"efSearch={ef}"] = {
                    "search_s": round(time.monotonic() - t, 3),
                    f"recall@{args.k}": round(recall(found, truth), 4),
                }
        if r == 1 and not args.skip_per_round:
            # The earlier path: a graph over this round's candidates, built inside the round.
            t = time.monotonic()
            fresh = LatentIndex(exact_max=args.exact_max).fit(features[candidates], np.arange(len(candidates)))
            build_s = time.monotonic() - t
            t = time.monotonic()
            _, found = fresh.kneighbors(queries, args.k)
            row["graph_per_round"] = {
                "prepare_s": round(build_s, 2),
                "search_s": round(time.monotonic() - t, 3),
                f"recall@{args.k}": round(recall(found, truth), 4),
            }
            del fresh
        rounds.append(row)
        print(json.dumps(row), flush=True)

    result = {
        "command": " ".join(["python", "benchmarks/candidate_index.py", *sys.argv[1:]]),
        "machine": f"CPU only, {usable_cores()} cores, faiss {faiss.__version__}",
        "faiss_threads": faiss.omp_get_max_threads(),
        "pool": args.n,
        "dim": args.dim,
        "features_s": round(features_s, 1),
        "rounds": rounds,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
