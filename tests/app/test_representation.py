"""The learned representation through REST and real workers: an upload starts it in the background,
a round never waits for it, and the next round selects in it with a head on its features."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from tests.app.test_method_rounds import _label_suggestions
from tests.conftest import LiveService, wait_for_round
from tests.factories import (
    create_project,
    digits_project,
    digits_zip,
    upload,
    wait_representation_done,
    wait_rounds_prepared,
)


def test_representation_trains_in_the_background_and_rounds_select_in_it(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    engineer = sqlite_service.client(eng)
    project = create_project(sqlite_service.admin, members=[eng_id, ann_id], representation_epochs=3)
    pid = project["id"]
    upload(sqlite_service.admin, pid, [("pool.zip", digits_zip(np.arange(3000, 3200), with_labels=False))])
    upload(
        sqlite_service.admin,
        pid,
        [("val.zip", digits_zip(np.arange(3500, 3550), with_labels=True))],
        split="validation",
    )
    # The pool upload queued a representation job; the annotator sees it but may not start one.
    listed = engineer.get(f"/projects/{pid}/representations").json()
    assert listed["count"] == 1
    assert sqlite_service.client(ann).post(f"/projects/{pid}/representations").status_code == 403

    # A round started now does not wait for it (it runs on its own worker and records what it used).
    first = wait_for_round(engineer, engineer.post(f"/projects/{pid}/rounds", json={"batch_size": 20}).json()["id"])
    assert first["status"] == "ready", first
    assert first["strategy"] == "auto"
    # Until the representation is ready the pixels' principal components stand in: no VAE is trained
    # on the round's path.
    assert first["metrics"]["representation"]["kind"] in ("pixels-pca", "simclr")
    assert first["metrics"]["vae"]["trained"] is False

    ready = wait_representation_done(engineer, pid)
    assert ready["status"] == "ready", ready
    assert ready["pool_size"] == 200 and 1 <= ready["metrics"]["epochs"] <= 3
    # The service's budget (the test services set 8 s) wins over the one the pool would get.
    assert ready["metrics"]["time_budget_s"] == 8.0
    # Digits are grayscale: one channel has one colour axis, so the patch block is the paper's.
    assert ready["metrics"]["patch_colour_axis"] is False
    assert ready["metrics"]["loss_first_last"][1] <= ready["metrics"]["loss_first_last"][0] + 0.5
    names = {
        i["id"]: i["original_name"]
        for i in engineer.get(f"/projects/{pid}/images", params={"per_page": 500, "split": "pool"}).json()["data"]
    }
    labelled = _label_suggestions(engineer, sqlite_service, first["id"], names)
    # While the batch was labelled the rounds worker loaded the new representation, so the next
    # round finds the pool's rows, the encoded validation split and the kNN graph already made.
    prepared = wait_rounds_prepared(engineer, pid)["metrics"]["rounds_prepared"]
    assert prepared["pool_size"] == 200 and prepared["encoded_now"] == 0, prepared

    for strategy in ("snn", "auto"):
        body = {"strategy": strategy, "batch_size": 10, "close_open": True}
        response = engineer.post(f"/projects/{pid}/rounds", json=body)
        state = wait_for_round(engineer, response.json()["id"])
        assert state["status"] == "ready", state
        metrics = state["metrics"]
        assert {"encoder", "features", "validation", "graph"} <= set(metrics["reused"]), metrics["reused"]
        assert metrics["representation"] == {
            "kind": "simclr",
            "id": ready["id"],
            "encoded_now": 0,
            "pool_changed": 0.0,
            "refresh_requested": None,
            # The worker's encoder is SimCLR's beside the patch features; the task model averages
            # read-outs on all of them and on each block.
            "blocks": [ready["metrics"]["widths"][-1], 128],
        }
        assert ready["metrics"]["patches"] is True and ready["metrics"]["feature_dim"] == sum(
            metrics["representation"]["blocks"]
        )
        assert metrics["learner"]["mode"] == "ensemble" and metrics["learner"]["held_out"] == "validation"
        members = metrics["learner"]["members"]
        width = ready["metrics"]["widths"][-1]
        assert [m["block"] for m in members] == [None, [0, width], [width, width + 128]]
        assert all(m["mode"] in ("supervised", "propagated") and m["temperature"] > 0 for m in members)
        assert metrics["vae"]["trained"] is False and metrics["accuracy"] is not None
        picks = engineer.get(f"/rounds/{state['id']}/suggestions").json()["data"]
        assert len(picks) == 10 and not {p["image_id"] for p in picks} & labelled
        if strategy == "snn":
            assert any("source_image_id" in p["reason"] for p in picks)
        else:
            assert all(p["reason"]["part_of"] == "auto" for p in picks)
            # The round says which of auto's parts picked and why, as every suggestion does.
            assert set(metrics["auto"]["parts"]) <= {"random", "typiclust", "snn"}
            assert Counter(p["reason"]["strategy"] for p in picks) == metrics["auto"]["parts"]
            assert {p["reason"]["auto_rule"] for p in picks} == {metrics["auto"]["rule"]}
        # The round's latent space is the representation: the map is drawn from its features.
        assert engineer.get(f"/projects/{pid}/latent-map").status_code == 200

    # A second training request while none is running is accepted; a third at once is a conflict.
    assert engineer.post(f"/projects/{pid}/representations").status_code == 202
    assert engineer.post(f"/projects/{pid}/representations").status_code == 409


def test_an_rgb_pool_gets_a_patch_block_that_reads_colour_along_each_patchs_axis(sqlite_service: LiveService) -> None:
    from app import textures
    from app.datasets import Dataset, to_zip

    images, labels = textures.generate(10_000, seed=0, first=230)
    dataset = Dataset("textures10k-rgb", images, labels, list(textures.CLASSES), textures.SIZE)
    eng_id, eng = sqlite_service.new_user("engineer")
    engineer = sqlite_service.client(eng)
    project = create_project(
        sqlite_service.admin,
        members=[eng_id],
        classes=list(textures.CLASSES),
        channels=3,
        image_size=textures.SIZE,
        representation_epochs=1,
    )
    pid = project["id"]
    pool = to_zip(dataset, np.arange(180), with_labels=False)
    assert upload(sqlite_service.admin, pid, [("pool.zip", pool)]).status_code == 200
    validation = to_zip(dataset, np.arange(180, 230), with_labels=True)
    assert upload(sqlite_service.admin, pid, [("val.zip", validation)], split="validation").status_code == 200

    ready = wait_representation_done(engineer, pid)
    assert ready["status"] == "ready", ready
    assert ready["pool_size"] == 180 and ready["metrics"]["patches"] is True
    # Three channels: the patch block learns its dictionary on each patch's contrast along its own
    # dominant colour axis, as both settings ask, not on RGB triples.
    assert ready["metrics"]["patch_colour_axis"] is True

    listed = engineer.get(f"/projects/{pid}/images", params={"per_page": 500, "split": "pool"}).json()["data"]
    pool_ids = {i["id"] for i in listed}
    state = wait_for_round(engineer, engineer.post(f"/projects/{pid}/rounds", json={"batch_size": 10}).json()["id"])
    assert state["status"] == "ready", state
    used = state["metrics"]["representation"]
    assert used["kind"] == "simclr" and used["id"] == ready["id"]
    assert used["blocks"] == [ready["metrics"]["widths"][-1], 128]
    picks = engineer.get(f"/rounds/{state['id']}/suggestions").json()["data"]
    assert len(picks) == 10 and {p["image_id"] for p in picks} <= pool_ids


def _wait_for_next_challenger(client, round_id: int, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def]
    """The round's metrics once the challenger fitted after it was written is recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = client.get(f"/rounds/{round_id}").json()["metrics"]
        if "next_challenger" in metrics:
            return metrics
        time.sleep(0.3)
    raise AssertionError(f"round {round_id} fitted no challenger in {timeout}s: {metrics}")


