"""The learner on a representation: SimCLR, the calibrated head, label propagation, snn in feature
space and auto's switch. Small inputs, CPU, seconds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.active import run_step
from models.head import balanced_log_loss, column_statistics, fit_head, fit_temperature
from models.learner import (
    CNN_CHALLENGE_PER_CLASS,
    FINE_TUNE_PER_CLASS,
    FeatureLearner,
    PoolGraph,
    _refit,
    _row_blocks,
    challenge_with_cnn,
    combine_heads,
    fine_tunable,
    fit_learner,
)
from models.representation import SimCLR, default_augmentation, nt_xent
from models.strategies.auto import nearest_labelled_accuracy
from models.strategies.base import SelectionContext
from models.strategies.latent import _HeadModel, _Identity, latent_ascent
from models.strategies.registry import get_strategy
from models.training import predict_logits, predict_proba


def _blobs(n_per_class: int, n_classes: int = 4, dim: int = 16, spread: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(0, spread, (len(y), dim))
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 20)])
def test_augmentations_keep_shape_and_range(channels: int, size: int) -> None:
    x = torch.rand(8, channels, size, size)
    out = default_augmentation()(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out, x)


def test_nt_xent_prefers_matching_pairs() -> None:
    z = torch.randn(32, 8)
    matched = nt_xent(z, z + 0.01 * torch.randn_like(z))
    shuffled = nt_xent(z, z[torch.randperm(32)])
    assert float(matched) < float(shuffled)


def test_simclr_fits_any_size_and_is_deterministic_on_cpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 3, 12, 12)).astype(np.float32)
    kwargs = {"widths": (8, 16, 16), "epochs": 2, "batch_size": 32, "seed": 3, "device": torch.device("cpu")}
    first = SimCLR(**kwargs).fit(x)
    features = first.transform(x)
    assert features.shape == (64, 16) and np.isfinite(features).all()
    assert first.history is not None and first.history.epochs == 2 and len(first.history.losses) == 2
    assert first.history.steps == 2 * first.history.steps_per_epoch == 4
    again = SimCLR(**kwargs).fit(x).transform(x)
    np.testing.assert_allclose(features, again, rtol=1e-5, atol=1e-5)


def test_simclr_in_bfloat16_autocast_learns_and_is_deterministic() -> None:
    # The GPU worker trains under bfloat16 autocast; the same loop runs under CPU autocast here, so
    # the mixed-precision path is exercised without a GPU (the loss stays float32, features too).
    x = np.random.default_rng(0).random((64, 1, 12, 12)).astype(np.float32)
    kwargs = {"widths": (8, 16, 16), "epochs": 3, "batch_size": 32, "seed": 1, "device": torch.device("cpu")}
    model = SimCLR(mixed_precision=True, **kwargs).fit(x)
    features = model.transform(x)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    assert model.history is not None and all(np.isfinite(model.history.losses))
    plain = SimCLR(mixed_precision=False, **kwargs).fit(x).transform(x)
    # bfloat16 keeps 8 bits of mantissa: a different encoder, not the float32 one.
    assert not np.allclose(features, plain)
    np.testing.assert_array_equal(features, SimCLR(mixed_precision=True, **kwargs).fit(x).transform(x))


@pytest.mark.parametrize("native", [True, False])
def test_a_cpu_trains_in_bfloat16_only_where_it_has_bfloat16_hardware(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left to choose, SimCLR follows the CPU's hardware: bfloat16 with AMX tiles or AVX512-BF16 (2.5x
    # and 1.7x faster there), float32 where bfloat16 would be emulated. Only the hardware probe is forced.
    from models import representation

    monkeypatch.setattr(representation, "native_cpu_bfloat16", lambda: native)
    x = np.random.default_rng(0).random((64, 3, 12, 12)).astype(np.float32)
    kwargs = {"widths": (8, 16, 16), "epochs": 2, "batch_size": 32, "seed": 2, "device": torch.device("cpu")}
    chosen = SimCLR(**kwargs).fit(x).transform(x)
    np.testing.assert_array_equal(chosen, SimCLR(mixed_precision=native, **kwargs).fit(x).transform(x))
    assert not np.allclose(chosen, SimCLR(mixed_precision=not native, **kwargs).fit(x).transform(x))


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "native"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_either_bfloat16_unit_counts_as_bfloat16_hardware(
    amx: bool, avx512_bf16: bool, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AMX tiles (Intel Xeons) and AVX512-BF16 dot products (AMD Zen 4) both run bfloat16 natively; the
    # CPU setting's steps are 3.2x and 1.7x faster there (benchmarks/results/precision.md).
    from models.representation import bfloat16_by_default, native_cpu_bfloat16, setting_for

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert native_cpu_bfloat16() is native
    assert bfloat16_by_default("cpu") is native and bfloat16_by_default("cuda")
    assert setting_for("cpu")["bfloat16"] is native


def test_an_encoder_trained_channels_last_encodes_the_same_features_after_a_reload() -> None:
    # On a CPU the encoder trains over channels-last tensors; a worker that loads it from its file
    # gets contiguous weights, and must still give the features the training process stored.
    from models.representation import build_encoder, encode, encoder_config

    x = np.random.default_rng(0).random((96, 3, 16, 16)).astype(np.float32)
    model = SimCLR(widths=(8, 16, 16), epochs=1, batch_size=32, seed=0, patches=True, device=torch.device("cpu"))
    model.fit(x)
    assert model.encoder is not None
    reloaded = build_encoder(encoder_config(model.encoder))
    reloaded.load_state_dict(model.encoder.state_dict())
    np.testing.assert_array_equal(encode(reloaded, x), model.transform(x))


def test_a_time_budget_stops_simclr_inside_an_epoch_longer_than_the_budget() -> None:
    # A pool whose one epoch outlasts the budget (a million images on a CPU) must still stop in
    # time: the plan is made after a few timed steps, not after the first epoch.
    x = np.random.default_rng(0).random((4096, 1, 16, 16)).astype(np.float32)
    model = SimCLR(widths=(8, 16, 16), epochs=5, batch_size=16, time_budget_s=0.01, seed=0, device=torch.device("cpu"))
    history = model.fit(x).history
    assert history is not None and history.steps_per_epoch == 256
    assert history.steps < history.steps_per_epoch and history.epochs == 1 and len(history.losses) == 1
    assert model.transform(x[:8]).shape == (8, 16)


def test_a_time_budget_holds_when_the_steps_slow_down_after_the_plan_was_made() -> None:
    # Another process taking a core after the first timed steps (the 1M run of round_1m.md trained
    # 218 s past its 480 s budget that way): the plan is checked again and the budget is a hard stop.
    import time

    from models.representation import PROBE_STEPS, default_augmentation

    base, calls = default_augmentation(), [0]

    def slows_after_the_probe(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls[0] += 1
        if calls[0] > 2 * PROBE_STEPS:  # two views per step
            time.sleep(0.25)
        return base(x, gen)

    x = np.random.default_rng(0).random((2048, 1, 16, 16)).astype(np.float32)
    budget = 8.0
    model = SimCLR(
        widths=(8, 16, 16),
        epochs=5,
        batch_size=16,
        time_budget_s=budget,
        seed=0,
        device=torch.device("cpu"),
        augmentation=slows_after_the_probe,
    )
    history = model.fit(x).history
    assert history is not None
    # The probe planned more steps than fit once each took half a second longer: training went on
    # past the probe and still ended within a step of the budget (the old plan overshot it by 3x).
    assert history.steps > PROBE_STEPS
    assert history.seconds < budget + 1.0


def test_head_learns_separable_classes_and_leaves_unseen_classes_out() -> None:
    x, y = _blobs(40)
    labelled = np.flatnonzero(y < 3)[:60]
    head = fit_head(x[labelled], y[labelled], 4, pool_features=x)
    p = head.predict_proba(x)
    assert p.shape == (len(x), 4) and np.allclose(p.sum(1), 1, atol=1e-5)
    seen = y < 3
    assert (p[seen].argmax(1) == y[seen]).mean() > 0.95
    assert p[:, 3].max() < 1e-6  # class 3 was never labelled
    assert head.info["chosen_by"].endswith("cross-validation")


def test_the_head_reads_a_pool_in_blocks_of_rows_as_it_reads_it_whole() -> None:
    # Blocks bound the float64 working memory at a million images; the numbers must not change.
    x, y = _blobs(40)
    head = fit_head(x[::3], y[::3], 4, pool_features=x)
    whole = head.logits(x, rows=len(x))
    np.testing.assert_allclose(head.logits(x, rows=7), whole, rtol=1e-12, atol=1e-12)
    assert head.logits(x[:0], rows=7).shape == (0, 4)
    learner = fit_learner(x, np.arange(0, len(x), 3), y[::3], 4, graph=PoolGraph.build(x))
    positions = np.arange(1, len(x), 2)
    np.testing.assert_allclose(
        learner.predict_rows(x, positions, rows=9), learner.predict_proba(x[positions]), rtol=1e-6, atol=1e-7
    )
    assert learner.predict_rows(x, positions[:0]).shape == (0, 4)


@pytest.mark.parametrize("columns", [slice(None), slice(3, 40), slice(0, 1)])
def test_pool_statistics_read_in_blocks_are_numpys_bit_for_bit(columns: slice) -> None:
    # The head's standardisation must not move by a bit when the pool is read a block at a time.
    x = (np.random.default_rng(5).standard_normal((3001, 48)) * 4 + 2).astype(np.float32)[:, columns]
    mean, std = column_statistics(x, rows=128)
    assert np.array_equal(mean, x.mean(0)) and np.array_equal(std, x.std(0))
    mean64, std64 = column_statistics(x.astype(np.float64), rows=97)
    assert np.array_equal(mean64, x.astype(np.float64).mean(0)) and np.array_equal(std64, x.astype(np.float64).std(0))


def test_temperature_cools_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3))
    logits[np.arange(300), y] += 1.0
    assert fit_temperature(logits * 10, y) > 3  # ten times too sharp: calibration undoes most of it
    assert 0.5 < fit_temperature(logits, y) < 2


def test_the_log_loss_criterion_ignores_scale_and_follows_the_true_class() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    noise = rng.normal(0, 1, (400, 4))
    weak, strong = noise.copy(), noise.copy()
    weak[np.arange(400), y] += 0.5
    strong[np.arange(400), y] += 2.0
    # Temperature is fitted first, so a read-out is not judged on how sharp its logits are.
    assert balanced_log_loss(weak * 3, y, 4) == pytest.approx(balanced_log_loss(weak, y, 4), rel=1e-3)
    assert balanced_log_loss(strong, y, 4) < balanced_log_loss(weak, y, 4) < np.log(4)
    with pytest.raises(ValueError, match="select_by"):
        fit_learner(weak, np.arange(40), y[:40], 4, select_by="auc")


def test_a_large_pool_graph_comes_from_the_approximate_index_and_matches_the_exact_one() -> None:
    x, y = _blobs(150, dim=8)
    first, twin = np.flatnonzero(y == 0)[-2:]
    x[twin] = x[first]  # an exact duplicate: each of the two still drops itself, not its twin
    exact = PoolGraph.build(x)
    approximate = PoolGraph.build(x, exact_max=100)  # 600 images: over the limit, HNSW
    rows = np.arange(len(x))[:, None]
    for graph in (exact, approximate):
        assert graph.neighbours.shape == (600, 10) and not (graph.neighbours == rows).any()
    assert first in exact.neighbours[twin] and twin in exact.neighbours[first]
    shared = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.neighbours, approximate.neighbours, strict=True)])
    assert shared > 0.95
    labelled = np.array([int(np.flatnonzero(y == c)[0]) for c in range(4)])
    spread = [g.propagate(labelled, y[labelled], 4).argmax(1) for g in (exact, approximate)]
    assert (spread[0] == spread[1]).mean() > 0.98 and (spread[1] == y).mean() > 0.9


def test_label_propagation_over_row_blocks_on_several_threads_is_the_one_block_result() -> None:
    x, y = _blobs(150, dim=8)
    graph = PoolGraph.build(x)
    labelled = np.array([int(np.flatnonzero(y == c)[0]) for c in range(4)])
    one = graph.propagate(labelled, y[labelled], 4, threads=1)
    for threads in (2, 3, 7):
        assert np.array_equal(graph.propagate(labelled, y[labelled], 4, threads=threads), one)
    # The blocks read the graph's own arrays; nothing is copied per round.
    for block in _row_blocks(graph.weights, 3):
        assert np.shares_memory(block.data, graph.weights.data)
        assert np.shares_memory(block.indices, graph.weights.indices)


def test_the_pool_graph_wins_when_labels_are_few() -> None:
    # Noisy clusters, two labels per class: the unlabelled pool shows where each cluster lies.
    x, y = _blobs(100, n_classes=5, dim=32, spread=5.0)
    labelled = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(5)])
    learner = fit_learner(x, labelled, y[labelled], 5, seed=0)
    supervised = fit_head(x[labelled], y[labelled], 5, pool_features=x)
    accuracy = (learner.predict_proba(x).argmax(1) == y).mean()
    assert learner.mode == "propagated"
    assert accuracy > (supervised.predict_proba(x).argmax(1) == y).mean() + 0.1
    assert accuracy > 0.85


def test_a_validation_split_chooses_the_read_out() -> None:
    x, y = _blobs(60)
    labelled = np.arange(80)
    held = np.arange(80, 160)
    learner = fit_learner(x, labelled, y[labelled], 4, validation=(x[held], y[held]))
    assert learner.info["held_out"] == "validation"
    assert (learner.predict_proba(x[160:]).argmax(1) == y[160:]).mean() > 0.95


@pytest.mark.parametrize(
    ("informative_first", "select_by"), [(True, "log-loss"), (False, "log-loss"), (True, "accuracy")]
)
def test_one_read_out_reads_the_block_of_a_joint_representation_that_carries_the_class(
    informative_first: bool, select_by: str
) -> None:
    # One block separates the classes; the other, 32 times wider, is noise, which a head on all
    # features must learn to ignore from 24 labels. The learner keeps the block that holds on held-out labels.
    features, y, blocks, span = _informative_and_noise(informative_first)
    labelled = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(4)])
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    learner = fit_learner(
        features, labelled, y[labelled], 4, seed=0, blocks=blocks, select_by=select_by, read_out="one"
    )
    assert learner.info["block"] == span
    outside = np.ones(264, dtype=bool)
    outside[slice(*span)] = False
    assert not learner.head.weight[:, outside].any()
    assert any("@features[" in name for name in learner.info["scores"])  # type: ignore[union-attr]
    # auto's guard reads the chosen read-out's held-out accuracy, not the best of those tried.
    chosen = learner.info["chosen"]
    assert isinstance(chosen, str) and chosen.endswith(f"@features[{span[0]}:{span[1]}]")
    assert learner.held_out_accuracy() == learner.info["scores"][chosen]  # type: ignore[index]
    on_all = fit_learner(features, labelled, y[labelled], 4, seed=0)
    assert "block" not in on_all.info and all("@features[" not in n for n in on_all.info["scores"])  # type: ignore[union-attr]
    accuracy = (learner.predict_proba(features[rest]).argmax(1) == y[rest]).mean()
    assert accuracy > (on_all.predict_proba(features[rest]).argmax(1) == y[rest]).mean() + 0.05
    # A validation split chooses the block the same way.
    held = rest[:80]
    validated = fit_learner(
        features,
        labelled,
        y[labelled],
        4,
        validation=(features[held], y[held]),
        blocks=blocks,
        select_by=select_by,
        read_out="one",
    )
    assert validated.info["held_out"] == "validation" and validated.info["block"] == span
    # Block sizes that do not add up to the features are ignored rather than misread.
    assert "block" not in fit_learner(features, labelled, y[labelled], 4, seed=0, blocks=[8, 8]).info


def _informative_and_noise(informative_first: bool) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    x, y = _blobs(150, n_classes=4, dim=8, spread=2.5, seed=3)
    noise = np.random.default_rng(4).normal(0, 1, (len(y), 256)).astype(np.float32)
    features = np.hstack([x, noise] if informative_first else [noise, x])
    blocks = [8, 256] if informative_first else [256, 8]
    span = [0, 8] if informative_first else [256, 264]
    return features, y, blocks, span


@pytest.mark.parametrize("informative_first", [True, False])
def test_a_joint_representation_is_read_by_an_ensemble_whose_temperatures_damp_a_noise_block(
    informative_first: bool,
) -> None:
    features, y, blocks, span = _informative_and_noise(informative_first)
    labelled = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(4)])
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    learner = fit_learner(features, labelled, y[labelled], 4, seed=0, blocks=blocks)
    assert learner.mode == "ensemble" and learner.info["chosen"] == "ensemble"
    members = learner.info["members"]
    assert isinstance(members, list) and [m["block"] for m in members] == [None, [0, blocks[0]], [blocks[0], 264]]
    # A read-out on noise predicts its held-out labels badly, so its fitted temperature flattens it.
    informative = next(m for m in members if m["block"] == span)
    noise = next(m for m in members if m["block"] not in (None, span))
    assert noise["temperature"] > 5 * informative["temperature"]
    # auto's guard reads the ensemble's own held-out accuracy.
    assert learner.held_out_accuracy() == learner.info["scores"]["ensemble"]  # type: ignore[index]

    def accuracy(model: FeatureLearner) -> float:
        return float((model.predict_proba(features[rest]).argmax(1) == y[rest]).mean())

    one = fit_learner(features, labelled, y[labelled], 4, seed=0, blocks=blocks, read_out="one")
    on_all = fit_learner(features, labelled, y[labelled], 4, seed=0)
    assert accuracy(learner) >= accuracy(one) and accuracy(learner) > accuracy(on_all) + 0.05
    # Refitted on the same labels (as the CNN challenge does on two thirds of them), the members give
    # the same map.
    refit = _refit(learner, features, PoolGraph.build(features), labelled, y[labelled], 4)
    np.testing.assert_allclose(refit.logits(features), learner.head.logits(features), rtol=1e-6, atol=1e-6)
    validated = fit_learner(
        features, labelled, y[labelled], 4, validation=(features[rest[:80]], y[rest[:80]]), blocks=blocks
    )
    assert validated.mode == "ensemble" and validated.info["held_out"] == "validation"


def test_combined_heads_are_one_linear_map_equal_to_the_mean_of_the_members_tempered_logits() -> None:
    x, y = _blobs(40, n_classes=3, dim=12, seed=5)
    heads = [
        fit_head(x, y, 3, pool_features=x, c_grid=(0.3,), temperature=1.0),
        fit_head(x, y, 3, pool_features=x, c_grid=(3.0,), temperature=1.0, block=slice(0, 5)),
        fit_head(x, y, 3, pool_features=x, c_grid=(0.3,), temperature=1.0, block=slice(5, 12)),
    ]
    temperatures = [0.7, 2.0, 1.3]
    combined = combine_heads(heads, temperatures, 1.5)
    expected = np.mean([h.logits(x) / t for h, t in zip(heads, temperatures, strict=True)], axis=0)
    np.testing.assert_allclose(combined.logits(x), expected, rtol=1e-9, atol=1e-9)
    assert combined.temperature == 1.5
    # snn climbs the same map in torch.
    climbed = combined.torch_logits(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(climbed, expected / 1.5, rtol=1e-9, atol=1e-9)


def test_the_held_out_accuracy_is_the_chosen_read_outs() -> None:
    x, y = _blobs(30)
    head = fit_head(x, y, 4)
    # Log-loss may choose a read-out that another out-scores on accuracy by a point: the guard
    # must see what the predicting read-out scored.
    learner = FeatureLearner(head, "supervised", {"scores": {"a": 0.9, "b": 0.6}, "chosen": "b"})
    assert learner.held_out_accuracy() == 0.6
    # Learners stored before the choice was recorded keep the old reading.
    assert FeatureLearner(head, "supervised", {"scores": {"a": 0.9, "b": 0.6}}).held_out_accuracy() == 0.9
    assert FeatureLearner(head, "supervised", {"mode": "supervised"}).held_out_accuracy() is None


def test_snn_climbs_the_head_in_feature_space() -> None:
    x, y = _blobs(50, spread=3.0)  # overlapping classes: no labelled loss is saturated at zero
    labelled = np.arange(40)
    head = fit_head(x[labelled], y[labelled], 4, pool_features=x)
    moved, before, after = latent_ascent(_Identity(), _HeadModel(head), x[labelled], y[labelled], alpha=1.0, n_steps=3)
    assert (after >= before - 1e-6).all() and (after > before).mean() > 0.9
    assert np.linalg.norm(moved - x[labelled], axis=1).min() > 0.5
    ctx = SelectionContext(
        candidate_ids=np.arange(40, 200),
        labelled_ids=labelled,
        labels=y[labelled],
        n_classes=4,
        probabilities=head.predict_proba(x[40:]),
        candidate_features=x[40:],
        labelled_features=x[labelled],
        extras={"head": head},
    )
    selection = get_strategy("snn", explore_until_per_class=0).select(ctx, 12)
    assert len(set(selection.image_ids)) == 12 and set(selection.image_ids) <= set(range(40, 200))
    assert all("source_image_id" in r for r in selection.reasons)


def _leaning_context(n_labelled: int, held_out: float | None = None, seed: int = 0) -> SelectionContext:
    """4 blobs of 50: the first `n_labelled` labelled, the other 150 candidates, whose predicted
    probabilities lean ever further to class 0, so margin sampling picks the first rows."""
    x, y = _blobs(50)
    probabilities = np.full((150, 4), 0.25, dtype=np.float32)
    probabilities[:, 0] += np.linspace(0, 0.7, 150)
    probabilities /= probabilities.sum(1, keepdims=True)
    return SelectionContext(
        candidate_ids=np.arange(50, 200),
        labelled_ids=np.arange(n_labelled),
        labels=y[:n_labelled],
        n_classes=4,
        seed=seed,
        probabilities=probabilities,
        candidate_features=x[50:],
        labelled_features=x[:n_labelled],
        held_out_accuracy=held_out,
    )


def test_auto_explores_by_typicality_then_follows_the_margin() -> None:
    ctx = _leaning_context

    few = get_strategy("auto").select(ctx(39), 5)
    assert all(r["strategy"] == "typiclust" and r["part_of"] == "auto" for r in few.reasons)
    # No learned head to climb in this context: the later phase is margin sampling.
    many = get_strategy("auto").select(ctx(40), 5)
    assert all(r["strategy"] == "margin" for r in many.reasons)
    # Margin takes the least decided candidates: the first rows, where class 0 barely leads.
    assert max(many.image_ids) < 50 + 20


def test_auto_hands_its_later_batches_to_snn_in_feature_space() -> None:
    x, y = _blobs(50, spread=3.0)
    labelled = np.arange(40)
    head = fit_head(x[labelled], y[labelled], 4, pool_features=x)

    def ctx(with_head: bool) -> SelectionContext:
        return SelectionContext(
            candidate_ids=np.arange(40, 200),
            labelled_ids=labelled,
            labels=y[labelled],
            n_classes=4,
            probabilities=head.predict_proba(x[40:]),
            held_out_accuracy=1.0,
            candidate_features=x[40:],
            labelled_features=x[labelled],
            extras={"head": head} if with_head else {},
        )

    chosen = get_strategy("auto").select(ctx(True), 8)
    assert all(r["strategy"] == "snn" and r["part_of"] == "auto" for r in chosen.reasons)
    assert len(set(chosen.image_ids)) == 8 and set(chosen.image_ids) <= set(range(40, 200))
    assert chosen.image_ids == get_strategy("snn").select(ctx(True), 8).image_ids
    # Without a learned representation's head there is nothing to climb in feature space.
    fallback = get_strategy("auto").select(ctx(False), 8)
    assert all(r["strategy"] == "margin" for r in fallback.reasons)
    # The earlier rule stays one parameter away.
    earlier = get_strategy("auto", then="margin").select(ctx(True), 8)
    assert all(r["strategy"] == "margin" for r in earlier.reasons)


def test_auto_picks_at_random_where_the_representation_does_not_separate_the_classes() -> None:
    separable, y = _blobs(50)
    noise = np.random.default_rng(1).normal(size=separable.shape).astype(np.float32)
    probabilities = np.full((150, 4), 0.25, dtype=np.float32)

    def ctx(features: np.ndarray, n_labelled: int, held_out: float | None = None) -> SelectionContext:
        labelled = np.arange(n_labelled)
        if n_labelled == 4:  # one label of each class
            labelled = np.array([int(np.flatnonzero(y[:50] == c)[0]) for c in range(4)])
        return SelectionContext(
            candidate_ids=np.arange(50, 200),
            labelled_ids=labelled,
            labels=y[labelled],
            n_classes=4,
            seed=7,
            probabilities=probabilities,
            candidate_features=features[50:],
            labelled_features=features[labelled],
            held_out_accuracy=held_out,
        )

    # Too few labels to fold: the nearest labelled neighbour is the held-out estimate. On features
    # that carry no class, auto's batch is exactly random's (same seed, same picks).
    blind = get_strategy("auto").select(ctx(noise, 12), 6)
    assert blind.image_ids == get_strategy("random").select(ctx(noise, 12), 6).image_ids
    assert all(r["strategy"] == "random" and "held-out skill" in r["auto_rule"] for r in blind.reasons)
    sighted = get_strategy("auto").select(ctx(separable, 12), 6)
    assert all(r["strategy"] == "typiclust" for r in sighted.reasons)
    # With a held-out accuracy from the learner, that is what counts: 0.4 on 4 classes is a skill
    # of 0.2 (chance 0.25), under a third; 0.9 is 0.87.
    assert get_strategy("auto").choice(ctx(separable, 40, held_out=0.4))[0] == "random"
    assert get_strategy("auto").choice(ctx(noise, 40, held_out=0.9))[0] == "margin"
    # One label per class is no evidence either way: the label-count rule stands.
    assert get_strategy("auto").choice(ctx(noise, 4))[0] == "typiclust"


def test_auto_with_a_ramp_hands_its_rule_a_share_of_the_batch_that_grows_with_the_skill() -> None:
    def ctx(held_out: float) -> SelectionContext:
        return _leaning_context(50, held_out, seed=3)

    ramp = get_strategy("auto", full_skill=2 / 3)
    # 4 classes: accuracy 0.625 is a skill of 0.5, half way between 1/3 and 2/3.
    halfway = ramp.select(ctx(0.625), 8)
    by = [r["strategy"] for r in halfway.reasons]
    assert by == ["margin"] * 4 + ["random"] * 4
    assert len(set(halfway.image_ids)) == 8 and set(halfway.image_ids) <= set(range(50, 200))
    # The rule's half is the rule's own first four picks; the random half never repeats them.
    assert halfway.image_ids[:4] == get_strategy("margin").select(ctx(0.625), 4).image_ids
    assert all("50% of the batch" in r["auto_rule"] and r["part_of"] == "auto" for r in halfway.reasons)
    # At two thirds of the way from chance and above, the whole batch is the rule's, as before.
    assert {r["strategy"] for r in ramp.select(ctx(0.8), 8).reasons} == {"margin"}
    whole = ramp.select(ctx(0.9), 8)
    assert whole.image_ids == get_strategy("margin").select(ctx(0.9), 8).image_ids
    # Just past the guard the rule gets a sliver: skill 0.4 is a fifth of the ramp, 2 of 10.
    sliver = ramp.select(ctx(0.55), 10)
    assert [r["strategy"] for r in sliver.reasons].count("margin") == 2
    # The default guard is a step: just past it the rule already picks the whole batch.
    step = get_strategy("auto").select(ctx(0.55), 10)
    assert step.image_ids == get_strategy("margin").select(ctx(0.55), 10).image_ids
    assert all("follows this rule" not in r["auto_rule"] for r in step.reasons)
    with pytest.raises(ValueError, match="full_skill"):
        get_strategy("auto", min_skill=0.5, full_skill=0.4)
    assert get_strategy("auto", min_skill=0.5).params["full_skill"] is None


def test_nearest_labelled_accuracy_counts_only_classes_with_two_labels() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    assert nearest_labelled_accuracy(features, np.array([0, 0, 1, 2]), centre=np.zeros(2)) == 1.0
    assert nearest_labelled_accuracy(features, np.array([0, 1, 2, 3]), centre=np.zeros(2)) is None
    # Past MAX_LEAVE_ONE_OUT labels a fixed sample is used, so memory stays bounded.
    many, y = _blobs(1500, n_classes=4)
    assert nearest_labelled_accuracy(many, y) == 1.0


def test_run_step_trains_the_head_on_features_and_selects_in_that_space() -> None:
    x, y = _blobs(60, dim=8)
    pool_x = np.zeros((len(x), 1, 8, 8), dtype=np.float32)  # pixels are unused by the feature learner
    labelled = np.arange(40)
    step = run_step(
        pool_x=pool_x[:200],
        pool_ids=np.arange(200) + 1000,
        labelled_pos=labelled,
        labels=y[labelled],
        candidate_pos=np.arange(40, 200),
        eval_x=pool_x[200:],
        eval_y=y[200:],
        n_classes=4,
        strategy="auto",
        params={},
        batch_size=10,
        seed=0,
        device=torch.device("cpu"),
        features=x[:200],
        eval_features=x[200:],
        graph=PoolGraph.build(x[:200]),
    )
    assert step.learner is not None and step.model is None
    assert step.accuracy is not None and step.accuracy > 0.95
    assert len(step.selection.image_ids) == 10 and min(step.selection.image_ids) >= 1040


def _quadrant_images(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, 1, 12, 12] noise with a bright 5x5 patch in the quadrant of each image's class (of 4)."""
    rng = np.random.default_rng(seed)
    x = rng.random((len(y), 1, 12, 12)).astype(np.float32) * 0.5
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 6 * r : 6 * r + 5, 6 * q : 6 * q + 5] = 1.0
    return x


