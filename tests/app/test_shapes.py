"""The procedural RGB benchmark set is frozen: the same seed always draws the same images."""

from __future__ import annotations

import numpy as np

from app import shapes
from app.datasets import load_dataset


def test_shapes_are_balanced_rgb_and_seeded() -> None:
    images, labels = shapes.generate(200, seed=3)
    again, labels_again = shapes.generate(200, seed=3)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    other, _ = shapes.generate(200, seed=4)
    assert not np.array_equal(images, other)
    # Colour never gives the class away: every class spans many hues.
    for c in range(10):
        mean_colour = images[labels == c].reshape(-1, 3).mean(0)
        assert np.ptp(mean_colour) < 60


def test_drawing_in_parallel_gives_the_images_of_one_process(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    serial, labels = shapes.generate(200, seed=3)  # under PARALLEL_FROM: drawn in this process
    # Three spawned processes with uneven shares (67, 67, 66 images) draw the same bytes.
    monkeypatch.setattr(shapes, "_processes", lambda n: 3)
    parallel, parallel_labels = shapes.generate(200, seed=3)
    assert np.array_equal(parallel, serial) and np.array_equal(parallel_labels, labels)


def test_the_benchmark_set_matches_its_pinned_digest() -> None:
    data = load_dataset("shapes10k")
    assert data.images.shape == (10_000, 32, 32, 3)
    assert shapes.digest(data.images, data.labels) == shapes.FROZEN_SHA256
