"""flags10k-rgb: a held-out RGB set of ten flag designs, told apart by their colours and by where the
colours sit. Made on 2026-12-07, after fruits10k-rgb had shown the learner reading too little colour
and before any change for it, to judge such a change on data it was not made on. Pinned before any run.

32x32 RGB. Each image is one flag at a random size, place and tilt, slightly sheared (it waves), on a
smooth colour ground (app.glyphs' blotchy ground) with clutter strokes and blobs behind and over it,
shading and pixel noise. Pairs share a layout and differ in colours (the three vertical tricolours,
the two horizontal ones, the two crosses), others share colours and differ in layout. Each colour's
hue varies by +-10 degrees and its brightness by a fifth; white and black vary in grey.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from app.glyphs import _blotchy_ground
from app.textures import clutter, digest, draw_set, shrink

__all__ = ["CLASSES", "FROZEN", "FROZEN_HEAD_500", "SIZE", "digest", "generate"]

SIZE = 32
SCALE = 4
# A colour: (hue in degrees, saturation, value); saturation 0 is a grey of that value.
RED, GREEN, BLUE, YELLOW = (0, 0.9, 0.85), (130, 0.85, 0.6), (220, 0.85, 0.7), (52, 0.9, 0.95)
WHITE, BLACK, ORANGE = (0, 0.0, 0.95), (0, 0.0, 0.12), (28, 0.95, 0.95)
# name: (layout, colours); layouts: "v3" vertical bands, "h3" / "h2" horizontal bands, "cross" a
# Nordic cross over a field, "disc" a disc on a field, "diag" two triangles.
FLAGS: dict[str, tuple[str, tuple[tuple[float, float, float], ...]]] = {
    "green-white-red": ("v3", (GREEN, WHITE, RED)),
    "blue-white-red": ("v3", (BLUE, WHITE, RED)),
    "black-yellow-red": ("v3", (BLACK, YELLOW, RED)),
    "red-white-red bands": ("h3", (RED, WHITE, RED)),
    "blue-yellow bands": ("h2", (BLUE, YELLOW)),
    "white cross on red": ("cross", (RED, WHITE)),
    "yellow cross on blue": ("cross", (BLUE, YELLOW)),
    "red disc on white": ("disc", (WHITE, RED)),
    "orange-green diagonal": ("diag", (ORANGE, GREEN)),
    "white-red bands": ("h2", (WHITE, RED)),
}
CLASSES = list(FLAGS)
# SHA-256 of images + labels of `generate(10_000, seed=0)` and of its first 500 images, pinned on
# 2026-12-07 before any benchmark run on the set.
FROZEN = "3aa0d5823dabdd95f8084405341544216a7ba21679d70cd77346a059b5bd700a"
FROZEN_HEAD_500 = "bd258a9c54751f830e73558207c59f45666df2d76f9394ae756bebebe0731667"


def _paint(colour: tuple[float, float, float], rng: np.random.Generator) -> tuple[int, int, int]:
    hue, saturation, value = colour
    hue = ((hue + rng.uniform(-10, 10)) % 360) / 360
    value = float(np.clip(value * rng.uniform(0.8, 1.1), 0, 1)) if saturation else value + rng.uniform(-0.1, 0.05)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, float(np.clip(value, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def _flag(name: str, rng: np.random.Generator, width: int, height: int) -> PILImage.Image:
    layout, colours = FLAGS[name]
    paints = [_paint(c, rng) for c in colours]
    flag = PILImage.new("RGB", (width, height), paints[0])
    draw = ImageDraw.Draw(flag)
    if layout == "v3":
        for i, paint in enumerate(paints):
            draw.rectangle([i * width / 3, 0, (i + 1) * width / 3, height], fill=paint)
    elif layout in ("h3", "h2"):
        for i, paint in enumerate(paints):
            draw.rectangle([0, i * height / len(paints), width, (i + 1) * height / len(paints)], fill=paint)
    elif layout == "cross":
        arm = height * 0.2
        draw.rectangle([width * 0.3, 0, width * 0.3 + arm, height], fill=paints[1])
        draw.rectangle([0, height / 2 - arm / 2, width, height / 2 + arm / 2], fill=paints[1])
    elif layout == "disc":
        r = height * 0.3
        draw.ellipse([width / 2 - r, height / 2 - r, width / 2 + r, height / 2 + r], fill=paints[1])
    else:  # diag
        draw.polygon([(width, 0), (width, height), (0, height)], fill=paints[1])
    return flag


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    canvas = SIZE * SCALE
    image = _blotchy_ground(rng, canvas)
    clutter(ImageDraw.Draw(image), rng, canvas, int(rng.integers(0, 3)))
    width = int(canvas * rng.uniform(0.55, 0.8))
    height = int(width * rng.uniform(0.55, 0.72))
    flag = _flag(CLASSES[label], rng, width, height)
    # Waving: a vertical shear along the flag's width and a shade band across it.
    wave = rng.uniform(-0.25, 0.25)
    flag = flag.transform(flag.size, PILImage.AFFINE, (1, 0, 0, wave, 1, -wave * width / 2), PILImage.BILINEAR)
    shade = np.asarray(flag, np.float32)
    phase, period = rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.4) * width
    band = 1 - 0.18 * (0.5 + 0.5 * np.sin(np.arange(width) / period * 2 * math.pi + phase))
    flag = PILImage.fromarray(np.clip(shade * band[None, :, None], 0, 255).astype(np.uint8), "RGB")
    mask = PILImage.new("L", flag.size, 255).transform(
        flag.size, PILImage.AFFINE, (1, 0, 0, wave, 1, -wave * width / 2), PILImage.BILINEAR
    )
    angle = rng.uniform(-20, 20)
    flag, mask = flag.rotate(angle, PILImage.BILINEAR, expand=True), mask.rotate(angle, PILImage.BILINEAR, expand=True)
    x = int(canvas / 2 - flag.width / 2 + rng.uniform(-canvas / 10, canvas / 10))
    y = int(canvas / 2 - flag.height / 2 + rng.uniform(-canvas / 10, canvas / 10))
    image.paste(flag, (x, y), mask)
    clutter(ImageDraw.Draw(image), rng, canvas, int(rng.integers(1, 3)))
    return shrink(image, rng)


def generate(n: int = 10_000, seed: int = 0, *, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 and labels [n], balanced, shuffled (app.textures.draw_set)."""
    return draw_set(_draw, len(CLASSES), n, seed, 23, first)
