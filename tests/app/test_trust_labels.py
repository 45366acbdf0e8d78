"""One annotator's finished work stays theirs; answers stay hidden; exports and pages are hardened."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest

from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_zip, upload


@pytest.fixture(scope="module")
def world(sqlite_service: LiveService) -> dict:
    service = sqlite_service
    eng_id, eng = service.new_user("engineer")
    a_id, a = service.new_user("annotator", name=f"@SUM-{np.random.randint(1e9)}")
    b_id, b = service.new_user("annotator")
    project = create_project(
        service.admin, members=[eng_id, a_id, b_id], classes=["@cmd", "+plus", "-minus", "plain"], representation="none"
    )
    pid = project["id"]
    engineer = service.client(eng)
    empty = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 8})
    assert empty.status_code == 409 and "no unlabelled images" in empty.json()["detail"]
    # Ground truth for the answers-stay-hidden test: the digit files get labels from this project.
    archive = digits_zip(np.arange(1500, 1540), with_labels=False)
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    labels = "filename,label\n" + "".join(f"{n},plain\n" for n in names)
    assert upload(service.admin, pid, [("pool.zip", archive)], labels=labels.encode()).status_code == 200
    state = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 8}).json()["id"]
    )
    assert state["status"] == "ready", state
    return {"pid": pid, "round": state, "eng": engineer, "a": service.client(a), "b": service.client(b)}


def test_an_annotator_cannot_overwrite_or_skip_another_annotators_finished_item(world: dict) -> None:
    a, b, pid = world["a"], world["b"], world["pid"]
    item = a.post(f"/projects/{pid}/next", json={"limit": 1}).json()["data"][0]
    image = item["image_id"]
    assert a.post(f"/images/{image}/annotations", json={"label": "plain"}).status_code == 201
    # The lease is gone once labelled, but the item is a's finished work now.
    overwrite = b.post(f"/images/{image}/annotations", json={"label": "-minus"})
    assert overwrite.status_code == 409 and "engineer or admin" in overwrite.json()["detail"]
    assert b.post(f"/suggestions/{item['suggestion_id']}/skip").status_code == 409
    assert world["eng"].get(f"/images/{image}").json()["label"] == "plain"
    # a may change their own mind; an engineer may relabel explicitly, and history keeps both.
    assert a.post(f"/images/{image}/annotations", json={"label": "+plus"}).status_code == 201
    # Even for an engineer, replacing someone else's label is explicit, and the history shows who did what.
    implicit = world["eng"].post(f"/images/{image}/annotations", json={"label": "@cmd"})
    assert implicit.status_code == 409 and '"relabel": true' in implicit.json()["detail"]
    relabel = world["eng"].post(f"/images/{image}/annotations", json={"label": "@cmd", "relabel": True})
    assert relabel.status_code == 201
    history = world["eng"].get(f"/images/{image}/annotations").json()["data"]
    assert [(h["label"], h["current"]) for h in history] == [("plain", False), ("+plus", False), ("@cmd", True)]
    assert history[-1]["annotator_id"] != history[0]["annotator_id"]
    assert world["a"].get(f"/images/{image}/annotations").status_code == 403
    assert world["eng"].get(f"/images/{image}").json()["label"] == "@cmd"


def test_a_skipped_item_is_not_labelled_by_someone_else(world: dict) -> None:
    a, b, pid = world["a"], world["b"], world["pid"]
    item = a.post(f"/projects/{pid}/next", json={"limit": 1}).json()["data"][0]
    assert a.post(f"/suggestions/{item['suggestion_id']}/skip").status_code == 200
    assert b.post(f"/images/{item['image_id']}/annotations", json={"label": "plain"}).status_code == 409
    statuses = {
        s["id"]: s["status"] for s in world["eng"].get(f"/rounds/{world['round']['id']}/suggestions").json()["data"]
    }
    assert statuses[item["suggestion_id"]] == "skipped"


def test_annotators_never_see_ground_truth_or_hidden_model_guesses(world: dict) -> None:
    a, eng, pid = world["a"], world["eng"], world["pid"]
    image = eng.get(f"/projects/{pid}/images").json()["data"][0]
    assert image["ground_truth"] is not None  # engineers see it
    assert a.get(f"/images/{image['id']}").json()["ground_truth"] is None
    assert all(i["ground_truth"] is None for i in a.get(f"/projects/{pid}/images").json()["data"])
    round_id = world["round"]["id"]
    for s in a.get(f"/rounds/{round_id}/suggestions").json()["data"]:
        assert "predicted" not in s["reason"] and "predicted_index" not in s["reason"]


def test_csv_export_escapes_formulas(world: dict) -> None:
    item = world["a"].post(f"/projects/{world['pid']}/next", json={"limit": 1}).json()["data"][0]
    assert world["a"].post(f"/images/{item['image_id']}/annotations", json={"label": "-minus"}).status_code == 201
    text = world["eng"].get(f"/projects/{world['pid']}/export", params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for row in rows:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", value
    assert any(row["label"] == "'@cmd" for row in rows) and any(row["label"] == "'-minus" for row in rows)
    assert any(row["annotator"].startswith("'@SUM-") for row in rows)
    # JSON keeps the exact values.
    data = world["eng"].get(f"/projects/{world['pid']}/export", params={"format": "json"}).json()["data"]
    assert any(r["label"] == "@cmd" for r in data)


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/docs", "/api/v1/projects", "/openapi.json"])
def test_pages_and_api_carry_hardening_headers(sqlite_service: LiveService, path: str) -> None:
    import httpx

    response = httpx.get(sqlite_service.base_url + path)
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_rounds_do_not_overlap_unless_the_open_one_is_closed_explicitly(world: dict) -> None:
    eng, pid, first = world["eng"], world["pid"], world["round"]["id"]
    pending = {
        s["image_id"]: s["id"]
        for s in eng.get(f"/rounds/{first}/suggestions").json()["data"]
        if s["status"] == "pending"
    }
    assert pending
    rounds_before = eng.get(f"/projects/{pid}/rounds").json()["count"]
    refused = eng.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 8})
    assert refused.status_code == 409, refused.text
    assert f"{len(pending)} pending" in refused.json()["detail"] and "close_open" in refused.json()["detail"]
    assert eng.get(f"/projects/{pid}/rounds").json()["count"] == rounds_before
    # Labelling an image by any path closes its pending suggestion in every round.
    image = next(iter(pending))
    assert eng.post(f"/images/{image}/annotations", json={"label": "plain"}).status_code == 201
    after = {s["image_id"]: s["status"] for s in eng.get(f"/rounds/{first}/suggestions").json()["data"]}
    assert after[image] == "labelled"
    # close_open: the open round is served until the new one is ready, then closes; the new round
    # never selects an image still pending in it.
    created = eng.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 8, "close_open": True})
    assert created.status_code == 202, created.text
    second = wait_for_round(eng, created.json()["id"])
    assert second["status"] == "ready", second
    assert eng.get(f"/rounds/{first}").json()["status"] == "closed"
    assert world["a"].get(f"/projects/{pid}/open-round").json() == {"id": second["id"], "index": second["index"]}
    picked = {s["image_id"] for s in eng.get(f"/rounds/{second['id']}/suggestions").json()["data"]}
    assert picked and not picked & set(pending)
    # Annotators are served the new round only.
    served = world["a"].post(f"/projects/{pid}/next", json={"limit": 20}).json()["data"]
    assert served and {s["image_id"] for s in served} <= picked