def test_a_cnn_on_the_pixels_takes_over_where_the_features_carry_no_class() -> None:
    n_classes, per_class = 4, CNN_CHALLENGE_PER_CLASS + 10
    y = np.repeat(np.arange(n_classes), per_class + 50)
    y = y[np.random.default_rng(1).permutation(len(y))]
    pixels = _quadrant_images(y)
    features = np.random.default_rng(2).normal(size=(len(y), 8)).astype(np.float32)  # no class signal
    labelled = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])
    test = np.setdiff1d(np.arange(len(y)), labelled)
    graph = PoolGraph.build(features)
    head_only = fit_learner(features, labelled, y[labelled], n_classes, graph=graph)
    head_accuracy = (head_only.predict_proba(features[test]).argmax(1) == y[test]).mean()
    learner = challenge_with_cnn(
        fit_learner(features, labelled, y[labelled], n_classes, graph=graph),
        pool_x=pixels,
        pool_features=features,
        labelled_pos=labelled,
        labels=y[labelled],
        n_classes=n_classes,
        graph=graph,
        device=torch.device("cpu"),
    )
    challenge = learner.info["challenge"]
    assert challenge["chosen"] in ("mix", "cnn") and challenge["scores"]["head"] < 0.5
    assert learner.uses_pixels and learner.held_out_accuracy() == challenge["scores"][challenge["chosen"]]
    accuracy = (learner.predict_proba(features[test], pixels[test]).argmax(1) == y[test]).mean()
    assert accuracy > 0.9 and head_accuracy < 0.5
    with pytest.raises(ValueError, match="pixels"):
        learner.predict_proba(features[test])
    # Blocks of rows read the same images' pixels as their features.
    blocks = learner.predict_rows(features, test, pixels, rows=13)
    np.testing.assert_allclose(blocks, learner.predict_proba(features[test], pixels[test]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pixels"):
        learner.predict_rows(features, test)


def test_the_head_stays_where_it_beats_the_cnn_and_few_labels_train_no_cnn() -> None:
    n_classes = 4
    features, y = _blobs(CNN_CHALLENGE_PER_CLASS + 20, n_classes=n_classes, dim=8)
    pixels = np.random.default_rng(3).random((len(y), 1, 12, 12)).astype(np.float32)  # no class signal
    labelled = np.arange(n_classes * CNN_CHALLENGE_PER_CLASS + 8)
    val = np.arange(len(labelled), len(y))
    kwargs = {"pool_x": pixels, "pool_features": features, "n_classes": n_classes, "device": torch.device("cpu")}
    learner = challenge_with_cnn(
        fit_learner(features, labelled, y[labelled], n_classes, validation=(features[val], y[val])),
        labelled_pos=labelled,
        labels=y[labelled],
        validation=(features[val], pixels[val], y[val]),
        **kwargs,
    )
    assert learner.info["challenge"]["held_out"] == "validation"
    assert learner.info["challenge"]["chosen"] == "head" and not learner.uses_pixels
    np.testing.assert_allclose(learner.predict_proba(features), learner.head.predict_proba(features))
    few = labelled[: n_classes * CNN_CHALLENGE_PER_CLASS - 1]
    untouched = challenge_with_cnn(
        fit_learner(features, few, y[few], n_classes), labelled_pos=few, labels=y[few], **kwargs
    )
    assert "challenge" not in untouched.info and not untouched.uses_pixels


def test_a_fine_tuned_encoder_starts_at_the_head_and_competes_for_the_task_model() -> None:
    from models.representation import ConvEncoder, encode

    n_classes, per_class = 4, FINE_TUNE_PER_CLASS + 10
    y = np.repeat(np.arange(n_classes), per_class + 50)
    y = y[np.random.default_rng(7).permutation(len(y))]
    pixels = _quadrant_images(y, seed=8)
    torch.manual_seed(0)
    encoder = ConvEncoder(1, (8, 16, 16)).eval()
    labelled = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])
    test = np.setdiff1d(np.arange(len(y)), labelled)
    features = encode(encoder, pixels)
    head = fit_head(features[labelled], y[labelled], n_classes, pool_features=features)
    with torch.no_grad():
        start = fine_tunable(encoder, head).eval()(torch.as_tensor(pixels[:64])).numpy()
    np.testing.assert_allclose(start, head.logits(features[:64]), atol=1e-4)
    # The round's features say nothing of the class here, so only networks on the pixels can win;
    # the fine-tuned encoder is scored beside the CNN and learns the task from its pixels.
    noise = np.random.default_rng(9).normal(size=features.shape).astype(np.float32)

    def challenged(positions: np.ndarray) -> FeatureLearner:
        return challenge_with_cnn(
            fit_learner(noise, positions, y[positions], n_classes),
            pool_x=pixels,
            pool_features=noise,
            labelled_pos=positions,
            labels=y[positions],
            n_classes=n_classes,
            device=torch.device("cpu"),
            encoder=encoder,
        )

    learner = challenged(labelled)
    scores = learner.info["challenge"]["scores"]
    assert set(scores) == {"head", "mix", "cnn", "fine-tuned"} and scores["fine-tuned"] > 0.9
    assert learner.info["challenge"]["chosen"] != "head" and learner.uses_pixels
    assert (learner.predict_proba(noise[test], pixels[test]).argmax(1) == y[test]).mean() > 0.9
    # The encoder the round encodes with is copied, never trained in place.
    np.testing.assert_array_equal(encode(encoder, pixels[:64]), features[:64])
    # Between the CNN's threshold and fine-tuning's, the CNN challenges alone.
    few = np.concatenate([np.flatnonzero(y == c)[:CNN_CHALLENGE_PER_CLASS] for c in range(n_classes)])
    early = challenged(few)
    assert set(early.info["challenge"]["scores"]) == {"head", "mix", "cnn"}