def test_a_project_that_asks_for_fine_tuning_gets_it_compared_on_its_validation_split(
    sqlite_service: LiveService,
) -> None:
    from tests.factories import _ORDER, mnist

    labels = mnist().labels[_ORDER]
    zeros_ones = np.flatnonzero(np.isin(labels, (0, 1)))
    pool, validation = zeros_ones[:100], zeros_ones[100:124]
    eng_id, eng = sqlite_service.new_user("engineer")
    engineer = sqlite_service.client(eng)
    # Two classes at 8x8: the CNN challenges from 20 labels, fine-tuning joins at 60, and every network
    # fit takes a second.
    pid, names = digits_project(
        sqlite_service.admin,
        members=[eng_id],
        pool=pool,
        validation=validation,
        classes=["0", "1"],
        image_size=8,
        representation_epochs=1,
        fine_tune=True,
    )
    assert wait_representation_done(engineer, pid)["status"] == "ready"
    first = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 64}).json()["id"]
    )
    assert first["status"] == "ready", first
    _label_suggestions(engineer, sqlite_service, first["id"], names)
    body = {"strategy": "margin", "batch_size": 10, "close_open": True}
    second = wait_for_round(engineer, engineer.post(f"/projects/{pid}/rounds", json=body).json()["id"])
    assert second["status"] == "ready", second
    # The first round with enough labels fits no network on its way to its batch: the head alone
    # picks it, and the challengers are fitted on its 64 labels once the batch is out.
    assert "challenge" not in second["metrics"]["learner"]
    after = _wait_for_next_challenger(engineer, second["id"])["next_challenger"]
    assert after["fitted_on"] == 64 and after["networks"] == ["cnn", "fine-tuned"]

    _label_suggestions(engineer, sqlite_service, second["id"], names)
    state = wait_for_round(engineer, engineer.post(f"/projects/{pid}/rounds", json=body).json()["id"])
    assert state["status"] == "ready", state
    assert state["metrics"]["labels"] == 74
    # The next round applies them, judged on its validation split against its own fresh head.
    challenge = state["metrics"]["learner"]["challenge"]
    assert challenge["held_out"] == "validation" and challenge["fitted_on"] == 64
    assert set(challenge["scores"]) == {"head", "mix", "cnn", "fine-tuned"}
    # The CNN's logits for this pool were computed with it, so the round did not run it over the pool.
    assert "challenger-logits" in state["metrics"]["reused"], state["metrics"]["reused"]
    assert challenge["chosen"] in challenge["scores"]
    assert state["metrics"]["accuracy"] > 0.9
    assert len(engineer.get(f"/rounds/{state['id']}/suggestions").json()["data"]) == 10
    assert _wait_for_next_challenger(engineer, state["id"])["next_challenger"]["fitted_on"] == 74


