"""Large uploads report progress: with `progress=true` the upload answers in JSON lines, one per run
of images as it is committed, then the report; a client that drops the connection keeps what was
reported."""

from __future__ import annotations

import json

import httpx
import numpy as np

from tests.conftest import LiveService
from tests.factories import create_project, digits_zip


def _stream(service: LiveService, project_id: int, archive: bytes) -> httpx.Response:
    client = httpx.Client(base_url=service.base_url + "/api/v1", timeout=120)
    request = client.build_request(
        "POST",
        f"/projects/{project_id}/images",
        params={"progress": "true"},
        files={"files": ("pool.zip", archive, "application/zip")},
        headers={"Authorization": f"Bearer {service.admin_token}"},
    )
    return client.send(request, stream=True)


def _count(service: LiveService, project_id: int) -> int:
    return service.admin.get(f"/projects/{project_id}/images", params={"per_page": 1}).json()["count"]


def test_an_upload_streams_its_progress_run_by_run(sqlite_service: LiveService) -> None:
    project = create_project(sqlite_service.admin, representation="none")
    response = _stream(sqlite_service, project["id"], digits_zip(np.arange(0, 2100), with_labels=False))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.iter_lines() if line]
    progress, last = lines[:-1], lines[-1]
    assert [p["processed"] for p in progress] == [1024, 2048, 2100]
    assert [p["accepted"] for p in progress] == [1024, 2048, 2100]
    assert last["done"] is True and len(last["report"]["accepted"]) == 2100
    assert _count(sqlite_service, project["id"]) == 2100


def test_a_dropped_upload_keeps_the_runs_it_was_told_about(sqlite_service: LiveService) -> None:
    project = create_project(sqlite_service.admin, representation="none")
    archive = digits_zip(np.arange(0, 2100), with_labels=False)
    response = _stream(sqlite_service, project["id"], archive)
    first = json.loads(next(response.iter_lines()))
    response.close()  # the client goes away after the first run
    assert first["accepted"] == 1024
    assert _count(sqlite_service, project["id"]) >= 1024
    # Sending the same archive again stores the rest and reports what was kept as duplicates.
    again = sqlite_service.admin.post(
        f"/projects/{project['id']}/images", files={"files": ("pool.zip", archive, "application/zip")}
    ).json()
    assert len(again["duplicates"]) >= 1024
    assert len(again["accepted"]) + len(again["duplicates"]) == 2100
    assert _count(sqlite_service, project["id"]) == 2100