def test_run_step_predicts_with_the_cnn_mix_and_evaluates_on_pixels() -> None:
    n_classes, per_class = 4, CNN_CHALLENGE_PER_CLASS
    y = np.repeat(np.arange(n_classes), per_class + 40)
    y = y[np.random.default_rng(4).permutation(len(y))]
    pixels = _quadrant_images(y, seed=5)
    features = np.random.default_rng(6).normal(size=(len(y), 8)).astype(np.float32)
    labelled = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    pool, evaluation = np.concatenate([labelled, rest[:80]]), rest[80:]
    step = run_step(
        pool_x=pixels[pool],
        pool_ids=np.arange(len(pool)),
        labelled_pos=np.arange(len(labelled)),
        labels=y[labelled],
        candidate_pos=np.arange(len(labelled), len(pool)),
        eval_x=pixels[evaluation],
        eval_y=y[evaluation],
        n_classes=n_classes,
        strategy="margin",
        params={},
        batch_size=10,
        seed=0,
        device=torch.device("cpu"),
        features=features[pool],
        eval_features=features[evaluation],
    )
    assert step.learner.uses_pixels and step.accuracy is not None and step.accuracy > 0.9
    assert step.candidate_probabilities is not None and step.candidate_probabilities.shape == (80, n_classes)
    assert len(step.selection.image_ids) == 10


