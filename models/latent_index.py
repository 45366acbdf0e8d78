"""Nearest-neighbour search over latent codes, behind a small estimator-style interface.

Exact (flat L2) search for pools up to `exact_max` codes; above that an HNSW graph, whose recall
against exact search can be measured with `recall_at_k`. The backend is faiss, but callers only
see `fit / add / kneighbors / among / to_bytes / from_bytes`.
"""

from __future__ import annotations

import io

import faiss
import numpy as np


class LatentIndex:
    def __init__(
        self,
        *,
        exact_max: int = 50_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
        ef_per_neighbour: int = 0,
    ):
        """`ef_per_neighbour`: an HNSW search for k neighbours keeps at least that many candidates per
        neighbour (efSearch = max(ef_search, ef_per_neighbour * k))."""
        self.exact_max = exact_max
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_per_neighbour = ef_per_neighbour
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
        params = self.search_parameters(k)
        d2, pos = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        ids = np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)
        return np.sqrt(np.maximum(d2, 0)), ids

    def search_parameters(self, k: int) -> faiss.SearchParameters | None:
        """A search's efSearch (HNSW); None for exact search, which needs none."""
        if not isinstance(self.index, faiss.IndexHNSW):
            return None
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(self.index.hnsw.efSearch), self.ef_per_neighbour * k, k)
        return params

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def among(self, ids: np.ndarray) -> IndexSubset:
        """This index searched only among `ids` (some of its ids), without building another one."""
        return IndexSubset(self, ids)

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


class IndexSubset:
    """A LatentIndex restricted to some of its ids, answering with positions in that list of ids.

    A round searches its candidates: the pool minus its labelled images. Built per round, an HNSW
    graph over a million candidates took 131 s on two cores (benchmarks/results/candidate_index.md)
    for a pool that lost a hundred images since the last round. One graph over the whole pool, searched
    with the labelled images filtered out, answers the same queries. HNSW still walks through
    filtered nodes, so recall holds while most of the pool is searched (`tests/models/test_latent.py`).
    """

    def __init__(self, index: LatentIndex, ids: np.ndarray) -> None:
        if index.index is None:
            raise RuntimeError("index is not fitted")
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(index.ids, kind="stable")
        slot = np.searchsorted(index.ids, ids, sorter=order)
        found = slot < len(order)
        internal = order[np.minimum(slot, len(order) - 1)]
        if not (found.all() and np.array_equal(index.ids[internal], ids)):
            raise ValueError("ids must all be in the index")
        self.base = index
        self.positions = np.full(index.index.ntotal, -1, dtype=np.int64)
        self.positions[internal] = np.arange(len(ids))
        # faiss keeps a pointer into this bitmap: it lives as long as the selector.
        self._bitmap = np.packbits(self.positions >= 0, bitorder="little")
        self._selector = faiss.IDSelectorBitmap(len(self.positions), faiss.swig_ptr(self._bitmap))
        self._count = len(ids)

    def kneighbors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """([Q, k] Euclidean distances, [Q, k] positions in the subset's ids), nearest first; -1 where
        fewer than k were found."""
        index = self.base.index
        assert index is not None
        k = max(1, min(k, self._count))
        params = self.base.search_parameters(k) or faiss.SearchParameters()
        params.sel = self._selector
        d2, internal = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        found = np.where(internal >= 0, self.positions[np.clip(internal, 0, None)], -1)
        return np.sqrt(np.maximum(d2, 0)), found

    def __len__(self) -> int:
        return self._count


def recall_at_k(approximate: LatentIndex, codes: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of the exact k nearest neighbours that the approximate index also returns."""
    exact = LatentIndex(exact_max=len(codes) + 1).fit(codes, ids)
    _, truth = exact.kneighbors(queries, k)
    _, found = approximate.kneighbors(queries, k)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return hits / truth.size