def test_images_uploaded_after_the_representation_are_encoded_by_one_round(postgres_service: LiveService) -> None:
    """The rounds' worker serves no representation queue here (compose's `worker`); a background worker
    runs only while the first representation trains, so the later upload's job stays queued and the
    rounds after it select in the first representation, encoding what it has not seen."""
    import subprocess
    import sys

    eng_id, eng = postgres_service.new_user("engineer")
    engineer = postgres_service.client(eng)
    pid = create_project(postgres_service.admin, members=[eng_id], representation_epochs=2)["id"]
    upload(postgres_service.admin, pid, [("pool.zip", digits_zip(np.arange(3000, 3150), with_labels=False))])
    command = [sys.executable, "-m", "app.cli", "worker", "--queues", "background", "--log-level", "warning"]
    background = subprocess.Popen(command, env=postgres_service.env)
    try:
        ready = wait_representation_done(engineer, pid)
    finally:
        background.terminate()
        background.wait(timeout=30)
    assert ready["status"] == "ready", ready
    upload(postgres_service.admin, pid, [("more.zip", digits_zip(np.arange(3150, 3157), with_labels=False))])
    assert engineer.get(f"/projects/{pid}/representations").json()["data"][0]["status"] == "queued"

    rounds = []
    for _ in range(3):
        response = engineer.post(
            f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 5, "close_open": True}
        )
        state = wait_for_round(engineer, response.json()["id"])
        assert state["status"] == "ready", state
        rounds.append(state)
    used = [r["metrics"]["representation"] for r in rounds]
    assert {u["id"] for u in used} == {ready["id"]}
    # The seven new images are encoded by the first round only; its rows are stored once and pointed at.
    assert [u["encoded_now"] for u in used] == [7, 0, 0]
    assert {u["pool_changed"] for u in used} == {round(7 / 150, 4)}
    stored = sorted(postgres_service.data_dir.glob(f"objects/projects/{pid}/rounds/*/latents.npz"))
    assert [path.parent.name for path in stored] == [str(rounds[0]["id"])]


def test_an_upload_in_several_requests_is_learned_whole(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    engineer = sqlite_service.client(eng)
    project = create_project(sqlite_service.admin, members=[eng_id], representation_epochs=1)
    pid = project["id"]
    # Three requests, as a script uploading zips in a loop sends them, a second apart (the next zip's
    # transfer). The first queues the job, which the idle worker picks up within that second; it
    # waits until no image has arrived for the settle time (2 s here), then learns all three.
    for start in (4000, 4060, 4120):
        if start > 4000:
            time.sleep(1.0)
        upload(sqlite_service.admin, pid, [("part.zip", digits_zip(np.arange(start, start + 60), with_labels=False))])
    ready = wait_representation_done(engineer, pid)
    assert ready["status"] == "ready" and ready["pool_size"] == 180, ready
    assert [r["id"] for r in engineer.get(f"/projects/{pid}/representations").json()["data"]] == [ready["id"]]