def test_each_device_setting_builds_its_own_encoder_and_cache_name() -> None:
    from models.representation import setting_for, setting_tag

    cpu, gpu = setting_for("cpu"), setting_for("cuda")
    model = SimCLR.from_setting(cpu, seed=0)
    assert model.temperature == cpu["temperature"] == 0.5 and model.augmentation is not None
    assert SimCLR.from_setting(gpu, seed=0).temperature == 0.2
    # Features cached under one setting are never read back as another's.
    assert setting_tag(cpu) != setting_tag(gpu) != setting_tag(setting_for("cuda", epochs=10))
    assert model.patches and setting_tag(cpu) != setting_tag(cpu | {"patches": False})
    # The precision follows the hardware (bfloat16 on a GPU, on a CPU where it has AMX tiles) and
    # trains another encoder, so it names its own cache too.
    assert gpu["bfloat16"] and SimCLR.from_setting(gpu, seed=0).mixed_precision
    assert SimCLR.from_setting(cpu, seed=0).mixed_precision == cpu["bfloat16"]
    assert setting_tag(cpu | {"bfloat16": True}) != setting_tag(cpu | {"bfloat16": False})
    # A caller's edits stay its own.
    cpu["colour"]["hue"] = 0.0
    assert setting_for("cpu")["colour"]["hue"] == 0.5


