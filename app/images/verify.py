"""Decoding and hashing uploaded images, in this process or in a pool of processes.

Kept apart from the ingest (no database, no settings object) so that a pool process imports Pillow
and little else, and so that what crosses into it is plain bytes and two limits.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from models.cores import usable_cores

# Pillow format name -> file extension and content type served back.
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
}
# Below this many images a pool costs more (pickling, waking processes) than it saves.
PARALLEL_FROM = 128


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class VerifiedImage:
    format: str
    width: int
    height: int
    sha256: str


def verify_image(data: bytes, limits: Limits) -> VerifiedImage:
    """Decodes the whole image; raises ValueError with a user-facing reason if it is unusable."""
    if len(data) > limits.max_file_bytes:
        raise ValueError(f"file too large ({len(data)} bytes > {limits.max_file_bytes})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                if fmt not in ALLOWED_FORMATS:
                    raise ValueError(f"unsupported image format {fmt or 'unknown'}; allowed: PNG, JPEG, WEBP, BMP")
                width, height = img.size
                if width * height > limits.max_image_pixels:
                    raise ValueError(
                        f"image too large: {width}x{height} pixels exceeds the limit of {limits.max_image_pixels}"
                    )
                img.load()
    except UnidentifiedImageError as exc:
        raise ValueError("not an image (could not be decoded)") from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ValueError("image too large (decompression bomb)") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"corrupt image: {exc}") from exc
    return VerifiedImage(format=fmt, width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def _verdict(data: bytes, limits: Limits) -> VerifiedImage | str:
    try:
        return verify_image(data, limits)
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug on hostile bytes is that file's verdict, not a failed upload
        return f"could not be decoded ({type(exc).__name__})"


def _verdicts(datas: list[bytes], limits: Limits) -> list[VerifiedImage | str]:
    return [_verdict(data, limits) for data in datas]


class VerifyPool:
    """A lazily started pool of processes (spawned: the API process has threads, and fork would copy
    their locks). A pool that breaks (a process killed, say) is dropped and the work done here."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def verdicts(self, datas: list[bytes], limits: Limits) -> list[VerifiedImage | str]:
        if self.processes < 2 or len(datas) < PARALLEL_FROM:
            return _verdicts(datas, limits)
        executor = self._start()
        # One slice per process keeps pickling to a few large messages.
        step = -(-len(datas) // self.processes)
        slices = [datas[i : i + step] for i in range(0, len(datas), step)]
        try:
            futures = [executor.submit(_verdicts, part, limits) for part in slices]
            return [verdict for future in futures for verdict in future.result()]
        except BrokenProcessPool:
            with self._lock:
                self._executor = None
            return _verdicts(datas, limits)

    @property
    def started(self) -> bool:
        return self._executor is not None

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._executor


def default_processes() -> int:
    """A pool only where there are cores to spare: the request's own thread keeps one busy reading
    archives, storing and inserting, and on 2 cores a pool of 2 was slower than none (20,000 PNGs
    through REST: 3,465 against 3,612 images/s, benchmarks/results/ingest_speed.md)."""
    cores = usable_cores()
    return 1 if cores < 4 else min(cores - 1, 8)


_POOLS: dict[int, VerifyPool] = {}
_POOLS_LOCK = threading.Lock()


def verify_pool(processes: int) -> VerifyPool:
    """One pool per process and size, shared by every upload this process serves."""
    with _POOLS_LOCK:
        pool = _POOLS.get(processes)
        if pool is None:
            pool = _POOLS[processes] = VerifyPool(processes)
        return pool
