"""Decoding stored images into the fixed-size float arrays the models take."""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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


def encode_png(pixels: np.ndarray) -> bytes:
    """[C, H, W] floats in [0, 1] -> PNG bytes (for synthetic images)."""
    arr = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    img = PILImage.fromarray(arr[0], "L") if arr.shape[0] == 1 else PILImage.fromarray(arr.transpose(1, 2, 0), "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
