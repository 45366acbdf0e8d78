"""Held-out benchmark sets, frozen before any run on them: letters and symbols drawn from typefaces.

Three sets, built to check the learner and `auto` on data none of their choices was made on:
  * `glyphs10k`: 28x28 grayscale, white strokes on a dark, lightly cluttered ground (an MNIST-like
    shape of problem with a different content: letters in 21 typefaces, either case);
  * `glyphs10k-rgb`: 32x32 RGB, the same letters in a random colour over a colour gradient with
    clutter strokes and blobs (the shapes10k recipe of ground, so colour never tells the class).
  * `symbols10k-rgb`: 32x32 RGB, ten pictograms (spade, club, heart, diamond, umbrella, aeroplane,
    anchor, yin-yang, scissors, snowflake) filled or outlined in a random colour over a smooth,
    blotchy colour ground (multi-scale colour noise and soft blobs, no strokes). Made on 2026-12-01
    after the first two sets had been run and before any change to the representation, as the
    check of whatever that change would be.
Letter classes are A..J; every image takes a random typeface, case, size, position, rotation, shear
and stroke weight, so a class is several shapes (a/A, g/G) as real classes often are.

Drawn at 4x and downsampled. The typefaces are the TrueType files matplotlib installs (DejaVu,
STIX, Computer Modern), so the pixels depend on matplotlib's fonts and Pillow's FreeType: the
digests are pinned with the FreeType version they were made with, and the test checks them there.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter, ImageFont

from app.shapes import _background, _colour

CLASSES = list("ABCDEFGHIJ")
SYMBOLS = list("♠♣♥♦☂✈⚓☯✂❄")
SYMBOL_NAMES = [
    "spade", "club", "heart", "diamond", "umbrella", "aeroplane", "anchor", "yinyang", "scissors", "snowflake",
]  # fmt: skip
# The faces that draw every symbol: the others have no such glyphs (they would draw a box).
SYMBOL_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf")
SCALE = 4
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
    "cmb10.ttf",
)
# SHA-256 of images + labels of `generate(10_000, seed=0, rgb=...)` (`generate_symbols(10_000, seed=0)`
# for the symbols), and of its first 500 images
# (each image depends only on the seed and its index, so the head is a quick check of the drawing),
# with the FreeType that drew them. Each pinned on 2026-12-01 before any learner or strategy ran on it.
FROZEN = {
    "glyphs10k": "69534704bb617e5fb04e015e227ec0f1ead478e8f3f6b468ee957df384d2e7f0",
    "glyphs10k-rgb": "3a40abbc100816ec891ea9d9f5a449e8807d9fa476040e432f058d92fda423f0",
    "symbols10k-rgb": "c5e694ada9dcd2b13dbd80b1fdbbc82e05617ad02bc3c46b7585740320752ce1",
}
FROZEN_HEAD_500 = {
    "glyphs10k": "b3dcd95c2dc6119d98f67b5d579bb330bc9e6b1c093df0c08ad406039f14d27e",
    "glyphs10k-rgb": "35737672fb5b7e6da235e01a85311168af1db1bad8859d1b6c7359e6b8fe7b1f",
    "symbols10k-rgb": "fff49487625d10d8a2e8def3fff47e21a7a1af5853f6228e80dcc34a32e5c784",
}
FROZEN_FREETYPE = "2.14.3"


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_dir() / name), size)


def _glyph_mask(
    letter: str, rng: np.random.Generator, canvas: int, *, faces: tuple[str, ...] = FONT_FILES, cases: bool = True
) -> PILImage.Image:
    """An L-mode mask (255 = ink) of one letter, placed, turned, sheared and weighted at random."""
    text = letter if not cases or rng.random() < 0.5 else letter.lower()
    face = faces[int(rng.integers(len(faces)))]
    size = int(canvas * rng.uniform(0.5, 0.75))
    font = _font(face, size)
    big = canvas * 2
    layer = PILImage.new("L", (big, big), 0)
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    # The ink box's centre goes to the canvas centre, then moves by up to an eighth of the canvas.
    shift = rng.uniform(-canvas / 8, canvas / 8, 2)
    x = big / 2 - (left + right) / 2 + shift[0]
    y = big / 2 - (top + bottom) / 2 + shift[1]
    draw.text((x, y), text, fill=255, font=font)
    # As drawn, or bolder by one or two pixels a side at 4x (thinning erased the light faces' strokes).
    for _ in range(int(rng.integers(0, 3))):
        layer = layer.filter(ImageFilter.MaxFilter(3))
    angle = math.radians(rng.uniform(-18, 18))
    shear = rng.uniform(-0.25, 0.25)
    zoom = rng.uniform(0.9, 1.1)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    cx = cy = big / 2
    # Inverse map of output pixel -> input pixel (PIL's AFFINE): rotation, zoom and an x-shear.
    a, b = cos, -sin + shear * cos
    d, e = sin, cos + shear * sin
    c = cx - a * cx - b * cy
    f = cy - d * cx - e * cy
    layer = layer.transform((big, big), PILImage.AFFINE, (a, b, c, d, e, f), resample=PILImage.BILINEAR)
    off = (big - canvas) // 2
    return layer.crop((off, off, off + canvas, off + canvas))


def _draw_gray(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = size * SCALE
    ground = PILImage.new("L", (canvas, canvas), int(rng.integers(0, 40)))
    draw = ImageDraw.Draw(ground)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0, x1, y1 = rng.uniform(0, canvas, 4)
        draw.line([(x0, y0), (x1, y1)], fill=int(rng.integers(40, 110)), width=int(rng.integers(2, 6)))
    ink = int(rng.integers(170, 256))
    mask = _glyph_mask(CLASSES[label], rng, canvas)
    ground.paste(ink, (0, 0), mask)
    small = ground.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))).resize((size, size), PILImage.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(1, 8), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _draw_rgb(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = size * SCALE
    image = _background(rng, canvas)
    mask = _glyph_mask(CLASSES[label], rng, canvas)
    image.paste(_colour(rng, value=(0.5, 1.0)), (0, 0), mask)
    small = image.filter(ImageFilter.GaussianBlur(0.6)).resize((size, size), PILImage.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(2, 10), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _blotchy_ground(rng: np.random.Generator, canvas: int) -> PILImage.Image:
    """Smooth colour noise at three scales, a colour cast and a few soft blobs: no edges to speak of."""
    ground = np.zeros((canvas, canvas, 3), np.float32)
    for cells, weight in ((2, 1.0), (4, 0.6), (8, 0.35)):
        grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
        layer = PILImage.fromarray(grid, "RGB").resize((canvas, canvas), PILImage.BICUBIC)
        ground += weight * np.asarray(layer, np.float32)
    ground = ground / 1.95 * rng.uniform(0.5, 1.0) + np.asarray(_colour(rng), np.float32) * rng.uniform(0, 0.4)
    image = PILImage.fromarray(np.clip(ground, 0, 255).astype(np.uint8), "RGB")
    blobs = PILImage.new("RGB", (canvas, canvas))
    mask = PILImage.new("L", (canvas, canvas), 0)
    draw_blobs, draw_mask = ImageDraw.Draw(blobs), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(0, canvas, 2)
        rx, ry = rng.uniform(canvas / 10, canvas / 3, 2)
        draw_blobs.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=_colour(rng))
        draw_mask.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=int(rng.integers(80, 200)))
    image.paste(blobs, (0, 0), mask.filter(ImageFilter.GaussianBlur(canvas / 16)))
    return image


def _draw_symbol(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = size * SCALE
    image = _blotchy_ground(rng, canvas)
    mask = _glyph_mask(SYMBOLS[label], rng, canvas, faces=SYMBOL_FONTS, cases=False)
    if rng.random() < 0.3:
        # Outlined: the ring of ink between the mask and its erosion.
        inner = mask.filter(ImageFilter.MinFilter(9))
        ring = np.asarray(mask, np.int16) - np.asarray(inner, np.int16)
        mask = PILImage.fromarray(np.clip(ring, 0, 255).astype(np.uint8))
    image.paste(_colour(rng, value=(0.4, 1.0)), (0, 0), mask)
    small = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0))).resize((size, size), PILImage.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(1, 8), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def generate_symbols(n: int = 10_000, seed: int = 0, *, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 of the ten symbols and labels [n], balanced, shuffled."""
    rng = np.random.default_rng([seed, 11])
    labels = rng.permutation(np.arange(n) % len(SYMBOLS))[: n if first is None else first]
    images = [_draw_symbol(int(label), np.random.default_rng([seed, i, 11]), 32) for i, label in enumerate(labels)]
    return np.stack(images), labels.astype(np.int64)


def generate(
    n: int = 10_000, seed: int = 0, *, rgb: bool = False, first: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n images ([n, 28, 28] uint8, or [n, 32, 32, 3] with rgb) and labels [n], balanced, shuffled;
    with `first`, only the first that many of the same set (each image depends on seed and index)."""
    rng = np.random.default_rng([seed, 7 if rgb else 5])
    labels = rng.permutation(np.arange(n) % len(CLASSES))[: n if first is None else first]
    draw, size = (_draw_rgb, 32) if rgb else (_draw_gray, 28)
    images = [draw(int(label), np.random.default_rng([seed, i, int(rgb)]), size) for i, label in enumerate(labels)]
    return np.stack(images), labels.astype(np.int64)


def digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
