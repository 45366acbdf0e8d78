"""Rounds and annotation through HTTP with the real worker: conflicts, leases, undo, skip, failure."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_zip, upload


@pytest.fixture(scope="module")
def ready(sqlite_service: LiveService) -> dict:
    """A project with 60 pool images and a ready round of 10 suggestions."""
    service = sqlite_service
    eng_id, eng = service.new_user("engineer")
    ann1_id, ann1 = service.new_user("annotator")
    ann2_id, ann2 = service.new_user("annotator")
    project = create_project(service.admin, members=[eng_id, ann1_id, ann2_id])
    upload(service.admin, project["id"], [("pool.zip", digits_zip(np.arange(1000, 1060), with_labels=False))])
    engineer = service.client(eng)
    created = engineer.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 10})
    state = wait_for_round(engineer, created.json()["id"])
    assert state["status"] == "ready", state
    return {"project": project, "round": state, "eng": eng, "ann1": ann1, "ann2": ann2, "ann1_id": ann1_id}


def test_second_round_while_one_is_queued_is_409(idle_service: LiveService) -> None:
    # No worker runs in idle_service, so the first round is certainly still queued when the second
    # request arrives (with a worker, a random round on 30 images could finish in between).
    project = create_project(idle_service.admin)
    upload(idle_service.admin, project["id"], [("p.zip", digits_zip(np.arange(2000, 2030), with_labels=False))])
    first = idle_service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 5})
    assert first.status_code == 202
    second = idle_service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random"})
    assert second.status_code == 409
    assert second.json()["detail"] == "another round of this project is still queued or running"
    rounds = idle_service.admin.get(f"/projects/{project['id']}/rounds").json()
    assert rounds["count"] == 1 and rounds["data"][0]["status"] == "queued"


def test_round_input_validation(sqlite_service: LiveService, ready: dict) -> None:
    engineer = sqlite_service.client(ready["eng"])
    pid = ready["project"]["id"]
    unknown = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "psychic", "batch_size": 5})
    assert unknown.status_code == 422 and "random" in unknown.json()["detail"]
    assert engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 0}).status_code == 422


def test_leases_never_overlap(sqlite_service: LiveService, ready: dict) -> None:
    pid = ready["project"]["id"]
    a, b = sqlite_service.client(ready["ann1"]), sqlite_service.client(ready["ann2"])
    first = a.post(f"/projects/{pid}/next", json={"limit": 4}).json()
    second = b.post(f"/projects/{pid}/next", json={"limit": 4}).json()
    ids_a = {i["suggestion_id"] for i in first["data"]}
    ids_b = {i["suggestion_id"] for i in second["data"]}
    assert len(ids_a) == 4 and len(ids_b) == 4 and not ids_a & ids_b
    # Asking again returns the caller's own live leases first (a reload does not lose them).
    again = a.post(f"/projects/{pid}/next", json={"limit": 4}).json()
    assert {i["suggestion_id"] for i in again["data"]} == ids_a
    # Someone else's leased item cannot be labelled or skipped.
    taken = second["data"][0]
    conflict = a.post(f"/images/{taken['image_id']}/annotations", json={"label": "1"})
    assert conflict.status_code == 409 and "leased" in conflict.json()["detail"]
    assert a.post(f"/suggestions/{taken['suggestion_id']}/skip").status_code == 409


def test_label_rules_undo_and_skip(sqlite_service: LiveService, ready: dict) -> None:
    pid = ready["project"]["id"]
    annotator = sqlite_service.client(ready["ann1"])
    engineer = sqlite_service.client(ready["eng"])
    items = annotator.post(f"/projects/{pid}/next", json={"limit": 3}).json()["data"]
    first, second, third = items[0], items[1], items[2]

    unknown = annotator.post(f"/images/{first['image_id']}/annotations", json={"label": "eleven"})
    assert unknown.status_code == 422 and "unknown class" in unknown.json()["detail"]

    created = annotator.post(f"/images/{first['image_id']}/annotations", json={"label": "7"})
    assert created.status_code == 201
    repeat = annotator.post(f"/images/{first['image_id']}/annotations", json={"label": "7"})
    assert repeat.status_code == 200 and repeat.json()["id"] == created.json()["id"]
    relabel = annotator.post(f"/images/{first['image_id']}/annotations", json={"label": "1"})
    assert relabel.status_code == 201
    assert sqlite_service.admin.get(f"/images/{first['image_id']}").json()["label"] == "1"

    # Undo the relabel: the earlier label counts again.
    undone = annotator.delete(f"/annotations/{relabel.json()['id']}")
    assert undone.status_code == 200
    assert sqlite_service.admin.get(f"/images/{first['image_id']}").json()["label"] == "7"

    # Undo a suggestion's only label: it goes back to pending, leased to the same annotator.
    label2 = annotator.post(f"/images/{second['image_id']}/annotations", json={"label": "2"}).json()
    restored = annotator.delete(f"/annotations/{label2['id']}").json()
    assert restored["restored_suggestion_id"] == second["suggestion_id"]
    suggestions = {s["id"]: s for s in engineer.get(f"/rounds/{ready['round']['id']}/suggestions").json()["data"]}
    assert suggestions[second["suggestion_id"]]["status"] == "pending"
    assert suggestions[second["suggestion_id"]]["lease_holder_id"] == ready["ann1_id"]
    assert sqlite_service.admin.get(f"/images/{second['image_id']}").json()["label"] is None

    other = sqlite_service.client(ready["ann2"])
    assert other.delete(f"/annotations/{created.json()['id']}").status_code == 403

    skipped = annotator.post(f"/suggestions/{third['suggestion_id']}/skip")
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    later = annotator.post(f"/projects/{pid}/next", json={"limit": 50}).json()["data"]
    assert third["suggestion_id"] not in {i["suggestion_id"] for i in later}


def test_annotators_label_only_suggested_pool_images(sqlite_service: LiveService, ready: dict) -> None:
    pid = ready["project"]["id"]
    suggested = {
        s["image_id"] for s in sqlite_service.admin.get(f"/rounds/{ready['round']['id']}/suggestions").json()["data"]
    }
    images = sqlite_service.admin.get(f"/projects/{pid}/images", params={"per_page": 100}).json()["data"]
    outside = next(i["id"] for i in images if i["id"] not in suggested)
    annotator = sqlite_service.client(ready["ann2"])
    denied = annotator.post(f"/images/{outside}/annotations", json={"label": "3"})
    assert denied.status_code == 403
    engineer = sqlite_service.client(ready["eng"])
    allowed = engineer.post(f"/images/{outside}/annotations", json={"label": "3"})
    assert allowed.status_code == 201 and allowed.json()["round_id"] is None


def test_cancel_and_worker_failure(sqlite_service: LiveService) -> None:
    admin = sqlite_service.admin
    # No representation job: it would decode the pool into the worker's cache before the file is lost.
    project = create_project(admin, representation="none")
    upload(admin, project["id"], [("p.zip", digits_zip(np.arange(3000, 3040), with_labels=False))])
    # Parameters a strategy does not take are refused before anything is queued, each one named.
    for params, named in (({"bogus": 1}, "bogus"), ({"alpha": -1, "neighbours": 0}, "neighbours")):
        refused = admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "snn", "params": params})
        assert refused.status_code == 422 and named in refused.json()["detail"], refused.text
    assert admin.get(f"/projects/{project['id']}/rounds").json()["count"] == 0
    # A stored image lost from storage fails the round inside the worker: it records why, with no
    # suggestions, and nothing else of the project changes.
    objects = sqlite_service.data_dir / "objects" / "projects" / str(project["id"]) / "images"
    lost = sorted(objects.rglob("*.png"))[0]
    kept = lost.read_bytes()
    lost.unlink()
    bad = admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random"})
    failed = wait_for_round(admin, bad.json()["id"])
    assert failed["status"] == "failed" and "missing object" in failed["error"] and lost.stem in failed["error"]
    assert admin.get(f"/rounds/{failed['id']}/suggestions").json()["count"] == 0
    assert admin.post(f"/rounds/{failed['id']}/cancel").status_code == 409
    lost.write_bytes(kept)

    queued = admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 5})
    cancelled = admin.post(f"/rounds/{queued.json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert wait_for_round(admin, queued.json()["id"])["status"] == "cancelled"
    assert admin.get(f"/rounds/{queued.json()['id']}/suggestions").json()["count"] == 0
    nothing = admin.post(f"/projects/{project['id']}/next", json={"limit": 5}).json()
    assert nothing["round"] is None and "no round is ready" in nothing["message"]
