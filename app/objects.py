"""objects10k-rgb: a held-out RGB set of ten simple objects built from parts, made on 2026-12-07 to
judge one change to `auto` (stop 46, benchmarks/results/NOTES.md) on data generated after the change
was written down, and pinned before any run on it.

32x32 RGB. Each image is one object (house, tree, car, boat, mushroom, cup, key, fish, dumbbell,
arrow), each a fixed arrangement of polygons and strokes, at a random size, place, tilt, aspect and
mirror, painted in one colour or one colour per part, on a smooth colour ground (app.glyphs'
blotchy ground) with clutter strokes and blobs behind and over it, and pixel noise. Colour never
tells the class; the arrangement of the parts does. Drawn at 4x and downsampled.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

from app.glyphs import _blotchy_ground
from app.shapes import _colour
from app.textures import clutter, digest, draw_set, shrink

__all__ = ["CLASSES", "FROZEN", "FROZEN_HEAD_500", "SIZE", "digest", "generate"]

CLASSES = ["house", "tree", "car", "boat", "mushroom", "cup", "key", "fish", "dumbbell", "arrow"]
SIZE = 32
SCALE = 4
# SHA-256 of images + labels of `generate(10_000, seed=0)` and of its first 500 images. Pinned on
# 2026-12-07, before any benchmark run on the set.
FROZEN = "00dacb618efc837427c6180a17aab147db139e1a348eb511444fc04d61367edb"
FROZEN_HEAD_500 = "8f6cfad0863fa857c53226f479029e525613be324dced1228bae4f4465778a5d"

Points = list[tuple[float, float]]
# A part: ("fill", polygon) or ("stroke", polyline, width as a share of the object's radius).
Part = tuple[str, Points, float]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Points:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float = 0.0, end: float = 360.0, n: int = 24) -> Points:
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(start, end, n)
    ]


def _parts(name: str) -> list[Part]:
    """The object in a unit frame (x right, y down, about [-1, 1])."""
    if name == "house":
        return [("fill", _rect(-0.7, -0.1, 0.7, 0.9), 0), ("fill", [(-0.9, -0.1), (0.0, -0.9), (0.9, -0.1)], 0)]
    if name == "tree":
        return [("fill", _rect(-0.12, 0.2, 0.12, 0.95), 0), ("fill", _arc(0.0, -0.25, 0.65, 0.6), 0)]
    if name == "car":
        return [
            ("fill", _rect(-0.95, -0.05, 0.95, 0.45), 0),
            ("fill", [(-0.5, -0.05), (-0.3, -0.5), (0.35, -0.5), (0.55, -0.05)], 0),
            ("fill", _arc(-0.55, 0.5, 0.22, 0.22), 0),
            ("fill", _arc(0.55, 0.5, 0.22, 0.22), 0),
        ]
    if name == "boat":
        return [
            ("fill", [(-0.95, 0.35), (0.95, 0.35), (0.6, 0.8), (-0.6, 0.8)], 0),
            ("stroke", [(0.0, 0.35), (0.0, -0.95)], 0.08),
            ("fill", [(0.08, -0.9), (0.08, 0.25), (0.75, 0.25)], 0),
        ]
    if name == "mushroom":
        return [("fill", _rect(-0.2, -0.05, 0.2, 0.9), 0), ("fill", _arc(0.0, 0.0, 0.85, 0.75, 180, 360), 0)]
    if name == "cup":
        return [
            ("fill", [(-0.6, -0.7), (0.4, -0.7), (0.3, 0.8), (-0.5, 0.8)], 0),
            ("stroke", _arc(0.45, 0.0, 0.35, 0.35, -90, 90), 0.14),
        ]
    if name == "key":
        return [
            ("stroke", _arc(-0.6, 0.0, 0.3, 0.3), 0.14),
            ("fill", _rect(-0.3, -0.08, 0.95, 0.08), 0),
            ("fill", _rect(0.55, 0.08, 0.67, 0.35), 0),
            ("fill", _rect(0.8, 0.08, 0.92, 0.3), 0),
        ]
    if name == "fish":
        return [
            ("fill", _arc(-0.15, 0.0, 0.65, 0.38), 0),
            ("fill", [(0.4, 0.0), (0.95, -0.45), (0.95, 0.45)], 0),
        ]
    if name == "dumbbell":
        return [
            ("fill", _rect(-0.6, -0.08, 0.6, 0.08), 0),
            ("fill", _rect(-0.9, -0.5, -0.55, 0.5), 0),
            ("fill", _rect(0.55, -0.5, 0.9, 0.5), 0),
        ]
    # arrow: a shaft and a head
    return [("fill", _rect(-0.95, -0.12, 0.3, 0.12), 0), ("fill", [(0.25, -0.5), (0.95, 0.0), (0.25, 0.5)], 0)]


def place(points: Points, cx: float, cy: float, radius: float, angle: float, sx: float, sy: float) -> Points:
    cos, sin = math.cos(angle), math.sin(angle)
    placed = []
    for x, y in points:
        x, y = x * sx, y * sy
        placed.append((cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)))
    return placed


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    canvas = SIZE * SCALE
    image = _blotchy_ground(rng, canvas)
    draw = ImageDraw.Draw(image)
    clutter(draw, rng, canvas, int(rng.integers(0, 4)))
    radius = canvas * rng.uniform(0.26, 0.42)
    cx, cy = canvas / 2 + rng.uniform(-canvas / 9, canvas / 9, 2)
    angle = rng.uniform(-0.5, 0.5)
    sx, sy = rng.uniform(0.85, 1.15, 2)
    sx *= -1 if rng.random() < 0.5 else 1
    one_colour = rng.random() < 0.5
    colour = _colour(rng, value=(0.3, 1.0))
    for kind, points, width in _parts(CLASSES[label]):
        fill = colour if one_colour else _colour(rng, value=(0.3, 1.0))
        placed = place(points, cx, cy, radius, angle, sx, sy)
        if kind == "fill":
            draw.polygon(placed, fill=fill)
        else:
            draw.line(placed, fill=fill, width=max(2, int(width * radius)), joint="curve")
    clutter(draw, rng, canvas, int(rng.integers(1, 3)))
    return shrink(image, rng)


def generate(n: int = 10_000, seed: int = 0, *, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 and labels [n], balanced, shuffled (app.textures.draw_set)."""
    return draw_set(_draw, len(CLASSES), n, seed, 17, first)
