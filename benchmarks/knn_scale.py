"""Nearest-neighbour search at a million images: the latent index's HNSW graph against exact search.

Features: the product's pixel-PCA latent space (what rounds select in before a representation is
ready) of N augmented copies of the 5,000 bundled MNIST digits (shifted up to 3 px, contrast and
brightness jittered, pixel noise), so the neighbourhoods are those of real digits, not of random
vectors. The index is `models.latent_index.LatentIndex` as rounds build it above `exact_max`.
Queries are held-out augmented digits, as many as a round's moved codes (snn) would be.

    python benchmarks/knn_scale.py > benchmarks/results/knn_scale.md
    python benchmarks/knn_scale.py --n 200000 --dim 32
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.latent_index import LatentIndex  # noqa: E402
from models.learner import PoolGraph  # noqa: E402


def augmented(digits: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 784] float32 pixels in [0, 1]: random digits, each shifted, jittered and noised."""
    pick = rng.integers(0, len(digits), n)
    shifts = rng.integers(-3, 4, (n, 2))
    out = np.empty((n, 28 * 28), dtype=np.float32)
    for i in range(n):
        image = np.roll(digits[pick[i]], tuple(shifts[i]), axis=(0, 1))
        out[i] = image.reshape(-1)
    out *= rng.uniform(0.7, 1.3, (n, 1)).astype(np.float32)
    out += rng.uniform(-0.1, 0.1, (n, 1)).astype(np.float32)
    out += rng.normal(0, 0.05, out.shape).astype(np.float32)
    return out


def pca_codes(
    digits: np.ndarray, n: int, dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """[n, dim] float32 codes of augmented digits on the top principal components of 50,000 of
    them, and the projection that made them (for queries)."""
    sample = augmented(digits, 50_000, rng)
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    basis = vt[:dim].T.astype(np.float32)

    def project(x: np.ndarray) -> np.ndarray:
        return (x - mean) @ basis

    features = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        features[start:stop] = project(augmented(digits, stop - start, rng))
    return features, project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="32,64,128,256,512")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    digits = load_dataset("mnist5k").images.astype(np.float32) / 255.0

    t = time.monotonic()
    features, project = pca_codes(digits, args.n, args.dim, rng)
    queries = project(augmented(digits, args.queries, rng))
    features_s = time.monotonic() - t

    t = time.monotonic()
    index = LatentIndex(exact_max=0).fit(features, np.arange(args.n))
    build_s = time.monotonic() - t
    assert index.approximate

    t = time.monotonic()
    exact = faiss.IndexFlatL2(args.dim)
    exact.add(features)
    _, truth = exact.search(queries, args.k)
    exact_s = time.monotonic() - t

    rows = []
    for ef in (int(e) for e in args.ef.split(",")):
        index.index.hnsw.efSearch = ef
        index.kneighbors(queries[:10], args.k)  # warm
        t = time.monotonic()
        _, found = index.kneighbors(queries, args.k)
        seconds = time.monotonic() - t
        recall = np.mean([len(set(found[i]) & set(truth[i])) / args.k for i in range(len(queries))])
        rows.append((ef, recall, seconds))

    # The learner's pool graph (label propagation) over the same million: every image's 10 nearest
    # neighbours, from the HNSW index above `exact_max`, checked against exact cosine search on a
    # sample of images.
    hnsw_m, ef_construction = index.hnsw_m, index.ef_construction
    del index, exact  # the memory goes to the graph's own index
    t = time.monotonic()
    graph = PoolGraph.build(features)
    graph_s = time.monotonic() - t
    tenth = min(args.n, 100_000)
    t = time.monotonic()
    PoolGraph.build(features[:tenth], exact_max=tenth)  # what the graph cost before: exact search
    exact_graph_s = time.monotonic() - t
    z = features - features.mean(0)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    probe = rng.choice(args.n, args.queries, replace=False)
    cosine = faiss.IndexFlatIP(args.dim)
    cosine.add(np.ascontiguousarray(z, dtype=np.float32))
    _, exact_graph = cosine.search(np.ascontiguousarray(z[probe], dtype=np.float32), 11)
    graph_recall = np.mean(
        [
            len(set(graph.neighbours[p]) & set(exact_graph[i][exact_graph[i] != p][:10])) / 10
            for i, p in enumerate(probe)
        ]
    )

    cores = usable_cores()
    print('# Nearest-neighbour search at scale (issue #11, "A million images")\n')
    print(
        f"`python {' '.join(['benchmarks/knn_scale.py', *sys.argv[1:]])}`; {cores} CPU cores, faiss "
        f"{faiss.__version__}, {faiss.omp_get_max_threads()} threads.\n"
    )
    print(
        f"- {args.n:,} features of {args.dim} dimensions (pixel PCA of augmented MNIST digits): "
        f"made in {features_s:.0f} s"
    )
    print(f"- HNSW graph (M={hnsw_m}, efConstruction={ef_construction}) built in {build_s:.0f} s")
    print(f"- exact search of {args.queries:,} queries (k={args.k}) for the ground truth: {exact_s:.1f} s\n")
    print(f"| efSearch | recall@{args.k} against exact | {args.queries:,} queries | per query |")
    print("|---|---|---|---|")
    for ef, recall, seconds in rows:
        default = " (default)" if ef == LatentIndex().ef_search else ""
        print(f"| {ef}{default} | {recall:.4f} | {seconds:.3f} s | {seconds / args.queries * 1e3:.2f} ms |")
    print(
        f"\nThe learner's pool graph (`PoolGraph.build`, 10 neighbours of every image, for label propagation) "
        f"over the same {args.n:,} features: built in {graph_s:.0f} s through the HNSW index; "
        f"recall@10 against exact cosine search on {args.queries:,} sampled images: {graph_recall:.4f}. "
        f"The exact graph, which every pool got before, took {exact_graph_s:.0f} s for the first {tenth:,} "
        f"features; it grows with the square of the pool, so about {exact_graph_s * (args.n / tenth) ** 2 / 60:.0f} "
        "minutes at this size."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
