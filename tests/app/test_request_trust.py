"""Requests cannot steer the server: no settings from a body, and bodies bounded by what is received.

These run against their own live service with small limits; a chunked body counts how much of it the
server read before answering.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService, start_service
from tests.factories import create_project, png, upload

JSON_LIMIT = 64 * 1024
UPLOAD_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp("guarded")
    service = start_service(
        tmp,
        {
            "SUGGESTLAB_MAX_JSON_BYTES": str(JSON_LIMIT),
            "SUGGESTLAB_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "SUGGESTLAB_MAX_FILE_BYTES": str(512 * 1024),
            # Nothing here waits on a round or a representation: no worker processes to start.
            "SUGGESTLAB_EMBEDDED_WORKER": "false",
        },
        separate_worker=False,
        name="guarded",
    )
    yield service
    service.stop()


class Chunks:
    """A chunked request body that counts how much of it the server let the client send."""

    def __init__(self, total: int, piece: bytes = b"x" * 65536) -> None:
        self.total, self.piece, self.sent = total, piece, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            self.sent += len(self.piece)
            yield self.piece


def _post_unread(url: str, body: Chunks, headers: dict[str, str]) -> httpx.Response | None:
    """Posts the body; the server may answer and hang up before it is all sent."""
    try:
        return httpx.post(url, content=iter(body), headers=headers, timeout=60)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_no_route_reads_settings_or_any_body_on_a_read(guarded: LiveService) -> None:
    schema = httpx.get(guarded.base_url + "/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "head", "delete"):
                assert "requestBody" not in operation, f"{method.upper()} {path} takes a body"
            # No body anywhere may carry a settings field the client could fill.
            body = operation.get("requestBody", {}).get("content", {})
            text = str(body) + str(schema.get("components", {}).get("schemas", {}).get("Settings", ""))
            assert "s3_endpoint_url" not in text and "data_dir" not in text, f"{method.upper()} {path}"
    upload_body = schema["paths"]["/api/v1/projects/{project_id}/images"]["post"]["requestBody"]
    ref = upload_body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {"files", "split", "labels"}


def test_settings_in_a_body_change_nothing(guarded: LiveService) -> None:
    project = create_project(guarded.admin, classes=["a", "b"])
    image_id = upload(guarded.admin, project["id"], [("a.png", png(1))]).json()["accepted"][0]
    hostile = {
        "storage": "s3",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "data_dir": "/tmp/elsewhere",
        "settings": {"storage": "s3", "s3_endpoint_url": "http://127.0.0.1:9"},
    }
    _, outsider = guarded.new_user("engineer")
    for path in (f"/images/{image_id}/file", f"/images/{image_id}/thumbnail"):
        # A signed-in user of no project gets the same 404 whatever the body says.
        assert guarded.client(outsider).request("GET", path, json=hostile).status_code == 404
        served = guarded.admin.request("GET", path, json=hostile)
        assert served.status_code == 200 and served.content[:4] == b"\x89PNG"
    # The next upload still lands in the local folder, not at the "attacker's" endpoint.
    second = guarded.admin.post(
        f"/projects/{project['id']}/images",
        files=[("files", ("b.png", png(2)))],
        data={"split": "pool", "storage": "s3", "s3_endpoint_url": "http://127.0.0.1:9"},
    )
    assert second.status_code == 200 and len(second.json()["accepted"]) == 1
    images = guarded.data_dir / "objects" / "projects" / str(project["id"]) / "images"
    stored = [p for p in images.rglob("*") if p.is_file()]
    assert len(stored) == 2
    assert not Path("/tmp/elsewhere").exists()


def test_chunked_json_is_cut_off_at_the_limit_without_growing_memory(guarded: LiveService) -> None:
    pid = guarded.processes[0].pid
    before = _rss_kib(pid)
    body = Chunks(64 * 1024 * 1024)
    response = _post_unread(guarded.base_url + "/api/v1/session", body, {"content-type": "application/json"})
    # Past the limit the rest is drained and dropped, never held.
    assert response is not None and response.status_code == 413
    assert str(JSON_LIMIT) in response.json()["detail"]
    assert _rss_kib(pid) - before < 32 * 1024
    declared = httpx.post(
        guarded.base_url + "/api/v1/session",
        content=b"{}" + b" " * (JSON_LIMIT + 10),
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413


@pytest.mark.parametrize("token", [None, "sl_not-a-token"])
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(guarded: LiveService, token: str | None) -> None:
    project = create_project(guarded.admin, classes=["a", "b"])
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = Chunks(400 * 1024 * 1024)
    response = _post_unread(f"{guarded.base_url}/api/v1/projects/{project['id']}/images", body, headers)
    # Answered before the body was read: at most what the sockets' buffers hold went over the wire.
    assert body.sent < 32 * 1024 * 1024
    if response is not None:
        assert response.status_code == 401
        assert response.json()["detail"] == "missing or invalid bearer token"


def test_a_non_admin_upload_is_refused_before_its_body_is_read(guarded: LiveService) -> None:
    user_id, annotator = guarded.new_user("annotator")
    project = create_project(guarded.admin, members=[user_id], classes=["a", "b"])
    body = Chunks(400 * 1024 * 1024)
    headers = {"content-type": "multipart/form-data; boundary=xyz", "authorization": f"Bearer {annotator}"}
    response = _post_unread(f"{guarded.base_url}/api/v1/projects/{project['id']}/images", body, headers)
    assert body.sent < 32 * 1024 * 1024
    if response is not None:
        assert response.status_code == 403


def test_an_admin_upload_over_the_limit_is_413_and_stores_nothing(guarded: LiveService) -> None:
    project = create_project(guarded.admin, classes=["a", "b"])
    boundary = b"xyz"

    def body() -> Iterator[bytes]:
        yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        yield from Chunks(UPLOAD_LIMIT * 3)
        yield b"\r\n--" + boundary + b"--\r\n"

    response = httpx.post(
        f"{guarded.base_url}/api/v1/projects/{project['id']}/images",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=xyz", "authorization": f"Bearer {guarded.admin_token}"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert guarded.admin.get(f"/projects/{project['id']}/images").json()["count"] == 0
    assert not (guarded.data_dir / "objects" / "projects" / str(project["id"])).exists()


def test_the_embedded_broker_keeps_its_files_under_the_data_folder(guarded: LiveService) -> None:
    # The service has run a worker by now; kombu's default would have made ./control here.
    assert (guarded.data_dir / "broker" / "control").is_dir()
    assert not (Path.cwd() / "control").exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/images/99999999999999999999", None),
        ("GET", "/projects/99999999999999999999/images", None),
        ("GET", "/rounds/-1", None),
        ("GET", "/projects/1/latent-map?limit=-5", None),
        ("POST", "/projects/1/members", {"user_id": 99999999999999999999}),
        ("DELETE", "/tokens/99999999999999999999", None),
    ],
)
def test_out_of_range_integers_are_422_not_500(guarded: LiveService, method: str, path: str, body: object) -> None:
    response = guarded.admin.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
