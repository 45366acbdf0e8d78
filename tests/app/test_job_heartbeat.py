"""A representation job's heartbeat comes from a thread of its own: a step that reports no progress
for longer than the stale limit (loading a big pool, a worker niced below a busy API) leaves the job
alive, and only a job whose heartbeat stopped is failed by the sweep (real SQLite database)."""

from __future__ import annotations

import time
from pathlib import Path

from app.core.db import session_scope, utcnow
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.projects.orm import Project
from app.representations.orm import Representation
from app.representations.service import fail_stale
from worker.jobs import Heartbeat
from worker.representation import representation_heartbeat


def _training_row(settings: Settings) -> int:
    with session_scope(settings) as session:
        project = Project(name="p", classes=["a", "b"], settings={})
        session.add(project)
        session.flush()
        row = Representation(project_id=project.id, status="training", started_at=utcnow(), heartbeat_at=utcnow())
        session.add(row)
        session.flush()
        return row.id


def _status(settings: Settings, representation_id: int) -> tuple[str, str | None]:
    with session_scope(settings) as session:
        row = session.get(Representation, representation_id)
        assert row is not None
        return row.status, row.error


def test_a_long_silent_step_keeps_its_job_and_a_stopped_heartbeat_fails_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, round_heartbeat_seconds=0.1)
    upgrade(settings)
    representation_id = _training_row(settings)
    with representation_heartbeat(representation_id, settings):
        time.sleep(1.5)  # three stale limits with no progress report
        with session_scope(settings) as session:
            assert fail_stale(session, stale_seconds=0.5) == 0
    assert _status(settings, representation_id) == ("training", None)
    time.sleep(1.0)  # the job's process is gone: nothing beats any more
    with session_scope(settings) as session:
        assert fail_stale(session, stale_seconds=0.5) == 1
    status, error = _status(settings, representation_id)
    assert status == "failed" and error is not None and "stopped reporting" in error


def test_a_beat_that_raises_does_not_stop_the_heartbeat() -> None:
    calls: list[float] = []

    def beat() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OSError("database is locked")

    with Heartbeat("flaky", beat, 0.05):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(calls) >= 3
    count = len(calls)
    time.sleep(0.2)
    assert len(calls) == count, "the heartbeat stops with its job"
