"""Rounds survive a worker killed with SIGKILL mid-round: on SQLite with the embedded broker (the pool
child dies, the message is redelivered) and on PostgreSQL + Redis (the whole worker dies, the API's
sweeper notices the silent heartbeat and re-sends the round to a new worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ARTIFACTS, LiveService, descendants, start_service, wait_for_round
from tests.conftest import child_pids as _children
from tests.factories import create_project, digits_zip, upload

FAST_FAILURE = {"SUGGESTLAB_ROUND_HEARTBEAT_SECONDS": "1", "SUGGESTLAB_ROUND_STALE_SECONDS": "6"}


def _slow_project(service: LiveService) -> int:
    # 25 VAE epochs (about 5 s here) keep the round in its "training VAE" phase long enough to kill it; with no
    # learned representation the task model is a CNN, slow enough to be caught training too.
    project = create_project(service.admin, vae_epochs=25, latent_dim=8, representation="none")
    upload(service.admin, project["id"], [("pool.zip", digits_zip(np.arange(300), with_labels=False))])
    return project["id"]


def _wait_for_phase(service: LiveService, round_id: int, phase: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = service.admin.get(f"/rounds/{round_id}").json()
        if state["phase"] == phase:
            return
        assert state["status"] in ("queued", "training", "selecting"), state
        time.sleep(0.2)
    raise AssertionError(f"round {round_id} never reached phase {phase!r}")


def _assert_finished_once(service: LiveService, round_id: int, batch: int, timeout: float = 300) -> dict:
    state = wait_for_round(service.admin, round_id, timeout=timeout)
    assert state["status"] == "ready", state
    assert state["attempts"] == 2, state
    suggestions = service.admin.get(f"/rounds/{round_id}/suggestions").json()["data"]
    assert len(suggestions) == batch
    assert len({s["image_id"] for s in suggestions}) == batch
    assert [s["rank"] for s in suggestions] == list(range(1, batch + 1))
    return state


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    # The sweeper waits 10 minutes here: what puts the round back is the worker itself, which calls a
    # dead pool child lost after 1 s (worker_lost_wait) and redelivers its message.
    env = {**FAST_FAILURE, "SUGGESTLAB_ROUND_STALE_SECONDS": "600"}
    service = start_service(tmp_path_factory.mktemp("faults"), env, separate_worker=False, name="faults")
    yield service
    service.stop()


@pytest.mark.parametrize("phase", ["training VAE", "training task model"])
def test_killed_pool_process_round_is_redelivered(embedded: LiveService, phase: str) -> None:
    pid = _slow_project(embedded)
    if phase == "training task model":
        # Labels give the round a task model to train; an admin may label any pool image.
        images = embedded.admin.get(f"/projects/{pid}/images", params={"per_page": 60}).json()["data"]
        for i, image in enumerate(images):
            assert (
                embedded.admin.post(f"/images/{image['id']}/annotations", json={"label": str(i % 10)}).status_code
                == 201
            )
    round_id = embedded.admin.post(f"/projects/{pid}/rounds", json={"strategy": "entropy", "batch_size": 7}).json()[
        "id"
    ]
    _wait_for_phase(embedded, round_id, phase)
    serve = embedded.processes[0]
    # serve starts a round worker and a background (representation) worker; rounds run in the first.
    # Only its busy pool process is killed, as the OOM killer would: an idle one waits on the pool's
    # task queue holding its read lock, and killed there it leaves billiard's pool unable to stop
    # (the worker then needs SIGKILL at shutdown; a known limit of the embedded broker's pool).
    round_worker = [pid for pid in _children(serve.pid) if b"training" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    pool = [child for worker_main in round_worker for child in _children(worker_main)]
    assert pool, "the worker should run its task in a pool child"
    for child in pool:
        os.kill(child, signal.SIGKILL)
    # Well before the sweeper's 600 s: the worker redelivered the round itself.
    _assert_finished_once(embedded, round_id, batch=7, timeout=240)


@pytest.mark.postgres
def test_whole_worker_killed_round_is_resent_by_the_sweeper(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_db_factory: Callable[[], str],
    redis_db_factory: Callable[[], str],
) -> None:
    env = {
        **FAST_FAILURE,
        "SUGGESTLAB_DATABASE_URL": postgres_db_factory(),
        "SUGGESTLAB_BROKER_URL": redis_db_factory(),
    }
    service = start_service(tmp_path_factory.mktemp("faults-pg"), env, separate_worker=True, name="faults-pg")
    try:
        pid = _slow_project(service)
        round_id = service.admin.post(
            f"/projects/{pid}/rounds", json={"strategy": "typiclust", "batch_size": 6}
        ).json()["id"]
        _wait_for_phase(service, round_id, "training VAE")
        worker = service.processes[1]
        for victim in [*descendants(worker.pid), worker.pid]:
            os.kill(victim, signal.SIGKILL)
        worker.wait(10)
        log = (ARTIFACTS / "faults-pg-worker2.log").open("wb")
        service.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--log-level", "warning"],
                env=service.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        state = _assert_finished_once(service, round_id, batch=6)
        assert state["error"] is None
    finally:
        service.stop()
