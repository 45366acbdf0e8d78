"""Decoding stored images into the fixed-size float arrays the models take."""

from __future__ import annotations

import fcntl
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from app.storage import Storage


def decode(data: bytes, size: int, channels: int) -> np.ndarray:
    """Image bytes -> [C, size, size] float32 in [0, 1]."""
    with PILImage.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            img = img.resize((size, size), PILImage.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_arrays(storage: Storage, keys: Sequence[str], size: int, channels: int) -> np.ndarray:
    """[N, C, size, size] for the given storage keys, in order."""
    out = np.zeros((len(keys), channels, size, size), dtype=np.float32)
    if not keys:
        return out

    def load(i: int) -> None:
        out[i] = decode(storage.get(keys[i]), size, channels)

    # Storage reads dominate on S3; threads overlap them (PIL releases the GIL while decoding).
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(load, range(len(keys))))
    return out


def pixel_cache(data_dir: Path, project_id: int, size: int, channels: int) -> PixelCache:
    """The worker-local cache of one project's decoded images at its size."""
    return PixelCache(data_dir / "cache" / "pixels" / f"project-{project_id}", size, channels)


class PixelCache:
    """The decoded pool, kept on the worker's local disk as one memory-mapped uint8 array per image
    size: a stored image is decoded once, and a later round (or representation job) on the same pool
    reads rows instead of decoding files. Storage keys name immutable content, so a key's row never
    goes stale. Append-only: rows are added under an exclusive file lock, the data before the key,
    so a key on record always has its row (a torn append from a killed process is cut off first)."""

    def __init__(self, root: Path, size: int, channels: int) -> None:
        self.size, self.channels = size, channels
        self.row_bytes = channels * size * size
        root.mkdir(parents=True, exist_ok=True)
        stem = root / f"pixels-{size}x{size}x{channels}"
        self.data_path, self.keys_path, self.lock_path = (stem.with_suffix(s) for s in (".u8", ".keys", ".lock"))
        self.decoded_last = 0

    def _rows(self) -> dict[str, int]:
        if not self.keys_path.exists():
            return {}
        return {key: row for row, key in enumerate(self.keys_path.read_text().splitlines())}

    def load(self, storage: Storage, keys: Sequence[str]) -> np.ndarray:
        """[N, C, size, size] float32 in [0, 1] for the keys, in order; `decoded_last` says how many
        had to be decoded from storage this time."""
        rows = self._rows()
        missing = list(dict.fromkeys(k for k in keys if k not in rows))
        self.decoded_last = len(missing)
        if missing:
            fresh = (load_arrays(storage, missing, self.size, self.channels) * 255.0).round().astype(np.uint8)
            with self.lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                rows = self._rows()
                todo = [i for i, key in enumerate(missing) if key not in rows]
                if todo:
                    with self.data_path.open("ab") as data:
                        data.truncate(len(rows) * self.row_bytes)
                        data.write(fresh[todo].tobytes())
                        data.flush()
                        os.fsync(data.fileno())
                    with self.keys_path.open("a") as index:
                        index.write("".join(f"{missing[i]}\n" for i in todo))
                    rows.update({missing[i]: len(rows) + n for n, i in enumerate(todo)})
        out = np.empty((len(keys), self.channels, self.size, self.size), dtype=np.float32)
        if keys:
            table = np.memmap(self.data_path, dtype=np.uint8, mode="r").reshape(-1, self.channels, self.size, self.size)
            order = np.asarray([rows[k] for k in keys], dtype=np.int64)
            out[:] = table[order]
            out /= 255.0
            del table
        return out


def encode_png(pixels: np.ndarray) -> bytes:
    """[C, H, W] floats in [0, 1] -> PNG bytes (for synthetic images)."""
    arr = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    img = PILImage.fromarray(arr[0], "L") if arr.shape[0] == 1 else PILImage.fromarray(arr.transpose(1, 2, 0), "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