def test_a_cpu_representation_budget_grows_with_the_pools_pixels_up_to_half_an_hour() -> None:
    from app.projects.schemas import ProjectSettings
    from models.representation import CPU_BUDGET_CAP_S, setting_for
    from worker.representation import encoder_setting

    flat = setting_for("cpu")["time_budget_s"]
    # The promise's pool (5,000 of 28x28 within 10 minutes) and anything smaller keep the flat budget.
    assert setting_for("cpu", pool_images=5_000, image_size=28)["time_budget_s"] == flat
    assert setting_for("cpu", pool_images=300, image_size=64)["time_budget_s"] == flat
    # 8,000 images of 32x32 are 2.09 times its pixels; a million are capped.
    rgb = encoder_setting("cpu", ProjectSettings(image_size=32, channels=3), 8_000)["time_budget_s"]
    assert rgb == pytest.approx(flat * 8_000 * 32 * 32 / (5_000 * 28 * 28))
    assert setting_for("cpu", pool_images=1_000_000, image_size=28)["time_budget_s"] == CPU_BUDGET_CAP_S
    # A GPU's budget binds only on very large pools (the 1M target) and stays as it is.
    assert (
        setting_for("cuda", pool_images=1_000_000, image_size=28)["time_budget_s"]
        == setting_for("cuda")["time_budget_s"]
    )


