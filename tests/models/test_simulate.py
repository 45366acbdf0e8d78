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
