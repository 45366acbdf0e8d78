"""Nearest-neighbour search over latent codes, behind a small estimator-style interface.

Exact (flat L2) search for pools up to `exact_max` codes; above that an HNSW graph, whose recall
against exact search can be measured with `recall_at_k`. The backend is faiss, but callers only
see `fit / add / kneighbors / to_bytes / from_bytes`.
"""

from __future__ import annotations

import io

import faiss
import numpy as np


class LatentIndex:
    def __init__(self, *, exact_max: int = 50_000, hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = 80):
        self.exact_max = exact_max
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.index: faiss.Index | None = None
        self.ids = np.zeros(0, dtype=np.int64)

    @property
    def approximate(self) -> bool:
        return self.index is not None and not isinstance(self.index, faiss.IndexFlat)

    def _new_index(self, dim: int, n: int) -> faiss.Index:
        if n <= self.exact_max:
            return faiss.IndexFlatL2(dim)
        index = faiss.IndexHNSWFlat(dim, self.hnsw_m)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def fit(self, codes: np.ndarray, ids: np.ndarray) -> LatentIndex:
        """Builds the index over [N, D] codes labelled with [N] ids (image ids)."""
        codes = np.ascontiguousarray(codes, dtype=np.float32)
        self.index = self._new_index(codes.shape[1], len(codes))
        self.ids = np.zeros(0, dtype=np.int64)
        return self.add(codes, ids)

    def add(self, codes: np.ndarray, ids: np.ndarray) -> LatentIndex:
        if self.index is None:
            return self.fit(codes, ids)
        codes = np.ascontiguousarray(codes, dtype=np.float32)
        if len(codes) != len(ids):
            raise ValueError("codes and ids differ in length")
        self.index.add(codes)
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        return self

    def kneighbors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """([Q, k] Euclidean distances, [Q, k] ids), nearest first; id -1 where fewer than k exist."""
        if self.index is None:
            raise RuntimeError("index is not fitted")
        k = max(1, min(k, self.index.ntotal))
        d2, pos = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        ids = np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)
        return np.sqrt(np.maximum(d2, 0)), ids

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def to_bytes(self) -> bytes:
        assert self.index is not None
        out = io.BytesIO()
        np.save(out, self.ids)
        np.save(out, faiss.serialize_index(self.index))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LatentIndex:
        buf = io.BytesIO(data)
        index = cls()
        index.ids = np.load(buf)
        index.index = faiss.deserialize_index(np.load(buf))
        return index


def recall_at_k(approximate: LatentIndex, codes: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of the exact k nearest neighbours that the approximate index also returns."""
    exact = LatentIndex(exact_max=len(codes) + 1).fit(codes, ids)
    _, truth = exact.kneighbors(queries, k)
    _, found = approximate.kneighbors(queries, k)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return hits / truth.size
