"""The whole annotation loop over HTTP, with a real worker process, on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest

from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_zip, mnist, upload


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_full_loop(backend: str, request: pytest.FixtureRequest) -> None:
    service: LiveService = request.getfixturevalue(f"{backend}_service")
    engineer_id, engineer_token = service.new_user("engineer")
    annotator_id, annotator_token = service.new_user("annotator")
    engineer, annotator = service.client(engineer_token), service.client(annotator_token)
    project = create_project(service.admin, members=[engineer_id, annotator_id])
    pid = project["id"]
    data = mnist()

    pool = upload(service.admin, pid, [("pool.zip", digits_zip(np.arange(200), with_labels=False))])
    assert pool.status_code == 200, pool.text
    assert len(pool.json()["accepted"]) == 200 and not pool.json()["rejected"]
    validation = upload(
        service.admin, pid, [("val.zip", digits_zip(np.arange(200, 300), with_labels=True))], split="validation"
    )
    assert len(validation.json()["accepted"]) == 100, validation.text

    # Round 1: no labels yet, so the entropy request is served by the cold-start strategy.
    created = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "entropy", "batch_size": 20})
    assert created.status_code == 202, created.text
    first = wait_for_round(engineer, created.json()["id"])
    assert first["status"] == "ready", first
    assert first["metrics"]["effective_strategy"] == "coldstart"
    suggestions = engineer.get(f"/rounds/{first['id']}/suggestions").json()["data"]
    assert len(suggestions) == 20 and len({s["image_id"] for s in suggestions}) == 20

    # The annotator leases and labels the whole batch with the true digit.
    names = {
        img["id"]: img["original_name"]
        for img in engineer.get(f"/projects/{pid}/images", params={"split": "pool", "per_page": 500}).json()["data"]
    }
    batch = annotator.post(f"/projects/{pid}/next", json={"limit": 50}).json()
    assert batch["round"]["index"] == 1 and len(batch["data"]) == 20
    labelled: set[int] = set()
    for item in batch["data"]:
        index = int(names[item["image_id"]].split("-")[1].split(".")[0])
        response = annotator.post(
            f"/images/{item['image_id']}/annotations", json={"label": str(data.labels[index]), "duration_ms": 900}
        )
        assert response.status_code == 201, response.text
        labelled.add(item["image_id"])
    done = annotator.post(f"/projects/{pid}/next", json={"limit": 5}).json()
    assert done["data"] == [] and "done" in done["message"]

    second_round = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "entropy", "batch_size": 20})
    assert second_round.status_code == 202, second_round.text
    second = wait_for_round(engineer, second_round.json()["id"])
    assert second["status"] == "ready", second
    assert second["metrics"]["effective_strategy"] == "entropy"
    assert second["metrics"]["labels"] == 20
    assert 0.0 <= second["metrics"]["accuracy"] <= 1.0
    picks = {s["image_id"] for s in engineer.get(f"/rounds/{second['id']}/suggestions").json()["data"]}
    assert len(picks) == 20 and not picks & labelled
    assert engineer.get(f"/rounds/{first['id']}").json()["status"] == "closed"

    metrics = engineer.get(f"/projects/{pid}/metrics").json()["data"]
    assert [m["index"] for m in metrics] == [1, 2]
    assert [m["labels"] for m in metrics] == [0, 20]
    assert metrics[1]["accuracy"] is not None and metrics[1]["timings"]["train_s"] > 0

    exported_csv = engineer.get(f"/projects/{pid}/export", params={"format": "csv"})
    assert exported_csv.status_code == 200 and exported_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported_csv.text)))
    # The annotations, and the validation labels that came with their upload.
    annotated = [r for r in rows if r["label_source"] == "annotation"]
    assert {int(r["image_id"]) for r in annotated} == labelled
    assert all(r["round_index"] == "1" and r["duration_ms"] == "900" and r["split"] == "pool" for r in annotated)
    uploaded = [r for r in rows if r["label_source"] == "upload"]
    assert len(uploaded) == 100 and {r["split"] for r in uploaded} == {"validation"}
    assert all(r["file_url"] == f"/api/v1/images/{r['image_id']}/file" for r in rows)
    exported_json = engineer.get(f"/projects/{pid}/export", params={"format": "json"}).json()
    assert exported_json["count"] == 120
    names_seen = {r["annotator"] for r in exported_json["data"] if r["label_source"] == "annotation"}
    assert names_seen == {annotator.get("/me").json()["name"]}
    lines = engineer.get(f"/projects/{pid}/export", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(line) for line in lines] == exported_json["data"]
    # ImageFolder layout: <split>/<class>/<id>.<ext>, the bytes as uploaded, and a labels.csv.
    folder = engineer.get(f"/projects/{pid}/export", params={"format": "imagefolder"})
    assert folder.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(folder.content))
    paths = [n for n in archive.namelist() if n != "labels.csv"]
    assert len(paths) == 120 and "labels.csv" in archive.namelist()
    some = next(r for r in exported_json["data"] if r["label_source"] == "annotation")
    path = f"pool/{some['label']}/{some['image_id']}.png"
    assert archive.read(path) == engineer.get(f"/images/{some['image_id']}/file").content
