"""The simulation loop behind `suggestlab simulate` and the label-efficiency benchmark."""

from __future__ import annotations

from models.simulate import SimulationConfig, load_simulation_data, run_simulation


def test_skipped_curves_are_not_run_and_the_rest_match_a_full_run() -> None:
    # The benchmark's --resume relies on this: a curve depends only on its strategy and seed.
    data = load_simulation_data("digits")
    config = SimulationConfig(
        strategies=["random", "margin"], seeds=2, jobs=1, initial=20, batch=20, rounds=1, representation_epochs=2
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
    from models.representation import setting_for
    from models.simulate import _representation_for
    from models.training import select_device

    data = load_simulation_data("digits")
    setting = setting_for(select_device().type, epochs=1)
    pool, test = _representation_for(data, SimulationConfig(strategies=[], representation_epochs=1), tmp_path)

    # The worker's encoder for this device: its last width is the feature size, and the cache is
    # named by widths and epochs, so a GPU run never reuses a CPU run's features.
    assert pool.shape == (len(data.pool_y), setting["widths"][-1]) and test.shape[0] == len(data.test_y)
    widths = "-".join(map(str, setting["widths"]))
    assert [p.name for p in tmp_path.iterdir()] == [f"simclr-digits-{len(data.pool_y)}-{widths}-1.npz"]
