"""fruits10k-rgb: a held-out RGB set whose classes are told apart by colour as well as by shape, made on
2026-12-07 because every other RGB set here paints its objects in random colours, so nothing measured
whether the learner can read colour where colour carries the class (natural images, product photos).

32x32 RGB. Each image is one fruit at a random size, place and tilt, on a smooth colour ground
(app.glyphs' blotchy ground) with clutter strokes and blobs behind and over it, a highlight, and
pixel noise. Three round fruits differ only in hue (apple red, orange, lime green), two clusters of
berries only in hue (blueberries blue, grapes green), and fruits of one hue only in shape (lemon and
banana yellow; apple and cherries red; lime, grapes and pear green; plum purple). Each fruit's hue
varies by +-12 degrees, its saturation and brightness widely; the ground and the clutter take any
colour. Drawn at 4x and downsampled. Pinned before any run on it.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter

from app.glyphs import _blotchy_ground
from app.objects import place
from app.textures import clutter, digest, draw_set, shrink

__all__ = ["CLASSES", "FROZEN", "FROZEN_HEAD_500", "SIZE", "digest", "generate"]

CLASSES = ["apple", "orange", "lime", "lemon", "banana", "plum", "blueberries", "grapes", "cherries", "pear"]
# Each class's hue in degrees; shared hues make shape necessary, shared shapes make colour necessary.
HUES = {
    "apple": 0,
    "orange": 30,
    "lime": 105,
    "lemon": 55,
    "banana": 55,
    "plum": 285,
    "blueberries": 225,
    "grapes": 105,
    "cherries": 0,
    "pear": 80,
}
SIZE = 32
SCALE = 4
# SHA-256 of images + labels of `generate(10_000, seed=0)` and of its first 500 images, pinned on
# 2026-12-07 before any benchmark run on the set.
FROZEN = "48659434229e2af52dd241a4945ea76dd86aef678422f6a9f4ec9640f32a049b"
FROZEN_HEAD_500 = "c176b3647f79b531ed460f564e464a0994df997334e1dacf2194bce9af2463fa"

Points = list[tuple[float, float]]


def _fruit_colour(name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    hue = ((HUES[name] + rng.uniform(-12, 12)) % 360) / 360
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> Points:
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in np.linspace(0, 2 * math.pi, n, endpoint=False)]


def _lens(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> Points:
    """An ellipse whose ends come to points (a lemon)."""
    return [
        (cx + rx * math.cos(a), cy + ry * math.sin(a) * abs(math.sin(a)) ** 0.35)
        for a in np.linspace(0, 2 * math.pi, n, endpoint=False)
    ]


def _crescent(n: int = 24) -> Points:
    outer = [(math.cos(a), 0.2 + 0.75 * math.sin(a)) for a in np.linspace(math.pi * 0.05, math.pi * 0.95, n)]
    inner = [(0.8 * math.cos(a), 0.05 + 0.45 * math.sin(a)) for a in np.linspace(math.pi * 0.95, math.pi * 0.05, n)]
    return [(x, y - 0.35) for x, y in outer + inner]


def _shapes(name: str, rng: np.random.Generator) -> tuple[list[Points], list[Points]]:
    """The fruit in a unit frame (x right, y down, about [-1, 1]): filled polygons, then stalks (brown lines)."""
    if name in ("apple", "orange", "lime"):
        return [_ellipse(0.0, 0.05, 0.8, 0.75)], [[(0.0, -0.65), (0.08, -0.95)]] if name == "apple" else []
    if name in ("lemon", "plum"):
        body = _lens(0.0, 0.0, 0.95, 0.62) if name == "lemon" else _ellipse(0.0, 0.0, 0.7, 0.85)
        return [body], []
    if name == "banana":
        return [_crescent()], [[(-0.95, -0.2), (-1.05, -0.35)]]
    if name in ("blueberries", "grapes"):
        count, radius = (int(rng.integers(3, 6)), 0.32) if name == "blueberries" else (int(rng.integers(6, 10)), 0.24)
        berries = []
        for _ in range(count):
            bx, by = rng.uniform(-0.6, 0.6), rng.uniform(-0.55, 0.7)
            if name == "grapes":
                bx *= 1 - (by + 0.55) / 1.6  # a bunch narrows downwards
            berries.append(_ellipse(bx, by, radius, radius, 16))
        return berries, [[(0.0, -0.6), (0.05, -0.95)]] if name == "grapes" else []
    if name == "cherries":
        return [_ellipse(-0.45, 0.45, 0.38, 0.38, 20), _ellipse(0.42, 0.5, 0.38, 0.38, 20)], [
            [(-0.45, 0.1), (0.05, -0.85)],
            [(0.42, 0.15), (0.05, -0.85)],
        ]
    # pear: a small circle on a large one
    return [_ellipse(0.0, 0.35, 0.7, 0.6), _ellipse(0.0, -0.3, 0.42, 0.45)], [[(0.0, -0.7), (0.1, -1.0)]]


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    name = CLASSES[label]
    canvas = SIZE * SCALE
    image = _blotchy_ground(rng, canvas)
    draw = ImageDraw.Draw(image)
    clutter(draw, rng, canvas, int(rng.integers(0, 4)))
    radius = canvas * rng.uniform(0.26, 0.4)
    cx, cy = canvas / 2 + rng.uniform(-canvas / 9, canvas / 9, 2)
    angle = rng.uniform(-0.6, 0.6)
    bodies, stalks = _shapes(name, rng)
    stalk = tuple(int(c) for c in rng.uniform([70, 40, 10], [130, 90, 40]))
    for line in stalks:
        draw.line(place(line, cx, cy, radius, angle, 1, 1), fill=stalk, width=max(2, int(radius * 0.1)))
    for body in bodies:
        # Berries in a cluster differ a little from each other, as real ones do.
        draw.polygon(place(body, cx, cy, radius, angle, 1, 1), fill=_fruit_colour(name, rng))
    # A soft highlight, so the fruit is not one flat colour.
    hx, hy = cx - radius * 0.3, cy - radius * 0.3
    glint = PILImage.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(glint).ellipse([hx - radius * 0.2, hy - radius * 0.2, hx + radius * 0.2, hy + radius * 0.2], fill=90)
    image.paste((255, 255, 255), (0, 0), glint.filter(ImageFilter.GaussianBlur(radius * 0.15)))
    clutter(draw, rng, canvas, int(rng.integers(1, 3)))
    return shrink(image, rng)


def generate(n: int = 10_000, seed: int = 0, *, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 and labels [n], balanced, shuffled (app.textures.draw_set)."""
    return draw_set(_draw, len(CLASSES), n, seed, 19, first)
