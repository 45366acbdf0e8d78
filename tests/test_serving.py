"""`suggestlab serve --processes N`: N API processes, each with its own socket on one port, so the
kernel spreads connections over all of them (uvicorn's shared socket let one process take a burst of
20 annotators); a process that dies is started again, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import _free_port, child_pids


def _wait_healthy(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("serve --processes did not answer /healthz")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established_on(port: int) -> dict[str, str]:
    """inode -> remote address of each established TCP connection whose local port is `port`."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                found[inode] = remote
    return found


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text().lower()


def test_processes_share_the_port_and_the_connections_and_come_back(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--processes", "2", "--no-worker"]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    clients: list[httpx.Client] = []
    try:
        _wait_healthy(port)
        api = child_pids(proc.pid)
        assert len(api) == 2, api
        # 40 annotators connect at once, each keeping its connection open (keep-alive).
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}") for _ in range(40)]
        for client in clients:
            assert client.get("/healthz").status_code == 200
        connections = _established_on(port)
        per_process = {pid: len(_socket_inodes(pid) & connections.keys()) for pid in api}
        assert sum(per_process.values()) == 40, per_process
        # By address hash: all 40 on one process would happen once in 2**39 runs.
        assert min(per_process.values()) >= 5, per_process

        # A process that dies is started again; the port keeps answering meanwhile.
        os.kill(api[0], signal.SIGKILL)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([p for p in child_pids(proc.pid) if _alive(p)]) < 2:
            time.sleep(0.3)
        replaced = [p for p in child_pids(proc.pid) if _alive(p)]
        assert len(replaced) == 2 and api[0] not in replaced, replaced

        for client in clients:
            client.close()
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in replaced), "an API process outlived serve"


def test_a_port_in_use_is_refused_not_shared(tmp_path: Path) -> None:
    # A second server on the port would otherwise join the first one's SO_REUSEPORT group and take
    # half its connections without a word.
    port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--processes", "2", "--no-worker"],
            env={**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr
