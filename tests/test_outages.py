"""PostgreSQL or Redis briefly unavailable (a proxy in front of each is cut): the API answers 503 with a
clear message instead of 500, recovers by itself, and no acknowledged label is lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

from tests.conftest import LiveService, start_service, wait_for_round
from tests.factories import create_project, digits_zip, upload
from tests.proxy import FlakyProxy

pytestmark = pytest.mark.postgres


def _through(url: str, proxy: FlakyProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_db_factory: Callable[[], str],
    redis_db_factory: Callable[[], str],
) -> Iterator[dict]:
    postgres_url, redis_url = postgres_db_factory(), redis_db_factory()
    pg, rd = urlsplit(postgres_url), urlsplit(redis_url)
    pg_proxy = FlakyProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    redis_proxy = FlakyProxy(rd.hostname or "127.0.0.1", rd.port or 6379)
    env = {
        "SUGGESTLAB_DATABASE_URL": _through(postgres_url, pg_proxy),
        "SUGGESTLAB_BROKER_URL": _through(redis_url, redis_proxy),
    }
    service = start_service(tmp_path_factory.mktemp("outage"), env, separate_worker=True, name="outage")
    yield {"service": service, "pg": pg_proxy, "redis": redis_proxy}
    service.stop()
    pg_proxy.close()
    redis_proxy.close()


def _eventually(fn, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_database_outage_during_labelling(proxied: dict) -> None:
    service: LiveService = proxied["service"]
    uid, token = service.new_user("annotator")
    project = create_project(service.admin, members=[uid], vae_epochs=2, latent_dim=8)
    upload(service.admin, project["id"], [("p.zip", digits_zip(np.arange(60), with_labels=False))])
    created = service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 10})
    assert wait_for_round(service.admin, created.json()["id"])["status"] == "ready"
    annotator = service.client(token)
    items = annotator.post(f"/projects/{project['id']}/next", json={"limit": 10}).json()["data"]
    acknowledged = []
    for item in items[:4]:
        assert annotator.post(f"/images/{item['image_id']}/annotations", json={"label": "2"}).status_code == 201
        acknowledged.append(item["image_id"])

    proxied["pg"].cut()
    during = annotator.post(f"/images/{items[4]['image_id']}/annotations", json={"label": "2"})
    assert during.status_code == 503, during.text
    assert "database is unavailable" in during.json()["detail"]
    assert during.headers.get("retry-after") == "5"
    assert annotator.get(f"/projects/{project['id']}").status_code == 503
    time.sleep(3)
    proxied["pg"].restore()

    # Recovers by itself: the same request succeeds again without restarting anything.
    retried = _eventually(
        lambda: (
            annotator.post(f"/images/{items[4]['image_id']}/annotations", json={"label": "2"}).status_code in (200, 201)
        )
    )
    assert retried
    acknowledged.append(items[4]["image_id"])
    stored = {
        r["image_id"]
        for r in service.admin.get(f"/projects/{project['id']}/export", params={"format": "json"}).json()["data"]
    }
    assert stored == set(acknowledged)


def test_broker_outage_when_starting_a_round(proxied: dict) -> None:
    service: LiveService = proxied["service"]
    project = create_project(service.admin, vae_epochs=2, latent_dim=8)
    upload(service.admin, project["id"], [("p.zip", digits_zip(np.arange(100, 140), with_labels=False))])
    proxied["redis"].cut()
    try:
        refused = service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 5})
    finally:
        proxied["redis"].restore()
    assert refused.status_code == 503, refused.text
    assert "task queue is unavailable" in refused.json()["detail"]
    rounds = service.admin.get(f"/projects/{project['id']}/rounds").json()["data"]
    # The round that could not be sent is failed with the reason, not left queued forever.
    assert [r["status"] for r in rounds] == ["failed"] and "task queue" in rounds[0]["error"]
    # Members read round errors: the broker's address is not in them.
    assert "127.0.0.1" not in rounds[0]["error"] and "redis" not in rounds[0]["error"].lower()

    def start() -> dict | None:
        response = service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 5})
        return response.json() if response.status_code == 202 else None

    again = _eventually(start)
    assert again is not None
    assert wait_for_round(service.admin, again["id"], timeout=240)["status"] == "ready"


def test_redis_restart_during_a_round(proxied: dict) -> None:
    service: LiveService = proxied["service"]
    # No representation: a latent-space strategy trains a VAE, a phase long enough to cut Redis in.
    project = create_project(service.admin, vae_epochs=60, latent_dim=8, representation="none")
    upload(service.admin, project["id"], [("p.zip", digits_zip(np.arange(200, 500), with_labels=False))])
    created = service.admin.post(f"/projects/{project['id']}/rounds", json={"strategy": "typiclust", "batch_size": 8})
    deadline = time.monotonic() + 120
    while service.admin.get(f"/rounds/{created.json()['id']}").json()["phase"] != "training VAE":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proxied["redis"].cut()
    time.sleep(4)
    proxied["redis"].restore()
    state = wait_for_round(service.admin, created.json()["id"], timeout=240)
    assert state["status"] == "ready", state
    suggestions = service.admin.get(f"/rounds/{state['id']}/suggestions").json()["data"]
    assert len(suggestions) == 8 and len({s["image_id"] for s in suggestions}) == 8
