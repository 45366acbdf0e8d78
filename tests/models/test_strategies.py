"""Strategy invariants on plain arrays (no database): valid unique ids, batch bounds, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.strategies.base import IN_PLACE_MIN_ROWS, PoolRows, SelectionContext
from models.strategies.coreset import distance_to_cover, k_center_greedy, row_blocks
from models.strategies.params import (
    PARAMS,
    StrategyParamsError,
    check_params,
    check_round_params,
    check_simulated_params,
    defaults_for,
)
from models.strategies.registry import SPECS, get_strategy, strategy_names

ARRAY_STRATEGIES = [name for name, spec in SPECS.items() if "generative" not in spec.needs]


def make_context(n_candidates: int, n_labelled: int, seed: int, n_classes: int = 4, dim: int = 6) -> SelectionContext:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, n_candidates + n_labelled + 1))
    logits = rng.normal(size=(n_candidates, n_classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return SelectionContext(
        candidate_ids=ids[:n_candidates],
        labelled_ids=ids[n_candidates:],
        labels=rng.integers(0, n_classes, n_labelled),
        n_classes=n_classes,
        seed=seed,
        probabilities=probabilities,
        candidate_features=rng.normal(size=(n_candidates, dim)),
        labelled_features=rng.normal(size=(n_labelled, dim)),
    )


@pytest.mark.parametrize("name", ARRAY_STRATEGIES)
@settings(max_examples=25, deadline=None)
@given(
    n_candidates=st.integers(0, 60), n_labelled=st.integers(0, 20), batch=st.integers(1, 80), seed=st.integers(0, 99)
)
def test_selection_is_valid_and_bounded(name: str, n_candidates: int, n_labelled: int, batch: int, seed: int) -> None:
    ctx = make_context(n_candidates, n_labelled, seed)
    selection = get_strategy(name).select(ctx, batch)
    assert len(selection.image_ids) == min(batch, n_candidates)
    assert len(set(selection.image_ids)) == len(selection.image_ids)
    assert set(selection.image_ids) <= set(ctx.candidate_ids.tolist())
    assert not set(selection.image_ids) & set(ctx.labelled_ids.tolist())
    assert len(selection.scores) == len(selection.reasons) == len(selection.image_ids)


@pytest.mark.parametrize("name", ARRAY_STRATEGIES)
def test_same_seed_same_selection(name: str) -> None:
    first = get_strategy(name).select(make_context(50, 10, seed=3), 12)
    second = get_strategy(name).select(make_context(50, 10, seed=3), 12)
    assert first.image_ids == second.image_ids


def test_random_differs_by_seed() -> None:
    a = get_strategy("random").select(make_context(200, 0, seed=1), 20).image_ids
    ctx = make_context(200, 0, seed=1)
    ctx.seed = 2
    assert get_strategy("random").select(ctx, 20).image_ids != a


def test_entropy_prefers_uncertain_items() -> None:
    ctx = make_context(3, 0, seed=0, n_classes=2)
    ctx.probabilities = np.array([[0.99, 0.01], [0.5, 0.5], [0.8, 0.2]])
    assert get_strategy("entropy").select(ctx, 3).image_ids == [int(i) for i in ctx.candidate_ids[[1, 2, 0]]]
    assert get_strategy("margin").select(ctx, 3).image_ids == [int(i) for i in ctx.candidate_ids[[1, 2, 0]]]


def test_nan_scores_rank_last() -> None:
    ctx = make_context(3, 0, seed=0, n_classes=2)
    ctx.probabilities = np.array([[np.nan, np.nan], [0.6, 0.4], [0.9, 0.1]])
    assert get_strategy("entropy").select(ctx, 3).image_ids[-1] == int(ctx.candidate_ids[0])


def test_k_center_covers_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    points = np.concatenate([c + rng.normal(scale=0.1, size=(25, 2)) for c in centres])
    picked, _ = k_center_greedy(points, np.zeros((0, 2)), 4)
    assert sorted({i // 25 for i in picked}) == [0, 1, 2, 3]
    # With one cluster already covered, the first pick goes elsewhere.
    picked, _ = k_center_greedy(points, centres[:1], 3)
    assert 0 not in {i // 25 for i in picked}


def test_k_center_over_more_candidates_than_one_block_matches_the_whole_computation() -> None:
    # 40,000 candidates are three blocks of rows and 1,500 centres two blocks of centres.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40_000, 6)).astype(np.float32) * rng.uniform(0.5, 3, (40_000, 1)).astype(np.float32)
    centres = rng.normal(size=(1_500, 6)).astype(np.float32)
    assert len(row_blocks(len(x))) == 3
    exact = np.full(len(x), np.inf)
    for start in range(0, len(centres), 100):
        diff = x[:, None, :].astype(np.float64) - centres[None, start : start + 100, :]
        exact = np.minimum(exact, np.sqrt((diff**2).sum(2)).min(1))
    np.testing.assert_allclose(distance_to_cover(x, centres, row_blocks(len(x))), exact, rtol=1e-3, atol=1e-3)
    picked, gaps = k_center_greedy(x, centres, 5)
    reference: list[int] = []
    dist = exact.copy()
    for _ in range(5):
        reference.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.sqrt(((x.astype(np.float64) - x[reference[-1]]) ** 2).sum(1)))
    assert picked == reference
    assert gaps[0] == pytest.approx(exact[reference[0]], rel=1e-3)


def in_place_pool(seed: int, labelled: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pool above IN_PLACE_MIN_ROWS: features, labelled positions, candidate positions."""
    rng = np.random.default_rng(seed)
    space = (rng.normal(size=(30_000, 6)) * rng.uniform(0.5, 3, (30_000, 1))).astype(np.float32)
    taken = np.sort(rng.choice(len(space), labelled, replace=False))
    return space, taken, np.setdiff1d(np.arange(len(space)), taken)


