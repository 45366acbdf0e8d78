"""textures10k-rgb: a held-out RGB set of ten woven and printed patterns, made on 2026-12-07 to check
one change (the patch block's colour axis, benchmarks/patch_colour.py) on data generated after every
other set had been run with it, and pinned before any run on it.

32x32 RGB. Each image is one pattern (stripes, checker, dots, rings, zigzag, crosshatch, bricks,
waves, scales, plaid) in two random colours (plaid adds a third) at a random scale and angle,
filling a soft-edged random region of a smooth colour ground (app.glyphs' blotchy ground), with
clutter strokes and blobs over it and pixel noise. Colour never tells the class; the pattern's local
structure does. Drawn at 4x and downsampled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter

from app.glyphs import _blotchy_ground
from app.shapes import _colour

CLASSES = ["stripes", "checker", "dots", "rings", "zigzag", "crosshatch", "bricks", "waves", "scales", "plaid"]
SIZE = 32
SCALE = 4
# SHA-256 of images + labels of `generate(10_000, seed=0)` and of its first 500 images (no typeface
# is drawn, so Pillow's drawing and resampling alone make the pixels). Pinned on 2026-12-07.
FROZEN = "3a9c94be2c0517d9e21b83e35e8e41430b07e6356e041d0f0b566b23a2937848"
FROZEN_HEAD_500 = "b3e9260c61dc256e3d038485adc96f0379fad2395ffe076a3b89d6cbb2f7bfe7"


def _pattern(name: str, rng: np.random.Generator, canvas: int, ink: tuple, paper: tuple) -> PILImage.Image:
    """The pattern on a square twice the canvas, turned by a random angle and cropped to the canvas."""
    big = canvas * 2
    image = PILImage.new("RGB", (big, big), paper)
    draw = ImageDraw.Draw(image)
    period = int(canvas * rng.uniform(0.14, 0.26))
    line = max(2, int(period * rng.uniform(0.25, 0.45)))
    if name == "stripes":
        for x in range(0, big, period):
            draw.rectangle([x, 0, x + period // 2, big], fill=ink)
    elif name == "checker":
        for x in range(0, big, period):
            for y in range(0, big, period):
                if (x // period + y // period) % 2 == 0:
                    draw.rectangle([x, y, x + period - 1, y + period - 1], fill=ink)
    elif name == "dots":
        r = period * rng.uniform(0.22, 0.34)
        for x in range(0, big, period):
            for y in range(0, big, period):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    elif name == "rings":
        cx, cy = big / 2 + rng.uniform(-canvas / 3, canvas / 3, 2)
        for r in range(period, big, period):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=line)
    elif name == "zigzag":
        for y in range(0, big, period):
            points = [(x, y + (period * 0.45 if (x // period) % 2 else 0)) for x in range(0, big + period, period)]
            draw.line(points, fill=ink, width=line)
    elif name == "crosshatch":
        thin = max(2, line // 2)
        for x in range(0, big, period):
            draw.line([(x, 0), (x, big)], fill=ink, width=thin)
            draw.line([(0, x), (big, x)], fill=ink, width=thin)
    elif name == "bricks":
        draw.rectangle([0, 0, big, big], fill=ink)
        height = period
        width = int(period * 2)
        mortar = max(2, line // 2)
        for row, y in enumerate(range(0, big, height)):
            offset = (width // 2) * (row % 2)
            for x in range(-offset, big, width):
                draw.rectangle([x + mortar, y + mortar, x + width - mortar, y + height - mortar], fill=paper)
    elif name == "waves":
        amplitude = period * rng.uniform(0.3, 0.6)
        xs = np.arange(0, big + 4, 4)
        for y in range(0, big, period):
            points = [(float(x), y + amplitude * math.sin(2 * math.pi * x / (period * 2.5))) for x in xs]
            draw.line(points, fill=ink, width=line)
    elif name == "scales":
        r = period * 0.75
        for row, y in enumerate(range(0, big + period, int(period * 0.6))):
            offset = (period // 2) * (row % 2)
            for x in range(-offset, big + period, period):
                draw.arc([x - r, y - r, x + r, y + r], 0, 180, fill=ink, width=max(2, line // 2))
    else:  # plaid: wide bands one way, thin lines the other, in a third colour
        third = _colour(rng)
        for x in range(0, big, period * 2):
            draw.rectangle([x, 0, x + period - 1, big], fill=ink)
        for y in range(0, big, period):
            draw.line([(0, y), (big, y)], fill=third, width=max(2, line // 2))
    image = image.rotate(float(rng.uniform(0, 180)), resample=PILImage.BILINEAR)
    off = (big - canvas) // 2
    return image.crop((off, off, off + canvas, off + canvas))


def _region(rng: np.random.Generator, canvas: int) -> PILImage.Image:
    """A soft-edged L mask: an ellipse covering a third to three quarters of the canvas."""
    mask = PILImage.new("L", (canvas, canvas), 0)
    cx, cy = canvas / 2 + rng.uniform(-canvas / 8, canvas / 8, 2)
    rx, ry = canvas * rng.uniform(0.3, 0.48, 2)
    ImageDraw.Draw(mask).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(canvas / 40))


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    canvas = SIZE * SCALE
    image = _blotchy_ground(rng, canvas)
    ink, paper = _colour(rng, value=(0.3, 1.0)), _colour(rng, value=(0.3, 1.0))
    image.paste(_pattern(CLASSES[label], rng, canvas, ink, paper), (0, 0), _region(rng, canvas))
    clutter(ImageDraw.Draw(image), rng, canvas, int(rng.integers(1, 5)))
    return shrink(image, rng)


def shrink(image: PILImage.Image, rng: np.random.Generator) -> np.ndarray:
    """The 4x drawing blurred a little, downsampled to SIZE and given pixel noise: [SIZE, SIZE, 3] uint8."""
    small = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9))).resize((SIZE, SIZE), PILImage.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(1, 8), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int, count: int) -> None:
    """count strokes and blobs in random colours."""
    for _ in range(count):
        x0, y0 = rng.uniform(0, canvas, 2)
        if rng.random() < 0.6:
            x1, y1 = rng.uniform(0, canvas, 2)
            draw.line([(x0, y0), (x1, y1)], fill=_colour(rng), width=int(rng.integers(2, 7)))
        else:
            r = rng.uniform(4, 12)
            draw.ellipse([x0 - r, y0 - r * rng.uniform(0.3, 1), x0 + r, y0 + r], fill=_colour(rng))


def draw_set(
    draw: Callable[[int, np.random.Generator], np.ndarray],
    n_classes: int,
    n: int,
    seed: int,
    salt: int,
    first: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """n images and labels [n], balanced, shuffled; with `first`, only the first that many of the same
    set: each image has its own generator ([seed, index, salt]), so a prefix costs only its images."""
    rng = np.random.default_rng([seed, salt])
    labels = rng.permutation(np.arange(n) % n_classes)[: n if first is None else first]
    images = [draw(int(label), np.random.default_rng([seed, i, salt])) for i, label in enumerate(labels)]
    return np.stack(images), labels.astype(np.int64)


def generate(n: int = 10_000, seed: int = 0, *, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 and labels [n], balanced, shuffled (see draw_set)."""
    return draw_set(_draw, len(CLASSES), n, seed, 13, first)


def digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
