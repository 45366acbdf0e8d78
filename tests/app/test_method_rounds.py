"""Latent-space rounds through REST and the real worker: snn picks real unlabelled images, si adds
synthetic ones that annotators label and that then train the next model."""

from __future__ import annotations

import time

import numpy as np

from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_zip, mnist, upload, wait_representation_done


def _label_suggestions(client, service: LiveService, round_id: int, names: dict[int, str]) -> set[int]:  # type: ignore[no-untyped-def]
    data = mnist()
    done = set()
    for s in client.get(f"/rounds/{round_id}/suggestions").json()["data"]:
        index = int(names[s["image_id"]].split("-")[1].split(".")[0])
        response = client.post(f"/images/{s['image_id']}/annotations", json={"label": str(data.labels[index])})
        assert response.status_code == 201, response.text
        done.add(s["image_id"])
    return done


def test_snn_then_si_rounds(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    engineer, annotator = sqlite_service.client(eng), sqlite_service.client(ann)
    project = create_project(
        sqlite_service.admin, members=[eng_id, ann_id], vae_epochs=8, latent_dim=8, representation="none"
    )
    pid = project["id"]
    upload(sqlite_service.admin, pid, [("pool.zip", digits_zip(np.arange(4000, 4120), with_labels=False))])
    upload(
        sqlite_service.admin,
        pid,
        [("val.zip", digits_zip(np.arange(4500, 4540), with_labels=True))],
        split="validation",
    )
    names = {
        i["id"]: i["original_name"]
        for i in engineer.get(f"/projects/{pid}/images", params={"per_page": 500, "split": "pool"}).json()["data"]
    }

    first = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "snn", "batch_size": 20}).json()["id"]
    )
    assert first["status"] == "ready", first
    assert first["metrics"]["effective_strategy"] == "coldstart"
    assert first["metrics"]["vae"]["trained"] is True
    assert first["metrics"]["decoded_images"] == 160  # 120 pool + 40 validation images, decoded once
    labelled = _label_suggestions(engineer, sqlite_service, first["id"], names)

    snn = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "snn", "batch_size": 10, "params": {"alpha": 1.5}})
    second = wait_for_round(engineer, snn.json()["id"])
    assert second["status"] == "ready", second
    assert second["metrics"]["effective_strategy"] == "snn"
    # The pool did not change, so the VAE from round 1 is reused and no image is decoded again.
    assert second["metrics"]["vae"]["trained"] is False
    assert second["metrics"]["decoded_images"] == 0
    # ... and the pool's latents in it are read back from round 1's artifact, not encoded again.
    assert second["metrics"]["vae"]["encoded_now"] == 0
    picks = engineer.get(f"/rounds/{second['id']}/suggestions").json()["data"]
    assert len(picks) == 10
    assert not {p["image_id"] for p in picks} & labelled
    assert all(p["image_id"] in names for p in picks)  # real pool images only
    sourced = [p for p in picks if "source_image_id" in p["reason"]]
    assert sourced and all(p["reason"]["source_image_id"] in labelled for p in sourced)
    labelled |= _label_suggestions(engineer, sqlite_service, second["id"], names)

    si = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "si", "batch_size": 4})
    third = wait_for_round(engineer, si.json()["id"])
    assert third["status"] == "ready", third
    items = annotator.post(f"/projects/{pid}/next", json={"limit": 10}).json()["data"]
    assert len(items) == 4 and all(item["synthetic"] for item in items)
    synthetic = engineer.get(f"/projects/{pid}/images", params={"synthetic": True}).json()["data"]
    assert len(synthetic) == 4
    assert all(img["source_image_id"] in labelled for img in synthetic)
    image = sqlite_service.admin.get(f"/images/{items[0]['image_id']}/file")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    for item in items:
        assert annotator.post(f"/images/{item['image_id']}/annotations", json={"label": "1"}).status_code == 201

    after = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "entropy", "batch_size": 5}).json()["id"]
    )
    assert after["status"] == "ready", after
    # Labelled synthetic images train the model like any other label.
    assert after["metrics"]["labels"] == len(labelled) + 4
    assert engineer.get(f"/projects/{pid}").json()["counts"]["synthetic"] == 4
    # entropy with labels needs no latent space: no VAE is loaded, trained or encoded for it, and
    # the map keeps showing the newest round that selected in one.
    assert after["metrics"]["vae"] == {"trained": False, "needed": False}
    shown = engineer.get(f"/projects/{pid}/latent-map").json()
    assert shown["round_id"] == third["id"] and shown["count"] > 0, shown


def test_si_refused_when_project_forbids_synthetic(sqlite_service: LiveService) -> None:
    project = create_project(sqlite_service.admin, allow_synthetic=False)
    response = sqlite_service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "si"})
    assert response.status_code == 422 and "synthetic" in response.json()["detail"]


