"""shapes10k: a procedural RGB benchmark set (no photo set ships offline).

10 classes of coloured shapes and textures, 32x32 RGB, on cluttered backgrounds: a colour gradient,
random clutter strokes and blobs, and pixel noise. Position, size, rotation and every colour vary, so
colour never tells the class. Drawn at 4x and downsampled for anti-aliasing.

Frozen: `generate(10_000, seed=0)` is the benchmark set; its SHA-256 is pinned in
benchmarks/results and checked by a test, so the set cannot drift while strategies are tuned.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter

from models.cores import usable_cores

CLASSES = [
    "circle",
    "square",
    "triangle",
    "plus",
    "star",
    "ring",
    "diamond",
    "crescent",
    "stripes",
    "checker",
]
SIZE = 32
SCALE = 4
# From this many images generate() draws in one process per core.
PARALLEL_FROM = 2_000
FROZEN_SHA256 = "193b7368805e9d9676affd55f23dbb16e245919cb6e4a35cd030012edb199e5f"


def _colour(rng: np.random.Generator, *, value: tuple[float, float] = (0.35, 1.0)) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(*value))
    return int(r * 255), int(g * 255), int(b * 255)


def _polygon(cx: float, cy: float, radius: float, points: list[tuple[float, float]], angle: float) -> list[tuple]:
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points]


def _star_points(n: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * n):
        r = 1.0 if i % 2 == 0 else inner
        a = math.pi * i / n - math.pi / 2
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def _texture(kind: str, size: int, rng: np.random.Generator, fg: tuple, bg: tuple) -> PILImage.Image:
    """A square patch of stripes or a checkerboard, rotated, in two colours."""
    big = size * 2
    patch = PILImage.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(patch)
    period = max(4, int(size * rng.uniform(0.18, 0.32)))
    for i in range(0, big, period):
        if kind == "stripes":
            draw.rectangle([i, 0, i + period // 2, big], fill=fg)
        else:
            for j in range(0, big, period):
                if (i // period + j // period) % 2 == 0:
                    draw.rectangle([i, j, i + period - 1, j + period - 1], fill=fg)
    patch = patch.rotate(float(rng.uniform(0, 180)), resample=PILImage.BILINEAR)
    off = (big - size) // 2
    return patch.crop((off, off, off + size, off + size))


def _background(rng: np.random.Generator, canvas: int) -> PILImage.Image:
    c1, c2 = np.array(_colour(rng)), np.array(_colour(rng))
    t = np.linspace(0, 1, canvas)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, canvas)[:, None, None]
    grad = (c1 * (1 - t) + c2 * t) * np.ones((canvas, canvas, 1))
    image = PILImage.fromarray(grad.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        colour = _colour(rng)
        x0, y0 = rng.uniform(0, canvas, 2)
        if rng.random() < 0.6:
            x1, y1 = rng.uniform(0, canvas, 2)
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(2, 7)))
        else:
            r = rng.uniform(4, 16)
            draw.ellipse([x0 - r, y0 - r * rng.uniform(0.3, 1), x0 + r, y0 + r], fill=colour)
    return image


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    canvas = SIZE * SCALE
    image = _background(rng, canvas)
    draw = ImageDraw.Draw(image)
    fg = _colour(rng, value=(0.5, 1.0))
    radius = rng.uniform(0.22, 0.4) * canvas
    margin = radius + 2
    cx, cy = rng.uniform(margin, canvas - margin, 2)
    angle = rng.uniform(0, 2 * math.pi)
    name = CLASSES[label]
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    if name == "circle":
        draw.ellipse(box, fill=fg)
    elif name == "square":
        draw.polygon(
            _polygon(cx, cy, radius, [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)], angle), fill=fg
        )
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, radius, [(0, -1), (0.87, 0.5), (-0.87, 0.5)], angle), fill=fg)
    elif name == "plus":
        w = 0.3
        arm = [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
        draw.polygon(_polygon(cx, cy, radius, arm, angle), fill=fg)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, radius, _star_points(), angle), fill=fg)
    elif name == "ring":
        draw.ellipse(box, outline=fg, width=int(radius * rng.uniform(0.25, 0.4)))
    elif name == "diamond":
        draw.polygon(_polygon(cx, cy, radius, [(0, -1), (0.55, 0), (0, 1), (-0.55, 0)], angle), fill=fg)
    elif name == "crescent":
        draw.ellipse(box, fill=fg)
        shift = radius * 0.55
        ox, oy = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
        # The bite takes the background's colour under it, so the crescent stays a crescent.
        under = image.getpixel((int(min(max(ox, 0), canvas - 1)), int(min(max(oy, 0), canvas - 1))))
        bite = under if under != fg else _colour(rng)
        r2 = radius * 0.85
        draw.ellipse([ox - r2, oy - r2, ox + r2, oy + r2], fill=bite)
    else:
        side = int(radius * 1.6)
        patch = _texture(name, side, rng, fg, _colour(rng))
        image.paste(patch, (int(cx - side / 2), int(cy - side / 2)))
    small = image.filter(ImageFilter.GaussianBlur(0.6)).resize((SIZE, SIZE), PILImage.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(2, 10), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _draw_range(seed: int, labels: np.ndarray, start: int) -> np.ndarray:
    return np.stack([_draw(int(label), np.random.default_rng([seed, start + i])) for i, label in enumerate(labels)])


def _processes(n: int) -> int:
    # A daemonic process (a Celery pool child) may not start children; a small set is not worth them.
    if n < PARALLEL_FROM or multiprocessing.current_process().daemon:
        return 1
    return min(usable_cores(), 8)


def generate(n: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] uint8 and their labels [n] (balanced, shuffled), fully set by seed.
    Each image has its own generator ([seed, index]), so drawing in parallel gives the same bytes."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    processes = _processes(n)
    if processes == 1:
        return _draw_range(seed, labels, 0), labels.astype(np.int64)
    chunk = -(-n // processes)
    starts = list(range(0, n, chunk))
    # Spawned, not forked: the caller may hold torch's OpenMP threads, which a fork cannot carry.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = pool.map(_draw_range, [seed] * len(starts), [labels[s : s + chunk] for s in starts], starts)
        images = np.concatenate(list(parts))
    return images, labels.astype(np.int64)


def digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
