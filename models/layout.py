"""Two-dimensional layouts of a latent space for the latent map.

A linear projection (PCA) of a learned space squashes every class into one blob; t-SNE (openTSNE,
FFT-accelerated) keeps neighbourhoods, so classes and their confusions show as regions. numpy only
at import time: the API falls back to `pca_2d` without loading openTSNE.
"""

from __future__ import annotations

import numpy as np

# Fewer points than this gives t-SNE too little to arrange; PCA is as good there.
MIN_TSNE_POINTS = 50


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 2] on the two leading principal components."""
    if len(codes) < 3:
        return np.zeros((len(codes), 2))
    centred = codes.astype(np.float64) - codes.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))


def tsne_2d(codes: np.ndarray, *, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """[N, D] -> [N, 2] t-SNE coordinates (PCA to 50 dimensions first, as is usual for t-SNE)."""
    import openTSNE

    x = codes.astype(np.float32)
    if x.shape[1] > 50:
        centred = x - x.mean(0, keepdims=True)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(x) // 5000)], full_matrices=False)
        x = centred @ vt[:50].T
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    embedding = openTSNE.TSNE(perplexity=perplexity, n_jobs=n_jobs, random_state=seed, verbose=False).fit(x)
    return np.asarray(embedding, dtype=np.float64)


def layout_2d(codes: np.ndarray, *, seed: int = 0, n_jobs: int = 1) -> tuple[np.ndarray, str]:
    """The map's coordinates and how they were made ("tsne", or "pca" for tiny sets)."""
    if len(codes) < MIN_TSNE_POINTS:
        return pca_2d(codes), "pca"
    return tsne_2d(codes, seed=seed, n_jobs=n_jobs), "tsne"


def map_sample(ids: np.ndarray, keep: set[int], limit: int, seed: int = 0) -> np.ndarray:
    """Positions of at most `limit` points: every id in `keep` (labelled, suggested) first, then a
    seeded random share of the rest, so the map's interesting points are never sampled away."""
    if len(ids) <= limit:
        return np.arange(len(ids))
    must = np.flatnonzero(np.isin(ids, np.fromiter(keep, dtype=np.int64, count=len(keep))))[:limit]
    rest = np.setdiff1d(np.arange(len(ids)), must, assume_unique=True)
    extra = np.random.default_rng(seed).choice(rest, size=limit - len(must), replace=False)
    return np.sort(np.concatenate([must, extra]))