def test_many_candidates_are_read_from_the_pool_in_place_and_few_are_copied() -> None:
    space, taken, candidates = in_place_pool(0, 500)
    rows = PoolRows.of(space, candidates)
    assert isinstance(rows, PoolRows) and rows.space is space and rows.shape == (len(candidates), 6)
    np.testing.assert_array_equal(np.asarray(rows), space[candidates])
    np.testing.assert_array_equal(rows[[0, 5, -1]], space[candidates[[0, 5, -1]]])
    np.testing.assert_allclose(rows.mean(0), space[candidates].mean(0), rtol=1e-5, atol=1e-6)
    # Few candidates, a small share of the pool, or positions out of order: a copy, as before.
    assert isinstance(PoolRows.of(space, candidates[:IN_PLACE_MIN_ROWS]), np.ndarray)
    assert isinstance(PoolRows.of(space, taken), np.ndarray)
    assert isinstance(PoolRows.of(space, candidates[::-1]), np.ndarray)


@pytest.mark.parametrize("covered", [0, 500])
def test_k_center_over_the_pool_in_place_picks_what_it_picks_from_a_copy(covered: int) -> None:
    space, taken, candidates = in_place_pool(1, max(covered, 1))
    rows = PoolRows.of(space, candidates)
    assert isinstance(rows, PoolRows)
    picked, gaps = k_center_greedy(rows, space[taken[:covered]], 12)
    copied, copied_gaps = k_center_greedy(space[candidates], space[taken[:covered]], 12)
    assert picked == copied
    np.testing.assert_allclose(gaps, copied_gaps, rtol=1e-5)


def test_typiclust_over_the_pool_in_place_clusters_without_copying_every_row() -> None:
    space, taken, candidates = in_place_pool(2, 20)
    rng = np.random.default_rng(2)

    def context(features: np.ndarray | PoolRows) -> SelectionContext:
        return SelectionContext(
            candidate_ids=candidates + 1,
            labelled_ids=taken + 1,
            labels=rng.integers(0, 4, len(taken)),
            n_classes=4,
            seed=5,
            candidate_features=features,
            labelled_features=space[taken],
        )

    in_place = context(PoolRows.of(space, candidates))
    # 20 labels + a batch of 10: 30 clusters, so k-means trains on a seeded sample of 7,680 rows.
    first = get_strategy("typiclust").select(in_place, 10)
    assert first.image_ids == get_strategy("typiclust").select(in_place, 10).image_ids
    assert len(set(first.image_ids)) == 10 and set(first.image_ids) <= set((candidates + 1).tolist())
    assert len({r["cluster"] for r in first.reasons}) == 10
    # Up to 256 rows per cluster k-means trains on every row, so in place and copied agree.
    wide = get_strategy("typiclust").select(in_place, 200)
    assert wide.image_ids == get_strategy("typiclust").select(context(space[candidates]), 200).image_ids


