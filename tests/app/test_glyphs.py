"""The held-out sets are frozen: the same seed always draws the same images."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from PIL import features

from app import flags, fruits, glyphs, objects, textures


@pytest.mark.parametrize("rgb", [False, True])
def test_glyphs_are_balanced_seeded_and_pinned(rgb: bool) -> None:
    name = "glyphs10k-rgb" if rgb else "glyphs10k"
    images, labels = glyphs.generate(10_000, seed=0, rgb=rgb, first=500)
    again, labels_again = glyphs.generate(10_000, seed=0, rgb=rgb, first=50)
    assert images.shape == ((500, 32, 32, 3) if rgb else (500, 28, 28)) and images.dtype == np.uint8
    assert np.array_equal(images[:50], again) and np.array_equal(labels[:50], labels_again)
    whole, whole_labels = glyphs.generate(200, seed=3, rgb=rgb)
    assert np.bincount(whole_labels, minlength=10).tolist() == [20] * 10
    # Every image has ink: no letter was drawn off the canvas or thinned away.
    contrast = whole.reshape(len(whole), -1, whole.shape[-1] if rgb else 1).std(1).min(1)
    assert contrast.min() > 8
    if features.version("freetype2") != glyphs.FROZEN_FREETYPE:
        pytest.skip(f"pinned with FreeType {glyphs.FROZEN_FREETYPE}; glyph rasters differ between versions")
    assert glyphs.digest(images, labels) == glyphs.FROZEN_HEAD_500[name]


def test_symbols_are_balanced_seeded_drawn_and_pinned() -> None:
    images, labels = glyphs.generate_symbols(10_000, seed=0, first=500)
    again, _ = glyphs.generate_symbols(10_000, seed=0, first=50)
    assert images.shape == (500, 32, 32, 3) and np.array_equal(images[:50], again)
    _, whole_labels = glyphs.generate_symbols(200, seed=3)
    assert np.bincount(whole_labels, minlength=10).tolist() == [20] * 10
    # Every face draws every symbol: none falls back to the font's missing-glyph box.
    for face in glyphs.SYMBOL_FONTS:
        font = glyphs._font(face, 64)
        box = font.getmask(chr(0xE000))
        for symbol in glyphs.SYMBOLS:
            mask = font.getmask(symbol)
            assert mask.size != box.size or bytes(mask) != bytes(box), (face, symbol)
    if features.version("freetype2") != glyphs.FROZEN_FREETYPE:
        pytest.skip(f"pinned with FreeType {glyphs.FROZEN_FREETYPE}; glyph rasters differ between versions")
    assert glyphs.digest(images, labels) == glyphs.FROZEN_HEAD_500["symbols10k-rgb"]


@pytest.mark.parametrize(
    "module",
    [textures, objects, fruits, flags],
    ids=["textures10k-rgb", "objects10k-rgb", "fruits10k-rgb", "flags10k-rgb"],
)
def test_held_out_rgb_sets_are_balanced_seeded_and_pinned(module: ModuleType) -> None:
    images, labels = module.generate(10_000, seed=0, first=500)
    again, _ = module.generate(10_000, seed=0, first=50)
    assert images.shape == (500, 32, 32, 3) and images.dtype == np.uint8 and np.array_equal(images[:50], again)
    _, whole_labels = module.generate(200, seed=3)
    assert np.bincount(whole_labels, minlength=10).tolist() == [20] * 10
    assert module.digest(images, labels) == module.FROZEN_HEAD_500
