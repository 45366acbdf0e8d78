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


def test_a_subset_of_the_index_answers_like_an_index_built_on_it() -> None:
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(4000, 16)).astype(np.float32)
    subset = np.sort(rng.choice(4000, 3000, replace=False))
    left_out = np.setdiff1d(np.arange(4000), subset)
    _, truth = LatentIndex(exact_max=10**6).fit(codes[subset], np.arange(3000)).kneighbors(codes[:300] + 0.05, 10)
    for exact_max, least in ((10_000, 1.0), (1000, 0.95)):  # flat, then HNSW
        whole = LatentIndex(exact_max=exact_max).fit(codes, np.arange(4000) + 50)
        view = whole.among(subset + 50)
        assert len(view) == 3000 and whole.approximate == (exact_max < 4000)
        _, found = view.kneighbors(codes[:300] + 0.05, 10)
        hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
        assert hits / truth.size >= least, (exact_max, hits / truth.size)
        # An image left out is never its own nearest neighbour: it is not searched at all.
        distance, nearest = view.kneighbors(codes[left_out[:50]], 1)
        assert (distance[:, 0] > 0).all() and (nearest >= 0).all()
    with pytest.raises(ValueError, match="in the index"):
        whole.among(np.array([1, 2]))
    # Selection's searches keep 16 candidates per neighbour asked for; exact search has no such knob.
    tuned = LatentIndex(exact_max=1000, ef_per_neighbour=16).fit(codes, np.arange(4000))
    assert tuned.search_parameters(30).efSearch == 480 and tuned.search_parameters(2).efSearch == 128
    assert LatentIndex().fit(codes, np.arange(4000)).search_parameters(30) is None


def test_rounds_search_their_candidates_in_one_pool_graph_kept_between_rounds() -> None:
    from models.latent_index import IndexSubset
    from worker.pipeline import WARM, candidate_index

    codes = np.random.default_rng(2).normal(size=(3000, 8)).astype(np.float32)
    pool_ids = np.arange(3000) + 100
    WARM.hits.clear()
    first = candidate_index(codes, "representation-1", pool_ids, np.arange(100, 3000), exact_max=1000)
    assert isinstance(first, IndexSubset) and "pool-index" not in WARM.hits
    # The next round (a hundred more labels) searches the same graph; positions are in its candidates.
    second = candidate_index(codes, "representation-1", pool_ids, np.arange(200, 3000), exact_max=1000)
    assert "pool-index" in WARM.hits and second.base is first.base
    _, nearest = second.kneighbors(codes[[500]], 1)
    assert nearest[0, 0] == 300
    # Another space, or a pool under exact_max, or one mostly labelled: the round builds its own.
    WARM.hits.clear()
    assert (
        candidate_index(codes, "representation-2", pool_ids, np.arange(200, 3000), exact_max=1000).base
        is not first.base
    )
    assert "pool-index" not in WARM.hits
    assert isinstance(
        candidate_index(codes, "representation-2", pool_ids, np.arange(3000), exact_max=5000), LatentIndex
    )
    assert isinstance(
        candidate_index(codes, "representation-2", pool_ids, np.arange(2000, 3000), exact_max=1000), LatentIndex
    )
    assert candidate_index(codes, None, pool_ids, np.arange(200, 3000), exact_max=1000).approximate
    assert candidate_index(codes, "representation-2", pool_ids, np.arange(0), exact_max=1000) is None


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


@pytest.mark.parametrize("name", ["snn", "snn-plain"])
def test_latent_strategies_pick_the_same_from_the_pools_index_as_from_their_own(
    name: str, trained: dict, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    own = get_strategy(name).select(_latent_context(trained, digits, seed=2), 25)
    ctx = _latent_context(trained, digits, seed=2)
    pool_index = LatentIndex().fit(trained["latents"], np.arange(300))  # exact: the same neighbours
    ctx.extras["candidate_index"] = pool_index.among(np.arange(40, 300))
    kept = get_strategy(name).select(ctx, 25)
    assert kept.image_ids == own.image_ids


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
