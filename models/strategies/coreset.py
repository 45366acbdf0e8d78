"""k-center greedy selection over feature vectors (Sener & Savarese, "Active Learning for
Convolutional Neural Networks: A Core-Set Approach", ICLR 2018)."""

from __future__ import annotations

import numpy as np

from models.strategies.base import Selection, SelectionContext, Strategy


def k_center_greedy(candidates: np.ndarray, centers: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Greedily picks k candidate rows that are farthest from everything covered so far.

    Args:
        candidates: [N, D] features of the rows that may be picked.
        centers: [M, D] features already covered (M may be 0).
        k: how many to pick.

    Returns:
        (indices into candidates, the distance each had to its nearest center when picked).
    """
    n = len(candidates)
    k = min(k, n)
    if k <= 0:
        return [], []
    x = np.ascontiguousarray(candidates, dtype=np.float32)
    dist = np.full(n, np.inf, dtype=np.float32)
    if len(centers):
        c = np.ascontiguousarray(centers, dtype=np.float32)
        sq = (x**2).sum(1)
        # In blocks, so a large pool never needs the whole N x M distance matrix at once.
        for start in range(0, len(c), 1024):
            block = c[start : start + 1024]
            d = sq[:, None] - 2 * x @ block.T + (block**2).sum(1)[None, :]
            dist = np.minimum(dist, d.min(axis=1))
        dist = np.sqrt(np.maximum(dist, 0))
        first = None
    else:
        # Nothing covered yet: start from the most typical point (nearest the mean), not an outlier.
        first = int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))
    picked: list[int] = []
    gaps: list[float] = []
    for _ in range(k):
        i = first if first is not None and not picked else int(np.argmax(dist))
        picked.append(i)
        gaps.append(float(dist[i]) if np.isfinite(dist[i]) else 0.0)
        dist = np.minimum(dist, np.sqrt(((x - x[i]) ** 2).sum(1)))
        dist[i] = -1.0
    return picked, gaps


class ColdStartStrategy(Strategy):
    """First batch with no labels: k-center greedy from the most typical image outwards."""

    name = "coldstart"

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        if ctx.candidate_features is None:
            raise ValueError("coldstart needs candidate features")
        centers = ctx.labelled_features if ctx.labelled_features is not None else np.zeros((0, 1))
        picked, gaps = k_center_greedy(ctx.candidate_features, centers, batch_size)
        return Selection(
            image_ids=[int(ctx.candidate_ids[i]) for i in picked],
            scores=gaps,
            reasons=[{"strategy": self.name, "distance_to_covered": round(g, 4)} for g in gaps],
        )
