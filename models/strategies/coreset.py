"""Diversity and typicality in latent space: k-center greedy (core-set), TypiClust, cold start.

k-center greedy follows (Sener & Savarese, "Active Learning for
Convolutional Neural Networks: A Core-Set Approach", ICLR 2018)."""

from __future__ import annotations

import numpy as np

from models.strategies.base import PoolRows, Selection, SelectionContext, Strategy

# Candidate rows k-center greedy works through at a time (16,384 x 1,024 float32 distances: 64 MB).
COVER_ROWS = 16_384


def row_blocks(n: int) -> list[slice]:
    """Consecutive blocks of COVER_ROWS rows. Every pool-wide step of k-center greedy goes a block at
    a time: whole, the distances to 1,024 centers and each pick's differences were 4.9 GB of
    temporaries at a million candidates of 256 features (benchmarks/results/step_memory.md). Up to
    COVER_ROWS candidates nothing changes; above, a block's float32 matrix product can round a
    distance's last bit differently from the whole one."""
    return [slice(start, start + COVER_ROWS) for start in range(0, n, COVER_ROWS)]


def distance_to_cover(x: np.ndarray, centers: np.ndarray, rows: list[slice]) -> np.ndarray:
    """[N] float32 Euclidean distance of each row of x (float32, C-ordered) to its nearest center."""
    dist = np.full(len(x), np.inf, dtype=np.float32)
    c = np.ascontiguousarray(centers, dtype=np.float32)
    sq = np.concatenate([(x[r] ** 2).sum(1) for r in rows]) if rows else np.zeros(0, np.float32)
    # In blocks of centers too, so a large pool never needs the whole N x M distance matrix at once.
    for start in range(0, len(c), 1024):
        block = c[start : start + 1024]
        block_sq = (block**2).sum(1)[None, :]
        for r in rows:
            d = sq[r, None] - 2 * x[r] @ block.T + block_sq
            dist[r] = np.minimum(dist[r], d.min(axis=1))
    return np.sqrt(np.maximum(dist, 0))


def cover_pick(dist: np.ndarray, x: np.ndarray, i: int, rows: list[slice]) -> None:
    """Row i is now covered: every distance drops to at most its distance to row i (in place)."""
    for r in rows:
        dist[r] = np.minimum(dist[r], np.sqrt(((x[r] - x[i]) ** 2).sum(1)))
    dist[i] = -1.0


