"""The pool's pixels as stored bytes, turned into float32 a batch at a time.

A million 28x28 images are 784 MB as uint8 and 3.1 GB as float32; a round that converted the whole
pool at once held that copy (and its temporaries) for its whole life. `PoolPixels` keeps the uint8
rows (usually a memory map of the worker's pixel cache) and hands out float32 only for the rows a
caller indexes: every consumer already works in batches (`x[i:j]`) or on a subset (`x[positions]`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Rows converted per chunk where a whole (sub)pool must be materialised.
CHUNK = 65_536


class PoolPixels:
    """[N, C, S, S] float32 images in [0, 1], read from uint8 rows of `table` in the order `rows`.

    Indexing with an int, a slice or an index array returns a float32 ndarray of those images, the
    same values a float array of the pool would hold; `subset` returns another view without reading.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, table: np.ndarray, rows: np.ndarray) -> None:
        if table.dtype != np.uint8 or table.ndim != 4:
            raise ValueError(f"PoolPixels needs a [R, C, S, S] uint8 table, got {table.dtype} {table.shape}")
        self.table = table
        self.rows = np.asarray(rows, dtype=np.int64)

    @classmethod
    def from_array(cls, x: np.ndarray) -> PoolPixels:
        """Float images in [0, 1] stored as bytes (rounded as the pixel cache stores them)."""
        table = (np.clip(np.asarray(x, dtype=np.float32), 0, 1) * 255.0).round().astype(np.uint8)
        return cls(table, np.arange(len(table)))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.table.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        picked = self.rows[key]
        if np.ndim(picked) == 0:
            return self._convert(self.table[int(picked)][None])[0]
        return self._convert(self.table[picked])

    def subset(self, positions: Any) -> PoolPixels:
        return PoolPixels(self.table, self.rows[positions])

    def to_array(self) -> np.ndarray:
        """The whole view as one float32 array (for callers that need it all at once)."""
        out = np.empty(self.shape, dtype=np.float32)
        for start in range(0, len(self), CHUNK):
            out[start : start + CHUNK] = self[start : start + CHUNK]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self.to_array()
        return out if dtype is None else out.astype(dtype, copy=False)

    @staticmethod
    def _convert(raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float32)
        out /= 255.0
        return out


Pixels = np.ndarray | PoolPixels


def subset(x: Pixels, positions: Any) -> Pixels:
    """Rows of x without reading them when x is a PoolPixels (numpy arrays are indexed as usual)."""
    return x.subset(positions) if isinstance(x, PoolPixels) else x[positions]


def chunks(x: Pixels, size: int = CHUNK) -> Any:
    """(start, float32 rows) over x in order, a chunk at a time."""
    for start in range(0, len(x), size):
        yield start, np.asarray(x[start : start + size], dtype=np.float32)