def test_simulation_job_over_rest(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    engineer = sqlite_service.client(eng)
    # Two SimCLR epochs: the project's representation is learned first, which is not what this tests.
    project = create_project(
        sqlite_service.admin, members=[eng_id, ann_id], vae_epochs=5, latent_dim=8, representation_epochs=2
    )
    pid = project["id"]
    body = {"strategies": ["random", "coreset"], "initial": 10, "batch": 10, "rounds": 2, "seeds": 1}
    too_few = engineer.post(f"/projects/{pid}/simulations", json=body)
    assert too_few.status_code == 422 and "labelled pool images" in too_few.json()["detail"]
    # The pool arrives with ground truth (labels.csv inside the zip): the oracle for the simulation.
    upload(sqlite_service.admin, pid, [("pool.zip", digits_zip(np.arange(100, 160), with_labels=True))])
    assert sqlite_service.client(ann).post(f"/projects/{pid}/simulations", json=body).status_code == 403
    # The upload queued the project's representation; once it is ready the simulation selects in it.
    representation = wait_representation_done(engineer, pid)
    assert representation["status"] == "ready", representation
    assert engineer.post(f"/projects/{pid}/simulations", json={**body, "strategies": ["nope"]}).status_code == 422
    listed = {s["name"]: s for s in engineer.get("/strategies").json()["data"]}
    assert listed["snn"]["params"]["neighbours"] == 30 and listed["random"]["params"] == {}
    for params, named in (({"coreset": {"k": 3}}, "'k'"), ({"margin": {}}, "not a strategy of the run")):
        refused = engineer.post(f"/projects/{pid}/simulations", json={**body, "params": params})
        assert refused.status_code == 422 and named in refused.json()["detail"], refused.text
    created = engineer.post(f"/projects/{pid}/simulations", json=body)
    assert created.status_code == 202, created.text
    sim_id = created.json()["id"]
    # One simulation at a time per project (SUGGESTLAB_MAX_ACTIVE_SIMULATIONS).
    second = engineer.post(f"/projects/{pid}/simulations", json=body)
    assert second.status_code == 409 and "cancel" in second.json()["detail"], second.text
    deadline = time.monotonic() + 300
    while (state := engineer.get(f"/simulations/{sim_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "ready", state
    assert set(state["summary"]["strategies"]) == {"random", "coreset"}
    assert state["summary"]["learner"] == "simclr"
    # The curves read the project's own features: every image was in them, so none was encoded again.
    assert state["summary"]["representation"] == {"kind": "project", "id": representation["id"], "encoded_now": 0}
    assert state["summary"]["strategies"]["random"]["labels"] == [10.0, 20.0, 30.0]
    results = engineer.get(f"/simulations/{sim_id}/results.csv")
    assert results.status_code == 200
    lines = results.text.strip().splitlines()
    assert lines[0] == "strategy,seed,round,labels,accuracy,seconds" and len(lines) == 1 + 2 * 3
    svg = engineer.get(f"/simulations/{sim_id}/curve.svg")
    assert svg.status_code == 200 and b"<svg" in svg.content
    assert engineer.get(f"/simulations/{sim_id}/curve.png").content[:4] == b"\x89PNG"
    assert engineer.get(f"/simulations/{sim_id}/nothing.txt").status_code == 422
    assert engineer.post(f"/simulations/{sim_id}/cancel").status_code == 409


def _wait_simulation(client, sim_id: int, until: tuple[str, ...], timeout: float = 300) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/simulations/{sim_id}").json())["status"] not in until:
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    return state


def test_simulations_run_beside_rounds_and_can_be_cancelled(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    engineer = sqlite_service.client(eng)
    project = create_project(sqlite_service.admin, members=[eng_id], representation="none")
    pid = project["id"]
    upload(sqlite_service.admin, pid, [("pool.zip", digits_zip(np.arange(200, 300), with_labels=True))])
    # Hundreds of curve points: far longer than a round.
    strategies = ["random", "margin", "entropy", "coreset", "typiclust"]
    long_run = {"strategies": strategies, "initial": 2, "batch": 2, "rounds": 30, "seeds": 10}
    sim_id = engineer.post(f"/projects/{pid}/simulations", json=long_run).json()["id"]
    _wait_simulation(engineer, sim_id, ("running",))
    # Simulations have their own queue (and, embedded, their own worker): a round does not wait behind one.
    round_id = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 5}).json()["id"]
    assert wait_for_round(engineer, round_id)["status"] == "ready"
    assert engineer.get(f"/simulations/{sim_id}").json()["status"] == "running"
    cancelled = engineer.post(f"/simulations/{sim_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    # The cancelled one frees the project's slot and its worker: a new simulation runs to the end.
    short = {"strategies": ["random"], "initial": 5, "batch": 5, "rounds": 1, "seeds": 1}
    next_id = engineer.post(f"/projects/{pid}/simulations", json=short).json()["id"]
    finished = _wait_simulation(engineer, next_id, ("ready", "failed"))
    assert finished["status"] == "ready", finished
    # The project turned representations off, so its simulation learns as its rounds do: a CNN.
    assert finished["summary"]["learner"] == "cnn" and finished["summary"]["representation"] is None
    final = engineer.get(f"/simulations/{sim_id}").json()
    assert final["status"] == "cancelled" and final["files"] == {}, final


def test_a_queued_round_says_what_it_waits_behind(idle_service: LiveService) -> None:
    first, second = (create_project(idle_service.admin) for _ in range(2))
    for project in (first, second):
        upload(idle_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(10), with_labels=False))])
    body = {"strategy": "random", "batch_size": 2}
    ids = [idle_service.admin.post(f"/projects/{p['id']}/rounds", json=body).json()["id"] for p in (first, second)]
    # No worker runs here, so both stay queued; the later one names what is ahead of it, in counts only.
    rounds = [idle_service.admin.get(f"/rounds/{i}").json() for i in ids]
    assert all(r["status"] == "queued" for r in rounds)
    assert "waiting for a worker" in rounds[0]["waiting_behind"] or "earlier queued" in rounds[0]["waiting_behind"]
    assert rounds[1]["waiting_behind"].startswith("queued behind 0 running and ")
    ahead = int(rounds[1]["waiting_behind"].split(" and ")[1].split()[0])
    assert ahead >= 1
    listed = idle_service.admin.get(f"/projects/{second['id']}/rounds").json()["data"]
    assert listed[-1]["waiting_behind"] == rounds[1]["waiting_behind"]