def test_typiclust_samples_large_clusters_and_still_picks_their_dense_core() -> None:
    rng = np.random.default_rng(0)
    # One cluster of 6,000: a dense core of 600 points inside a wide halo.
    points = np.concatenate([rng.normal(scale=0.2, size=(600, 2)), rng.normal(scale=5.0, size=(5400, 2))])
    ctx = SelectionContext(
        candidate_ids=np.arange(len(points)),
        labelled_ids=np.zeros(0, np.int64),
        labels=np.zeros(0, np.int64),
        n_classes=2,
        seed=3,
        candidate_features=points.astype(np.float32),
        labelled_features=np.zeros((0, 2), np.float32),
    )
    strategy = get_strategy("typiclust", max_members=500)
    # The most typical of a 500-member sample is still a core point, and the same seed gives it again.
    for seed in range(5):
        ctx.seed = seed
        (picked,) = strategy.select(ctx, 1).image_ids
        assert picked < 600, picked
        assert strategy.select(ctx, 1).image_ids == [picked]


def test_unknown_strategy_and_parameters() -> None:
    with pytest.raises(KeyError):
        get_strategy("psychic")
    with pytest.raises(ValueError, match="unknown parameter 'bogus'"):
        get_strategy("random", bogus=1)
    assert strategy_names() == sorted(SPECS)


def test_every_strategy_declares_its_parameters_and_builds_with_their_defaults() -> None:
    assert set(PARAMS) == set(SPECS)
    for name in SPECS:
        assert get_strategy(name).params == defaults_for(name)
        assert check_params(name, {}) == defaults_for(name)


@pytest.mark.parametrize(
    ("strategy", "params", "named"),
    [
        ("snn", {"alpha": -1}, "alpha"),
        ("snn", {"alpha": float("nan")}, "alpha"),
        ("si", {"alpha": 1e300}, "alpha"),
        ("snn", {"n_sources": "many"}, "n_sources"),
        ("snn", {"explore_share": 1.5}, "explore_share"),
        ("snn", {"neighbours": True}, "neighbours"),
        ("snn-plain", {"n_steps": 0}, "n_steps"),
        ("typiclust", {"knn": 2.5}, "knn"),
        ("coldstart", {"max_members": 1}, "max_members"),
        ("auto", {"then": "entropy"}, "then"),
        ("auto", {"min_skill": 0.5, "full_skill": 0.4}, "full_skill"),
        ("hybrid", {"parts": {"hybrid": 1}}, "parts"),
        ("hybrid", {"parts": {"snn": 0, "coreset": 0}}, "above 0"),
        ("hybrid", {"parts": {"snn": -1, "coreset": 1}}, "'snn'"),
        ("hybrid", {"explorer": "psychic"}, "explorer"),
        ("margin", {"alpha": 1}, "it takes none"),
    ],
)
def test_a_parameter_out_of_range_is_refused_by_name_before_any_selection(
    strategy: str, params: dict, named: str
) -> None:
    with pytest.raises(StrategyParamsError, match=named):
        check_params(strategy, params)
    # The worker builds the strategy with the same check, so the API and the worker agree.
    with pytest.raises(StrategyParamsError, match=named):
        get_strategy(strategy, **params)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(StrategyParamsError) as refused:
        check_params("snn", {"bogus": 1, "alpha": -1, "n_sources": None})
    assert "'bogus'" in str(refused.value) and "alpha" in str(refused.value)
    assert "n_sources:" not in str(refused.value)  # null is an accepted n_sources
    assert check_params("snn", {"n_sources": None, "alpha": 2})["alpha"] == 2


def test_a_round_may_carry_its_seed_beside_the_strategy_parameters() -> None:
    check_round_params("snn", {"seed": 7, "alpha": 2})
    check_round_params("random", {"seed": 0})
    with pytest.raises(StrategyParamsError, match="seed"):
        check_round_params("random", {"seed": "seven"})
    with pytest.raises(StrategyParamsError, match=r"alpha.*seed"):
        check_round_params("snn", {"seed": -1, "alpha": -1})


def test_simulated_params_are_keyed_by_the_strategies_run() -> None:
    check_simulated_params(["random", "snn@wide"], {"snn@wide": {"neighbours": 60}})
    with pytest.raises(StrategyParamsError, match="snn@wide: neighbours"):
        check_simulated_params(["snn@wide"], {"snn@wide": {"neighbours": 0}})
    with pytest.raises(StrategyParamsError, match="not a strategy of the run"):
        check_simulated_params(["random"], {"snn": {"alpha": 2}})