def test_inference_with_batchnorm_folded_predicts_what_the_network_predicts() -> None:
    from models.nets.classifier import SmallCNN
    from models.representation import ConvEncoder
    from models.training import for_inference

    torch.manual_seed(0)
    pixels = np.random.default_rng(0).random((300, 3, 20, 20), dtype=np.float32)
    cnn = SmallCNN(in_channels=3, n_classes=5)
    # Running statistics away from their initial values, so a wrong fold would show.
    cnn.train()
    with torch.no_grad():
        for _ in range(3):
            cnn(torch.as_tensor(pixels) * 3 - 1)
    tuned = fine_tunable(
        ConvEncoder(3, (8, 16, 16)).eval(),
        fit_head(np.random.default_rng(1).normal(size=(40, 16)).astype(np.float32), np.arange(40) % 5, 5),
    )
    for network in (cnn, tuned):
        network.eval()
        with torch.no_grad():
            expected = torch.softmax(network(torch.as_tensor(pixels)), 1).numpy()
        folded = for_inference(network)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        np.testing.assert_allclose(predict_proba(network, pixels, batch_size=64), expected, atol=1e-5)
    # The network handed in is left as it was: its BatchNorm layers are still there, still in use.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in cnn.modules())


def test_a_challenger_fitted_on_fewer_labels_is_judged_against_the_fresh_head_and_survives_storage(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from app.storage import LocalStorage
    from models.learner import apply_challenger, fit_challenger
    from worker.artifacts import load_challenger, save_challenger

    n_classes, per_class = 4, CNN_CHALLENGE_PER_CLASS + 10
    y = np.repeat(np.arange(n_classes), per_class + 60)
    y = y[np.random.default_rng(4).permutation(len(y))]
    pixels = _quadrant_images(y, seed=5)
    features = np.random.default_rng(6).normal(size=(len(y), 8)).astype(np.float32)  # no class signal
    early = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])
    later = np.concatenate([np.flatnonzero(y == c)[: per_class + 10] for c in range(n_classes)])
    val = np.setdiff1d(np.arange(len(y)), later)[:80]
    validation = (features[val], pixels[val], y[val])
    cpu = torch.device("cpu")
    kwargs = {"pool_x": pixels, "pool_features": features, "n_classes": n_classes, "device": cpu}
    learner = fit_learner(features, early, y[early], n_classes, validation=(features[val], y[val]))
    # Under the threshold nothing is fitted; from it, the CNN on every label, to be judged later.
    few = early[:20]
    assert fit_challenger(learner, labelled_pos=few, labels=y[few], validation=validation, **kwargs) is None
    challenger = fit_challenger(learner, labelled_pos=early, labels=y[early], validation=validation, **kwargs)
    assert challenger is not None and challenger.labels == len(early) and set(challenger.networks) == {"cnn"}

    storage = LocalStorage(tmp_path)
    save_challenger(storage, "c.pt", challenger, image_size=12, n_classes=n_classes)
    loaded = load_challenger(storage, "c.pt", cpu, image_size=12, n_classes=n_classes)
    np.testing.assert_allclose(
        predict_proba(loaded.networks["cnn"], pixels[:50]), predict_proba(challenger.networks["cnn"], pixels[:50])
    )
    # Fitted for other images or classes, it is not used.
    assert load_challenger(storage, "c.pt", cpu, image_size=16, n_classes=n_classes) is None

    # The next round's head, on more labels, meets the stored CNN on the validation split.
    fresh = fit_learner(features, later, y[later], n_classes, validation=(features[val], y[val]))
    applied = apply_challenger(fresh, loaded, validation=validation)
    challenge = applied.info["challenge"]
    assert challenge["fitted_on"] == len(early) and challenge["held_out"] == "validation"
    assert challenge["chosen"] in ("mix", "cnn") and applied.uses_pixels
    test = np.setdiff1d(np.arange(len(y)), np.concatenate([later, val]))
    assert (applied.predict_proba(features[test], pixels[test]).argmax(1) == y[test]).mean() > 0.9
    # Judged on no validation split, a challenger that needs one leaves the head alone.
    assert not apply_challenger(fit_learner(features, later, y[later], n_classes), loaded).uses_pixels

    # With the CNN's logits for the pool computed after it was fitted, the pool's rows come from them
    # (no pixels needed) and are what the network itself gives.
    ahead = apply_challenger(
        fit_learner(features, later, y[later], n_classes, validation=(features[val], y[val])),
        replace(loaded, pool_logits=predict_logits(loaded.networks["cnn"], pixels)),
        validation=validation,
    )
    assert ahead.pixel is not None and ahead.pixel.pool_logits is not None
    np.testing.assert_allclose(
        ahead.predict_rows(features, test), applied.predict_rows(features, test, pixels), rtol=1e-5, atol=1e-6
    )


