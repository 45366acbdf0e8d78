"""A round's pool in the ready representation: rows the representation or an earlier round stored are
read back, and only images none of them has are encoded, by one round, not by every round until the
next representation is ready."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import worker.pipeline
from app.projects.schemas import ProjectSettings
from app.storage import LocalStorage
from worker.artifacts import save_latents
from worker.pipeline import RoundInputs, WarmCache, pool_features, rows_of
from worker.representation import save_features

FEATURES_KEY = "projects/1/representations/7/features.npz"


def _rows(ids: np.ndarray) -> np.ndarray:
    """An image's features: a fixed function of its id, so any row can be checked wherever it came from."""
    return np.stack([np.sin(ids * k) for k in (1.0, 0.5, 0.25)], axis=1).astype(np.float32)


class CountingEncoder:
    """Encodes pool positions into the same rows the representation stored, and remembers which ids it was asked for."""

    def __init__(self, pool_ids: np.ndarray) -> None:
        self.pool_ids = pool_ids
        self.asked: list[int] = []

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        ids = self.pool_ids[positions]
        self.asked.extend(ids.tolist())
        return _rows(ids)


def _inputs(pool_ids: np.ndarray, previous: str | None = None) -> RoundInputs:
    return RoundInputs(
        round_id=1,
        project_id=1,
        strategy="random",
        params={},
        batch_size=10,
        seed=0,
        classes=["a", "b"],
        settings=ProjectSettings(),
        pool_ids=pool_ids.tolist(),
        pool_keys=[],
        pool_synthetic=[],
        labels={},
        pending_elsewhere=set(),
        validation_ids=[],
        validation_keys=[],
        validation_labels=[],
        representation_id=7,
        representation_artifacts={"features": FEATURES_KEY, "encoder": "unused"},
        previous_features_key=previous,
    )


def _round(storage: LocalStorage, pool_ids: np.ndarray, previous: str | None = None) -> tuple[object, list[int]]:
    encoder = CountingEncoder(pool_ids)
    pool, encoded = pool_features(_inputs(pool_ids, previous), pool_ids, storage, encoder)
    np.testing.assert_array_equal(pool.rows, _rows(pool_ids))
    assert encoded == len(encoder.asked)
    return pool, encoder.asked


def test_images_uploaded_after_the_representation_are_encoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    learned = np.arange(100, dtype=np.int64)
    save_features(storage, FEATURES_KEY, learned, _rows(learned))
    monkeypatch.setattr(worker.pipeline, "WARM", WarmCache())

    # The pool the representation learned: its own artifact, pointed at, nothing encoded.
    pool, asked = _round(storage, learned)
    assert asked == [] and pool.stored_key == FEATURES_KEY and pool.changed == 0.0

    # Five uploads and one image gone: only the five are encoded, and only by the first round.
    after_upload = np.concatenate([np.delete(learned, 3), np.arange(100, 105)])
    pool, asked = _round(storage, after_upload)
    assert asked == [100, 101, 102, 103, 104] and pool.stored_key is None
    assert pool.changed == pytest.approx(6 / 100)
    again, asked = _round(storage, after_upload)
    assert asked == [] and again is pool

    # The next upload in the same process: the two new images only.
    more = np.concatenate([after_upload, [105, 106]])
    _, asked = _round(storage, more)
    assert asked == [105, 106]

    # A new worker process, after a round stored its pool's rows: read back, nothing encoded, and an
    # unchanged pool points at that round's artifact instead of storing a copy.
    latents_key = "projects/1/rounds/3/latents.npz"
    save_latents(storage, latents_key, more, _rows(more))
    monkeypatch.setattr(worker.pipeline, "WARM", WarmCache())
    pool, asked = _round(storage, more, previous=latents_key)
    assert asked == [] and pool.stored_key == latents_key
    monkeypatch.setattr(worker.pipeline, "WARM", WarmCache())
    grown = np.concatenate([more, [107]])
    pool, asked = _round(storage, grown, previous=latents_key)
    assert asked == [107] and pool.stored_key is None


def test_rows_are_found_by_id_in_any_order() -> None:
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(0, 3000, 3))
    wanted = rng.integers(0, 3100, size=500)
    found, at = rows_of(ids, wanted)
    row_of = {int(image_id): row for row, image_id in enumerate(ids)}
    assert found.tolist() == [int(w) in row_of for w in wanted]
    assert at[found].tolist() == [row_of[int(w)] for w in wanted[found]]
    nothing, _ = rows_of(np.zeros(0, np.int64), wanted)
    assert not nothing.any()


def test_a_simulation_reads_the_projects_rows_and_encodes_only_images_it_has_not_seen(tmp_path: Path) -> None:
    import torch

    from models.representation import ConvEncoder, encode
    from models.simulate import split
    from tests.factories import mnist
    from worker.representation import save_encoder
    from worker.simulation import in_representation

    data = mnist()
    x = data.images[:50, None].astype(np.float32) / 255
    y = data.labels[:50].astype(np.int64)
    ids = np.arange(100, 150, dtype=np.int64)
    torch.manual_seed(0)
    encoder = ConvEncoder(1, (4, 8, 8)).eval()
    storage = LocalStorage(tmp_path)
    save_encoder(storage, "encoder.pt", encoder)
    # The representation holds rows for the first 40 images and for an image the simulation does not
    # use (an unlabelled one); the last 10 were uploaded after it was learned.
    stored_ids = np.concatenate([ids[:40], [7]])
    stored = np.concatenate([encode(encoder, x[:40]), np.full((1, 8), 99.0, np.float32)])
    save_features(storage, "features.npz", stored_ids, stored)

    given, encoded = in_representation({"encoder": "encoder.pt", "features": "features.npz"}, ids, x, y, storage)

    assert encoded == 10
    # Row for row the features of the pixels, split into pool and test as the pixels are.
    pool, _, test, _ = split(encode(encoder, x), y, 0.2)
    assert given.pool.shape == pool.shape and given.test.shape == test.shape
    np.testing.assert_allclose(given.pool, pool, atol=1e-5)
    np.testing.assert_allclose(given.test, test, atol=1e-5)
    assert given.blocks is None and not (given.pool == 99.0).any()
