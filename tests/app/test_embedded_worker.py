"""The embedded broker and worker keep going: a half-written or corrupt message file no longer ends
the worker (kombu's filesystem transport let a worker read a message before it was written, and
the JSON error stopped it for good), and a worker that dies is started again by `serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kombu import Connection

from app.core.broker import TRANSPORT
from tests.conftest import LiveService, child_pids, descendants, start_service, wait_for_round
from tests.factories import create_project, digits_zip, upload, wait_representation_done

_WRITER = """
import sys
from kombu import Connection
folder, control, offset, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": control}
with Connection("filesystem://", transport="%s", transport_options=options) as conn:
    queue = conn.SimpleQueue("training")
    for n in range(offset, offset + count):
        queue.put({"n": n, "padding": "x" * 4000})
"""


def test_messages_written_while_a_worker_polls_arrive_whole_and_once(tmp_path: Path) -> None:
    folder, control = tmp_path / "queue", tmp_path / "control"
    folder.mkdir()
    count, writers = 1000, 2
    received: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def consume() -> None:
        options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(control)}
        options["polling_interval"] = 0.0
        with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as conn:
            queue = conn.SimpleQueue("training")
            while len(received) < count * writers and not stop.is_set():
                try:
                    message = queue.get(timeout=0.01)
                except queue.Empty:
                    continue
                except BaseException as exc:  # any failure here is what the test looks for
                    errors.append(exc)
                    continue
                received.append(message.payload["n"])
                message.ack()

    consumer = threading.Thread(target=consume)
    consumer.start()
    # Writers in other processes, as the API and a worker are: the race needs real parallelism.
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER % TRANSPORT, str(folder), str(control), str(w * count), str(count)]
        )
        for w in range(writers)
    ]
    # Meanwhile look at every message file the moment it is visible: each must be whole already.
    # (kombu's own transport: 10-11% of them empty or cut short, benchmarks/results/broker_race.md.)
    peeked = incomplete = 0
    while any(p.poll() is None for p in producers):
        for name in os.listdir(folder):
            if not name.endswith(".training.msg") or name.startswith("."):
                continue
            try:
                raw = (folder / name).read_bytes()
            except FileNotFoundError:
                continue  # the consumer took it first
            peeked += 1
            try:
                json.loads(raw)
            except ValueError:
                incomplete += 1
    assert [p.returncode for p in producers] == [0] * writers
    consumer.join(60)
    stop.set()
    assert errors == []
    assert incomplete == 0 and peeked > 0
    assert sorted(received) == list(range(count * writers))
    assert not any(folder.iterdir()), "every message was taken"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    # A service of its own: this module kills its workers. Lost jobs are noticed within seconds here.
    env = {
        "SUGGESTLAB_REPRESENTATION_STALE_SECONDS": "6",
        "SUGGESTLAB_ROUND_STALE_SECONDS": "8",
        "SUGGESTLAB_ROUND_HEARTBEAT_SECONDS": "1",
    }
    service = start_service(tmp_path_factory.mktemp("embedded"), env, separate_worker=False, name="embedded")
    yield service
    service.stop()


def _round_finishes(service: LiveService) -> None:
    eng_id, eng = service.new_user("engineer")
    project = create_project(service.admin, members=[eng_id], representation="none")
    upload(service.admin, project["id"], [("pool.zip", digits_zip(np.arange(3000, 3040), with_labels=False))])
    engineer = service.client(eng)
    created = engineer.post(f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 5})
    assert created.status_code == 202, created.text
    assert wait_for_round(engineer, created.json()["id"], timeout=120)["status"] == "ready"


def _worker_pid(service: LiveService, queues: bytes = b"training,light") -> int:
    serve = service.processes[0].pid
    for pid in child_pids(serve):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if queues in command:
            return pid
    raise AssertionError(f"no {queues.decode()} worker among the children of {serve}")


def test_a_corrupt_message_file_is_set_aside_and_rounds_go_on(service: LiveService) -> None:
    queue = service.data_dir / "broker" / "queue"
    queue.mkdir(parents=True, exist_ok=True)  # the worker may still be starting
    # What the race left behind, and what a full disk or a stray file would: an empty message and
    # one that is not JSON, both for the queue the round worker consumes.
    (queue / "1_empty.training.msg").write_bytes(b"")
    (queue / "2_garbage.training.msg").write_bytes(b"\x00{not json")
    _round_finishes(service)
    rejected = service.data_dir / "broker" / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == ["1_empty.training.msg", "2_garbage.training.msg"]


def test_a_worker_that_dies_is_started_again(service: LiveService) -> None:
    first = _worker_pid(service)
    subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(first)], check=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            second = _worker_pid(service)
            if second != first:
                break
        except AssertionError:
            pass
        assert time.monotonic() < deadline, "the round worker was not started again"
        time.sleep(0.5)
    _round_finishes(service)
    assert "exited (code -9); starting it again" in service.logs[0].read_text()


def test_a_representation_whose_worker_died_does_not_block_the_next(service: LiveService) -> None:
    eng_id, eng = service.new_user("engineer")
    engineer = service.client(eng)
    project = create_project(service.admin, members=[eng_id])  # a pool upload queues a representation
    upload(service.admin, project["id"], [("pool.zip", digits_zip(np.arange(4000, 4064), with_labels=False))])
    lost = wait_representation_done(engineer, project["id"], {"training"}, timeout=120)
    background = _worker_pid(service, b"background,simulations")
    for pid in [*descendants(background), background]:
        os.kill(pid, signal.SIGKILL)
    # Its job stops reporting: the API's sweeper marks it failed instead of "training" for ever ...
    failed = wait_representation_done(engineer, project["id"], {"failed"}, timeout=60)
    assert failed["id"] == lost["id"] and "stopped reporting" in failed["error"]
    # ... so an engineer can ask for a new one, which the restarted worker trains.
    again = engineer.post(f"/projects/{project['id']}/representations")
    assert again.status_code == 202, again.text
    ready = wait_representation_done(engineer, project["id"], timeout=120)
    assert ready["id"] == again.json()["id"] and ready["status"] == "ready", ready


def _niceness(pid: int) -> int:
    # /proc/<pid>/stat: field 19 is the nice value; the command name (field 2) may hold spaces.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_workers_run_below_the_api_and_the_background_worker_below_rounds(service: LiveService) -> None:
    # Training takes what the API leaves on a shared machine: the round worker (and the pool
    # processes it forks) at `worker_nice` (5), the representation/simulation worker 10 further.
    serve = service.processes[0].pid
    assert _niceness(serve) == 0
    rounds, background = _worker_pid(service), _worker_pid(service, b"background,simulations")
    assert _niceness(rounds) == 5 and _niceness(background) == 15
    for pid in descendants(rounds):
        assert _niceness(pid) == 5


def test_pool_processes_are_forked_with_torch_already_loaded(service: LiveService) -> None:
    # The worker imports the training stack before Celery forks its pool, so a pool process (the
    # first, or one that replaces a child the OOM killer took) starts a round without importing torch.
    rounds = _worker_pid(service)
    deadline = time.monotonic() + 60
    while not (pool := descendants(rounds)):
        assert time.monotonic() < deadline, "the round worker forked no pool process"
        time.sleep(0.2)
    for pid in pool:
        assert "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text(), pid
