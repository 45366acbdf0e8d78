"""Decoding stored images into the fixed-size float arrays the models take."""

from __future__ import annotations

import fcntl
import io
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from app.storage import Storage
from models.pixels import PoolPixels

# Images decoded (as float32) before they are appended to the cache: bounds a cold round's memory.
DECODE_CHUNK = 16_384


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


@dataclass
class _KeyRows:
    """What this process has read of one pixel cache's keys file."""

    file: tuple[int, int]  # (device, inode): a cache removed and made again is read from the start
    rows: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    offset: int = 0


_KEY_ROWS: dict[Path, _KeyRows] = {}
_KEY_ROWS_LOCK = threading.Lock()


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
        """Every cached key's row. Callers must not change the dict."""
        return self._read_keys().rows

    def _read_keys(self) -> _KeyRows:
        """What this process knows of the keys file, brought up to date. The file is append-only, so
        this process keeps what it read and parses only the lines added since: reading a million keys
        back took 1.5 s on every round, now 0.4 s from the second
        (benchmarks/results/pixel_cache_load.md). `offset` ends at the last complete line."""
        with _KEY_ROWS_LOCK:
            try:
                stat = self.keys_path.stat()
            except FileNotFoundError:
                _KEY_ROWS.pop(self.keys_path, None)
                return _KeyRows(file=(0, 0))
            known = _KEY_ROWS.get(self.keys_path)
            if known is None or known.file != (stat.st_dev, stat.st_ino) or stat.st_size < known.offset:
                known = _KEY_ROWS[self.keys_path] = _KeyRows(file=(stat.st_dev, stat.st_ino))
            if stat.st_size > known.offset:
                with self.keys_path.open("rb") as fh:
                    fh.seek(known.offset)
                    tail = fh.read(stat.st_size - known.offset)
                complete = tail.rfind(b"\n") + 1  # a line still being written is read next time
                for key in tail[:complete].decode().splitlines():
                    known.rows[key] = known.lines
                    known.lines += 1
                known.offset += complete
            return known

    def load(
        self, storage: Storage, keys: Sequence[str], *, progress: Callable[[float], None] | None = None
    ) -> PoolPixels:
        """[N, C, size, size] images for the keys, in order, as uint8 rows of the memory-mapped cache
        that become float32 in [0, 1] only where indexed (models.pixels); `decoded_last` says how many
        had to be decoded from storage this time. New images are decoded and appended a chunk at a
        time, so a cold million-image pool never sits in memory as floats, a killed worker keeps the
        chunks it finished, and `progress` hears the fraction decoded."""
        rows = self._rows()
        positions = np.fromiter((rows.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        absent = np.flatnonzero(positions < 0)
        missing = list(dict.fromkeys(keys[i] for i in absent))
        self.decoded_last = len(missing)
        for start in range(0, len(missing), DECODE_CHUNK):
            chunk = missing[start : start + DECODE_CHUNK]
            fresh = (load_arrays(storage, chunk, self.size, self.channels) * 255.0).round().astype(np.uint8)
            rows = self.append(chunk, fresh)
            if progress is not None:
                progress(min(start + DECODE_CHUNK, len(missing)) / len(missing))
        if missing:
            rows = self._rows()
            positions[absent] = [rows[keys[i]] for i in absent]
        if not keys:
            return PoolPixels(np.zeros((0, self.channels, self.size, self.size), np.uint8), np.zeros(0, np.int64))
        table = np.memmap(self.data_path, dtype=np.uint8, mode="r").reshape(-1, self.channels, self.size, self.size)
        return PoolPixels(table, positions)

    def append(self, keys: list[str], fresh: np.ndarray) -> dict[str, int]:
        """Adds uint8 rows [N, C, size, size] under their storage keys (keys already cached are
        skipped) and returns every key's row. Rounds call it for what they decode; a bulk loader that
        already holds decoded pixels may call it so that no round decodes them again."""
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = self._read_keys()
            rows = known.rows
            todo = [i for i, key in enumerate(keys) if key not in rows]
            if todo:
                with self.data_path.open("ab") as data:
                    data.truncate(len(rows) * self.row_bytes)
                    data.write(fresh[todo].tobytes())
                    data.flush()
                    os.fsync(data.fileno())
                with self.keys_path.open("ab") as index:
                    # Under the lock a line without its newline was left by a killed writer: appending
                    # after it would merge it with our first key and leave that key's row unnamed.
                    index.truncate(known.offset)
                    index.write("".join(f"{keys[i]}\n" for i in todo).encode())
                rows = self._rows()
        return rows


def encode_png(pixels: np.ndarray) -> bytes:
    """[C, H, W] floats in [0, 1] -> PNG bytes (for synthetic images)."""
    arr = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    img = PILImage.fromarray(arr[0], "L") if arr.shape[0] == 1 else PILImage.fromarray(arr.transpose(1, 2, 0), "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
