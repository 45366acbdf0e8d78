"""The README's demo command end to end: builds the project, round 1 gets ready, the printed tokens
work, and Ctrl-C (SIGINT) stops the server and its worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port
from tests.conftest import child_pids as _children


def _start_demo(tmp_path: Path, port: int, extra_env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp_path / "demo"), "PYTHONUNBUFFERED": "1", **extra_env}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--dataset", "digits", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop_demo(proc: subprocess.Popen[str]) -> None:
    # Ctrl-C, as a user stops it; a demo that does not stop within a minute is killed and fails the test.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_demo_builds_project_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start_demo(tmp_path, port, {}, "--batch-size", "10")
    output: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(output)
        assert f"running at http://127.0.0.1:{port}" in text, text[-3000:]
        # A quiet start: no Celery banner, no warnings from libraries, just the demo's own lines.
        assert "[config]" not in text and "Warning" not in text and "INFO" not in text, text[:3000]
        accepted = dict(re.findall(r"^\s+(pool|validation|test): (\d+) accepted", text, re.MULTILINE))
        assert int(accepted["pool"]) > 1400 and int(accepted["validation"]) > 170, text
        tokens = dict(re.findall(r"^\s+(admin|engineer|annotator)\s+(sl_\S+)$", text, re.MULTILINE))
        assert set(tokens) == {"admin", "engineer", "annotator"}
        api = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(50):
            try:
                projects = httpx.get(f"{api}/projects", headers={"Authorization": f"Bearer {tokens['annotator']}"})
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        project = projects.json()["data"][0]
        assert project["name"] == "Digits demo"
        # The page is served before round 1 is done; the worker finishes it meanwhile.
        engineer = {"Authorization": f"Bearer {tokens['engineer']}"}
        first = httpx.get(f"{api}/projects/{project['id']}/rounds", headers=engineer).json()["data"][0]
        deadline = time.monotonic() + 300
        while (state := httpx.get(f"{api}/rounds/{first['id']}", headers=engineer).json())["status"] != "ready":
            assert state["status"] in ("queued", "training", "selecting") and time.monotonic() < deadline, state
            time.sleep(0.5)
        batch = httpx.post(
            f"{api}/projects/{project['id']}/next",
            json={"limit": 3},
            headers={"Authorization": f"Bearer {tokens['annotator']}"},
        ).json()
        assert len(batch["data"]) == 3
        worker_pids = _children(proc.pid)
        assert worker_pids, "the demo should run an embedded worker process"
    finally:
        _stop_demo(proc)
    assert proc.returncode == 0, "".join(output)[-2000:]
    for pid in worker_pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_serve_stops_its_embedded_worker_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        workers = _children(proc.pid)
        assert workers, "serve without configuration should start an embedded worker"
        proc.terminate()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    alive = [
        pid
        for pid in workers
        if Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert alive == [], "the embedded worker outlived serve"


def test_demo_serves_its_page_before_round_one_finishes(tmp_path: Path) -> None:
    # With no worker, round 1 can never finish: the demo must still print its URL and serve the page,
    # and the round must still be waiting (and say so) while it does.
    port = _free_port()
    proc = _start_demo(tmp_path, port, {"SUGGESTLAB_EMBEDDED_WORKER": "false"})
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(output)
        assert "round 1: queued" in text, text[-3000:]
        tokens = dict(re.findall(r"^\s+(admin|engineer|annotator)\s+(sl_\S+)$", text, re.MULTILINE))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                page = httpx.get(base + "/")
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert page.status_code == 200 and "<html" in page.text.lower()
        engineer = {"Authorization": f"Bearer {tokens['engineer']}"}
        project = httpx.get(f"{base}/api/v1/projects", headers=engineer).json()["data"][0]
        rounds = httpx.get(f"{base}/api/v1/projects/{project['id']}/rounds", headers=engineer).json()["data"]
        assert [r["status"] for r in rounds] == ["queued"] and "waiting for a worker" in rounds[0]["waiting_behind"]
        annotator = {"Authorization": f"Bearer {tokens['annotator']}"}
        waiting = httpx.post(f"{base}/api/v1/projects/{project['id']}/next", json={"limit": 1}, headers=annotator)
        assert waiting.json()["data"] == [] and "round 1 is queued" in waiting.json()["message"]
    finally:
        _stop_demo(proc)


_AUTOGROUP = Path("/proc/self/autogroup")
_READ_AUTOGROUP = (
    "from app.cli import lower_priority; from pathlib import Path; "
    "lower_priority(7); print(Path('/proc/self/autogroup').read_text().strip())"
)


def _autogroup_after_lowering(new_session: bool) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _READ_AUTOGROUP], capture_output=True, text=True, start_new_session=new_session
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_worker_leading_its_own_session_lowers_its_autogroup() -> None:
    # With autogroup on, Linux shares the CPU between sessions before niceness counts, so a worker
    # started as its own session (a service manager, setsid) would take as much as the API.
    if not _AUTOGROUP.exists():
        pytest.skip("this kernel has no autogroup")
    assert _autogroup_after_lowering(new_session=True).endswith(" nice 7")
    # A worker inside someone else's session (serve's embedded workers) leaves that session's
    # autogroup alone: its niceness already counts there, and the other members are not its own.
    # The kernel prints nothing for the default autogroup (a container's init session), which the
    # comparison covers too.
    assert _autogroup_after_lowering(new_session=False) == _AUTOGROUP.read_text().strip()


def test_simulate_runs_on_a_folder_and_answers_mistakes_in_one_line(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    from tests.factories import mnist

    data = mnist()
    folder = tmp_path / "digits"
    folder.mkdir()
    rows = ["filename,label"]
    for i in range(0, 5000, 50):  # 100 images, 10 per class
        PILImage.fromarray(data.images[i]).save(folder / f"d{i}.png")
        rows.append(f"d{i}.png,{data.classes[data.labels[i]]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")

    def simulate(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.cli", "simulate", "--learner", "cnn", "--no-full-pool", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    out = tmp_path / "out"
    done = simulate("--dataset", str(folder), "--strategies", "random", "--initial", "10", "--batch", "10",
                    "--rounds", "1", "--seeds", "1", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0] == "strategy,seed,round,labels,accuracy,seconds"
    assert [row.split(",")[3] for row in lines[1:]] == ["10", "20"]

    (folder / "broken.png").write_bytes(b"not a png")
    mistakes = [
        (["--dataset", str(tmp_path / "nowhere")], "is neither a bundled dataset"),
        (["--dataset", str(folder), "--strategies", "nope"], "unknown strategy 'nope'"),
        (["--dataset", str(folder), "--params", "{bad"], "--params is not JSON"),
        (["--dataset", str(folder), "--strategies", ","], "names no strategy"),
    ]
    for args, message in mistakes:
        answer = simulate(*args)
        assert answer.returncode == 1 and message in answer.stderr and "Traceback" not in answer.stderr, answer.stderr
    listed_wrong = [("gone.png,3", "'gone.png', which is not a file"), ("broken.png,3", "not a readable image")]
    for listed, message in listed_wrong:
        (folder / "labels.csv").write_text("\n".join([*rows, listed]) + "\n")
        answer = simulate("--dataset", str(folder), "--strategies", "random")
        assert answer.returncode == 1 and message in answer.stderr and "Traceback" not in answer.stderr, answer.stderr


def test_commands_answer_bad_arguments_and_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.cli", *args]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=120)

    for args, message in (
        (["serve", "--port", "99999"], "99999 is not a port (1-65535)"),
        (["demo", "--port", "http"], "'http' is not a port number"),
        (["worker", "--queues", "training,nope"], "unknown queue 'nope'; choose from training, light"),
    ):
        answer = run(*args)
        assert answer.returncode == 2 and message in answer.stderr, answer.stderr
    # Nothing listens on port 1: every command that needs the database says so, and hides the password.
    nowhere = {"SUGGESTLAB_DATABASE_URL": "postgresql+psycopg://someone:s3cret@127.0.0.1:1/suggestlab"}
    for args in (["create-user", "--name", "eve", "--role", "admin"], ["db", "upgrade"]):
        answer = run(*args, **nowhere)
        assert answer.returncode == 1, answer.stderr
        assert "cannot use the database at postgresql+psycopg://someone:***@127.0.0.1:1/suggestlab" in answer.stderr
        assert "s3cret" not in answer.stderr and "Traceback" not in answer.stderr, answer.stderr