def test_judged_on_a_held_out_third_the_mix_is_kept_unless_the_head_is_clearly_better() -> None:
    from models.learner import _choose

    # 400 held-out labels at 0.60: one binomial standard error is 2.4 points.
    level = {"head": 0.60, "mix": 0.59, "cnn": 0.30}
    clearly_head = {"head": 0.60, "mix": 0.55, "cnn": 0.30}
    # The CNN judged there had a third fewer labels than the one that predicts, so a near tie goes
    # to the mix; judged with every label (the validation split), ties go to the head as before.
    assert _choose(level, 400, networks_had_fewer_labels=True) == "mix"
    assert _choose(level, 400, networks_had_fewer_labels=False) == "head"
    assert _choose(clearly_head, 400, networks_had_fewer_labels=True) == "head"
    # A better CNN or mix wins either way.
    assert _choose({"head": 0.5, "mix": 0.6, "cnn": 0.7}, 400, networks_had_fewer_labels=True) == "cnn"
    assert _choose({"head": 0.5, "mix": 0.6, "cnn": 0.4}, 400, networks_had_fewer_labels=False) == "mix"


def test_the_fine_tuned_encoder_must_beat_the_best_score_even_when_a_near_tie_kept_the_mix() -> None:
    from models.learner import _choose

    # The near tie keeps the mix (0.59) over the head (0.60); a fine-tuned encoder at 0.595 is above
    # the mix but below the head, so it does not take over.
    below_head = {"head": 0.60, "mix": 0.59, "cnn": 0.30, "fine-tuned": 0.595}
    assert _choose(below_head, 400, networks_had_fewer_labels=True) == "mix"
    above_all = {"head": 0.60, "mix": 0.59, "cnn": 0.30, "fine-tuned": 0.61}
    assert _choose(above_all, 400, networks_had_fewer_labels=True) == "fine-tuned"
    # A tie with the best is not enough: the head it would replace is cheaper and already calibrated.
    level = {"head": 0.60, "mix": 0.50, "cnn": 0.30, "fine-tuned": 0.60}
    assert _choose(level, 400, networks_had_fewer_labels=False) == "head"


def test_a_refit_that_did_not_learn_gives_way_to_the_held_out_network_that_won() -> None:
    from models.learner import trained_or_held_out
    from models.nets.classifier import SmallCNN
    from models.simulate import load_simulation_data
    from models.training import fit_classifier

    data = load_simulation_data("digits")
    x, y = data.pool_x[:300], data.pool_y[:300]
    learned = fit_classifier(x, y, 10, seed=0, device=torch.device("cpu"))
    # A training that stalled: a network that never left its initialisation (on symbols10k-rgb a
    # refit on every label ended predicting one class).
    stalled = SmallCNN(in_channels=x.shape[1], n_classes=10).eval()

    assert trained_or_held_out(stalled, learned, x, y, 10, held_out_score=0.8) is learned
    assert trained_or_held_out(learned, stalled, x, y, 10, held_out_score=0.8) is learned