def k_center_greedy(candidates: np.ndarray | PoolRows, centers: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Greedily picks k candidate rows that are farthest from everything covered so far.

    Args:
        candidates: [N, D] features of the rows that may be picked; for `PoolRows`, every pool row
            is scored in place and the ones that are not candidates start covered, so none is picked.
        centers: [M, D] features already covered (M may be 0).
        k: how many to pick.

    Returns:
        (indices into candidates, the distance each had to its nearest center when picked).
    """
    n = len(candidates)
    k = min(k, n)
    if k <= 0:
        return [], []
    if isinstance(candidates, PoolRows):
        x = np.ascontiguousarray(candidates.space, dtype=np.float32)
        outside = ~candidates.mask()
    else:
        x = np.ascontiguousarray(candidates, dtype=np.float32)
        outside = None
    rows = row_blocks(len(x))
    if len(centers):
        dist = distance_to_cover(x, centers, rows)
        first = None
    else:
        dist = np.full(len(x), np.inf, dtype=np.float32)
        # Nothing covered yet: start from the most typical point (nearest the mean), not an outlier.
        mean = candidates.mean(0) if outside is not None else x.mean(0)
        spread = np.concatenate([((x[r] - mean) ** 2).sum(1) for r in rows])
        if outside is not None:
            spread[outside] = np.inf
        first = int(np.argmin(spread))
    if outside is not None:
        dist[outside] = -1.0
    picked: list[int] = []
    gaps: list[float] = []
    for _ in range(k):
        i = first if first is not None and not picked else int(np.argmax(dist))
        picked.append(i)
        gaps.append(float(dist[i]) if np.isfinite(dist[i]) else 0.0)
        cover_pick(dist, x, i, rows)
    if isinstance(candidates, PoolRows):
        picked = np.searchsorted(candidates.positions, picked).tolist()
    return picked, gaps


class CoresetStrategy(Strategy):
    """k-center greedy over latents, seeded by the labelled set (the core-set baseline)."""

    name = "coreset"

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        if ctx.candidate_features is None or ctx.labelled_features is None:
            raise ValueError("coreset needs latent features")
        picked, gaps = k_center_greedy(ctx.candidate_features, ctx.labelled_features, batch_size)
        return Selection(
            image_ids=[int(ctx.candidate_ids[i]) for i in picked],
            scores=gaps,
            reasons=[{"strategy": self.name, "distance_to_labelled": round(g, 4)} for g in gaps],
        )


def typicality(features: np.ndarray, k: int = 20) -> np.ndarray:
    """Inverse mean distance to the k nearest other points: high in dense regions. [N] -> [N]."""
    from models.latent_index import LatentIndex

    if len(features) < 2:
        return np.ones(len(features))
    k = min(k, len(features) - 1)
    dist, _ = LatentIndex().fit(features, np.arange(len(features))).kneighbors(features, k + 1)
    return 1.0 / (dist[:, 1:].mean(1) + 1e-8)


class TypicalityStrategy(Strategy):
    """TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022): cluster the
    latents into labelled + batch clusters, then take the most typical image of each of the largest
    clusters that hold no labelled image yet. Strong when labels are very few."""

    name = "typiclust"

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        import faiss

        if ctx.candidate_features is None:
            raise ValueError("typiclust needs latent features")
        n = len(ctx.candidate_ids)
        if n == 0 or batch_size <= 0:
            return Selection()
        dim = ctx.candidate_features.shape[1]
        labelled = ctx.labelled_features if ctx.labelled_features is not None else np.zeros((0, dim), np.float32)
        labelled = np.ascontiguousarray(labelled, dtype=np.float32)
        n_clusters = int(min(len(ctx.labelled_ids) + batch_size, self.params["max_clusters"], n))
        kmeans = faiss.Kmeans(
            dim, n_clusters, niter=20, seed=ctx.seed % (2**31), verbose=False, min_points_per_centroid=1
        )
        kmeans.train(_clustered(ctx, labelled, n_clusters))
        # A block of candidates at a time: each row's nearest centroid does not depend on the others.
        cand_assign = np.concatenate(
            [
                kmeans.index.search(np.ascontiguousarray(ctx.candidate_features[r], np.float32), 1)[1][:, 0]
                for r in row_blocks(n)
            ]
        )
        lab_assign = kmeans.index.search(labelled, 1)[1][:, 0] if len(labelled) else np.zeros(0, np.int64)
        covered = np.bincount(lab_assign, minlength=n_clusters) if len(lab_assign) else np.zeros(n_clusters, int)
        size = np.bincount(cand_assign, minlength=n_clusters)
        selection = Selection()
        taken = np.zeros(n, dtype=bool)
        rng = ctx.rng
        # Each cluster's candidates in position order, found once: a scan of every candidate per pick
        # was a million comparisons a pick at a million images.
        by_cluster = np.argsort(cand_assign, kind="stable")
        bounds = np.searchsorted(cand_assign[by_cluster], np.arange(n_clusters + 1))
        # Clusters with the fewest labels first, larger ones before smaller; cycle until the batch is full.
        while len(selection.image_ids) < min(batch_size, n):
            order = np.lexsort((-size, covered))
            progressed = False
            for cluster in order:
                members = by_cluster[bounds[cluster] : bounds[cluster + 1]]
                members = members[~taken[members]]
                if len(members) == 0:
                    continue
                if len(members) > self.params["max_members"]:
                    members = np.sort(rng.choice(members, self.params["max_members"], replace=False))
                typ = typicality(ctx.candidate_features[members], self.params["knn"])
                best = members[int(np.argmax(typ))]
                taken[best] = True
                covered[cluster] += 1
                progressed = True
                selection.image_ids.append(int(ctx.candidate_ids[best]))
                selection.scores.append(float(typ.max()))
                selection.reasons.append(
                    {"strategy": self.name, "cluster": int(cluster), "cluster_size": int(size[cluster])}
                )
                break
            if not progressed:
                break
        return selection


def _clustered(ctx: SelectionContext, labelled: np.ndarray, n_clusters: int) -> np.ndarray:
    """The rows k-means trains on: the candidates and the labelled images. From the pool in place,
    a seeded sample of as many as faiss would train on (256 per cluster) rather than a copy of
    every row, which faiss would only sample from."""
    candidates = ctx.candidate_features
    assert candidates is not None
    if not isinstance(candidates, PoolRows):
        rows = np.concatenate([candidates, labelled]) if len(labelled) else candidates
        return np.ascontiguousarray(rows, dtype=np.float32)
    total, limit = len(candidates) + len(labelled), 256 * n_clusters
    chosen = np.sort(ctx.rng.choice(total, limit, replace=False)) if total > limit else np.arange(total)
    inside = chosen[chosen < len(candidates)]
    return np.ascontiguousarray(
        np.concatenate([candidates[inside], labelled[chosen[len(inside) :] - len(candidates)]]), dtype=np.float32
    )


class ColdStartStrategy(TypicalityStrategy):
    """The first batch, with no labels: typical images of distinct clusters (TypiClust)."""

    name = "coldstart"
