"""The VAE, the latent index and the latent-space strategies, on real digits (no database)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.latent_index import LatentIndex, recall_at_k
from models.strategies.base import SelectionContext
from models.strategies.latent import latent_ascent
from models.strategies.registry import get_strategy
from models.training import fit_classifier, predict_proba
from models.vae_training import encode_means, fit_vae
from tests.factories import mnist


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = mnist()
    x = (data.images[:300].astype(np.float32) / 255.0)[:, None]
    return x, data.labels[:300]


@pytest.fixture(scope="module")
def trained(digits: tuple[np.ndarray, np.ndarray]) -> dict:
    x, y = digits
    vae, history = fit_vae(x[:200], latent_dim=8, epochs=15, seed=0)
    model = fit_classifier(x[:40], y[:40], 10, seed=0, min_steps=150)
    return {"vae": vae, "history": history, "model": model, "latents": encode_means(vae, x)}


def test_vae_loss_falls_on_200_images(trained: dict) -> None:
    history = trained["history"]
    assert len(history) == 15
    assert history[-1] < 0.8 * history[0]
    assert trained["latents"].shape == (300, 8)


def test_exemplar_prior_trains(digits: tuple[np.ndarray, np.ndarray]) -> None:
    _vae, history = fit_vae(digits[0][:200], latent_dim=8, epochs=4, prior="exemplar", seed=0)
    assert all(np.isfinite(history)) and history[-1] < history[0]


def test_ascent_raises_the_task_loss(trained: dict, digits: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = digits
    codes = trained["latents"][:40]
    moved, before, after = latent_ascent(trained["vae"], trained["model"], codes, y[:40], alpha=0.5, n_steps=5)
    assert moved.shape == codes.shape
    assert np.all(np.linalg.norm(moved - codes, axis=1) <= 0.5 * 5 + 1e-4)
    assert after.mean() > before.mean()
    assert (after > before).mean() > 0.8


def test_approximate_index_recall_against_exact() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(5000, 16)).astype(np.float32)
    ids = np.arange(5000) + 7
    approximate = LatentIndex(exact_max=1000).fit(codes, ids)
    assert approximate.approximate
    assert recall_at_k(approximate, codes, ids, codes[:300] + 0.05, k=10) >= 0.95
    exact = LatentIndex().fit(codes[:100], ids[:100])
    assert not exact.approximate
    _, found = LatentIndex.from_bytes(exact.to_bytes()).kneighbors(codes[:3], 1)
    assert found[:, 0].tolist() == [7, 8, 9]


def _latent_context(trained: dict, digits: tuple[np.ndarray, np.ndarray], seed: int) -> SelectionContext:
    x, y = digits
    latents = trained["latents"]
    labelled, candidates = np.arange(40), np.arange(40, 300)
    return SelectionContext(
        candidate_ids=candidates + 1000,
        labelled_ids=labelled + 1000,
        labels=y[labelled],
        n_classes=10,
        seed=seed,
        probabilities=predict_proba(trained["model"], x[candidates]),
        candidate_features=latents[candidates],
        labelled_features=latents[labelled],
        extras={"vae": trained["vae"], "task_model": trained["model"]},
    )


@pytest.mark.parametrize("name", ["snn", "snn-plain", "hybrid", "coreset", "typiclust"])
@pytest.mark.parametrize("batch", [1, 25, 400])
def test_latent_strategies_pick_only_unlabelled_real_images(
    name: str, batch: int, trained: dict, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    ctx = _latent_context(trained, digits, seed=1)
    selection = get_strategy(name).select(ctx, batch)
    assert len(selection.image_ids) == min(batch, len(ctx.candidate_ids))
    assert len(set(selection.image_ids)) == len(selection.image_ids)
    assert set(selection.image_ids) <= set(ctx.candidate_ids.tolist())
    assert not selection.synthetic
    again = get_strategy(name).select(_latent_context(trained, digits, seed=1), batch)
    assert again.image_ids == selection.image_ids


def test_snn_reasons_name_source_and_distance(trained: dict, digits: tuple[np.ndarray, np.ndarray]) -> None:
    ctx = _latent_context(trained, digits, seed=0)
    for name in ("snn", "snn-plain"):
        selection = get_strategy(name).select(ctx, 10)
        with_source = [r for r in selection.reasons if "source_image_id" in r]
        assert with_source, name
        assert all(int(r["source_image_id"]) in set(ctx.labelled_ids.tolist()) for r in with_source)
        assert all(r["latent_distance"] >= 0 for r in with_source)


def test_si_generates_images_linked_to_sources(trained: dict, digits: tuple[np.ndarray, np.ndarray]) -> None:
    ctx = _latent_context(trained, digits, seed=0)
    selection = get_strategy("si").select(ctx, 6)
    assert selection.image_ids == [] and len(selection.synthetic) == 6
    for item in selection.synthetic:
        assert item.pixels.shape == (1, 28, 28)
        assert item.pixels.min() >= 0.0 and item.pixels.max() <= 1.0
        assert item.source_image_id in set(ctx.labelled_ids.tolist())
    scores = [item.score for item in selection.synthetic]
    assert scores == sorted(scores, reverse=True)


def test_latent_strategies_explain_missing_inputs(trained: dict, digits: tuple[np.ndarray, np.ndarray]) -> None:
    ctx = _latent_context(trained, digits, seed=0)
    ctx.extras = {}
    with pytest.raises(ValueError, match="vae"):
        get_strategy("snn").select(ctx, 5)
    torch.manual_seed(0)


def test_snn_explores_while_labels_are_few(trained: dict, digits: tuple[np.ndarray, np.ndarray]) -> None:
    ctx = _latent_context(trained, digits, seed=0)  # 40 labels, 10 classes: under 10 per class
    parts = [r.get("part") for r in get_strategy("snn").select(ctx, 10).reasons]
    assert parts.count("explore") == 5
    later = get_strategy("snn", explore_until_per_class=2).select(ctx, 10)
    assert all(r.get("part") != "explore" for r in later.reasons)
    assert len(set(later.image_ids)) == 10
