"""The simulation loop behind `suggestlab simulate` and the label-efficiency benchmark."""

from __future__ import annotations

from models.simulate import SimulationConfig, load_simulation_data, run_simulation


def test_skipped_curves_are_not_run_and_the_rest_match_a_full_run() -> None:
    # The benchmark's --resume relies on this: a curve depends only on its strategy and seed.
    data = load_simulation_data("digits")
    config = SimulationConfig(
        strategies=["random", "margin"], seeds=2, jobs=1, initial=20, batch=20, rounds=1, representation_epochs=1
    )
    full = run_simulation(data, config)
    partial = run_simulation(data, config, skip=[("random", 0), ("margin", 0)])

    assert {(r["strategy"], r["seed"]) for r in full} == {(s, seed) for s in ("random", "margin") for seed in (0, 1)}
    assert {(r["strategy"], r["seed"]) for r in partial} == {("random", 1), ("margin", 1)}

    def key(rows: list[dict]) -> list[tuple]:
        return sorted((r["strategy"], r["seed"], r["round"], r["labels"], r["accuracy"]) for r in rows)

    assert key(partial) == key([r for r in full if r["seed"] == 1])
    assert [r["labels"] for r in partial if r["strategy"] == "random"] == [20, 40]


def test_a_simulation_learns_the_representation_a_project_would_get_on_this_device(tmp_path) -> None:
    from models.patches import OUT_DIM
    from models.representation import setting_for, setting_tag
    from models.simulate import representation_for
    from models.training import select_device

    data = load_simulation_data("digits")
    setting = setting_for(select_device().type, epochs=1)
    pool, test = representation_for(data, SimulationConfig(strategies=[], representation_epochs=1), tmp_path)

    # The worker's encoder for this device: SimCLR's last width beside the patch block is the feature
    # size, and the cache is named by the whole setting, so a GPU run never reuses a CPU run's features.
    assert setting["patches"]
    assert pool.shape == (len(data.pool_y), setting["widths"][-1] + OUT_DIM) and test.shape[0] == len(data.test_y)
    name = f"simclr-digits-{len(data.pool_y)}-{setting_tag(setting)}"
    # The encoder is kept beside its features, for simulations of projects that fine-tune it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}-encoder.pt", f"{name}.npz"]
    assert setting_tag(setting).startswith("-".join(map(str, setting["widths"])) + "-1-")


def _report_thread_caps(_: int) -> dict[str, str | None]:
    import os

    from models.simulate import THREAD_VARIABLES

    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def test_parallel_workers_start_with_their_share_of_threads_and_give_the_same_curves(tmp_path) -> None:
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from models.simulate import THREAD_VARIABLES, thread_caps_for_children

    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    with (
        thread_caps_for_children(3),
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        seen = pool.submit(_report_thread_caps, 0).result()
    # A library loaded late in a worker (scikit-learn's OpenMP) reads these when it loads.
    assert seen == dict.fromkeys(THREAD_VARIABLES, "3")
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before

    data = load_simulation_data("digits")
    config = SimulationConfig(
        strategies=["random", "margin"], seeds=1, initial=20, batch=20, rounds=1, representation_epochs=1
    )
    serial = run_simulation(data, config, cache=tmp_path)
    parallel = run_simulation(data, SimulationConfig(**{**config.__dict__, "jobs": 2}), cache=tmp_path)

    def key(rows: list[dict]) -> list[tuple]:
        return sorted((r["strategy"], r["seed"], r["round"], r["labels"], r["accuracy"]) for r in rows)

    assert key(parallel) == key(serial)


def test_a_representation_trained_on_a_gpu_is_read_from_the_cache_on_any_machine(tmp_path) -> None:
    import numpy as np

    from models.representation import setting_for, setting_tag
    from models.simulate import representation_for

    data = load_simulation_data("digits")
    gpu = setting_for("cuda")
    name = f"simclr-digits-{len(data.pool_y)}-{setting_tag(gpu)}.npz"
    pool = np.random.default_rng(0).normal(size=(len(data.pool_y), gpu["widths"][-1])).astype(np.float32)
    test = np.zeros((len(data.test_y), gpu["widths"][-1]), dtype=np.float32)
    np.savez(tmp_path / name, pool=pool, test=test)

    read, _ = representation_for(data, SimulationConfig(strategies=[], representation_setting="cuda"), tmp_path)

    # No encoder trained here: the GPU setting's features came back as saved.
    np.testing.assert_array_equal(read, pool)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_each_rounds_learner_is_shown_to_the_caller_beside_its_row(tmp_path) -> None:
    # benchmarks/challenge_trace.py reads the learner's choices this way to explain a curve's jumps.
    import numpy as np

    from models.patches import OUT_DIM
    from models.representation import setting_for
    from models.simulate import representation_cache, run_one

    data = load_simulation_data("digits")
    config = SimulationConfig(strategies=["random"], initial=20, batch=20, rounds=2, representation_setting="cuda")
    width = setting_for("cuda")["widths"][-1] + OUT_DIM
    rng = np.random.default_rng(0)
    cached = representation_cache(data, config, tmp_path)
    assert cached is not None
    np.savez(
        cached,
        pool=rng.normal(size=(len(data.pool_y), width)).astype(np.float32),
        test=rng.normal(size=(len(data.test_y), width)).astype(np.float32),
    )
    seen: list[tuple[dict, object]] = []

    rows = run_one(data, "random", 0, config, cache=tmp_path, on_step=lambda row, step: seen.append((row, step)))

    assert [row for row, _ in seen] == rows and [row["labels"] for row in rows] == [20, 40, 60]
    for row, step in seen:
        assert step.accuracy == row["accuracy"]
        assert step.learner is not None and step.learner.info["mode"] == step.learner.mode


def test_a_simulation_with_fine_tuning_fine_tunes_the_encoder_that_made_its_features(tmp_path) -> None:
    import numpy as np

    from models.representation import encode
    from models.simulate import SimulationData, encoder_for, representation_for, run_one

    digits = load_simulation_data("digits")
    # Four classes keep the fits small; 120 labels are 30 per class, where fine-tuning joins the
    # CNN's challenge.
    keep, keep_test = digits.pool_y < 4, digits.test_y < 4
    data = SimulationData(
        "digits4",
        digits.pool_x[keep],
        digits.pool_y[keep],
        digits.test_x[keep_test],
        digits.test_y[keep_test],
        digits.classes[:4],
    )
    config = SimulationConfig(
        strategies=["random"], initial=120, batch=20, rounds=1, representation_epochs=1, fine_tune=True
    )
    pool, _ = representation_for(data, config, tmp_path)
    encoder = encoder_for(data, config, tmp_path)
    np.testing.assert_allclose(encode(encoder, data.pool_x[:64]), pool[:64], rtol=1e-4, atol=1e-4)

    seen: list[object] = []
    run_one(data, "random", 0, config, cache=tmp_path, on_step=lambda row, step: seen.append(step))
    challenge = seen[-1].learner.info["challenge"]  # type: ignore[attr-defined]
    assert set(challenge["scores"]) == {"head", "mix", "cnn", "fine-tuned"}
