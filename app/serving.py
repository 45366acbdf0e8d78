"""The processes `suggestlab serve` starts and watches: embedded workers, and API processes on one
port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's `--workers` shares one listening socket among its processes, and asyncio accepts every
connection waiting when it wakes: 20 annotators who connect in the same second mostly land on
whichever process woke first, and keep-alive keeps them there. Measured on the 2-core machine with
2 processes (benchmarks/results/api_load.md): one process at 43% CPU, the other at 3%, so requests
queued behind each other in one interpreter while half the capacity idled. With a socket per
process the kernel spreads new connections over the processes by address hash.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from app.core.settings import Settings


def child_env(settings: Settings) -> dict[str, str]:
    # The child must resolve exactly the same database, broker and data folder as this process.
    return {
        **os.environ,
        "SUGGESTLAB_DATA_DIR": str(settings.data_dir),
        "SUGGESTLAB_DATABASE_URL": settings.database_url,
        "SUGGESTLAB_BROKER_URL": settings.broker_url,
    }


def die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies, so no worker is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_processes(workers: list[tuple[subprocess.Popen[bytes], float]]) -> None:
    """Stops each process (SIGTERM, its graceful shutdown), SIGKILLing it after its grace (seconds)."""
    # SIGTERM is Celery's warm shutdown (the running round finishes or, with acks_late, is
    # redelivered) and uvicorn's graceful one (requests in flight finish). All are told at once: an
    # idle worker takes several seconds to wind down (its loop wakes every 2 s), and one after
    # another those seconds add up.
    running = [(worker, grace) for worker, grace in workers if worker.poll() is None]
    for worker, _ in running:
        worker.send_signal(signal.SIGTERM)
    told = time.monotonic()
    for worker, grace in running:
        try:
            worker.wait(max(0.0, told + grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port yet. Asked before the API processes start: a socket with
    SO_REUSEPORT would join another server already on the port (a second `suggestlab serve`, say)
    and silently share its connections, where a plain bind is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port that other processes of this user may bind as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve_on_reuse_port(host: str, port: int, log_level: str) -> None:
    """This process's share of the API: uvicorn on a socket of its own."""
    import uvicorn

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config("app.main:create_app", factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


class Supervised:
    """Child processes by name, watched: one that exits on its own (a crash, the OOM killer) is
    started again, after a growing pause (up to a minute) if it keeps dying at start-up."""

    def __init__(self, names: Sequence[str], *, what: Callable[[str], str], check_every: float) -> None:
        self._what = what
        self._check_every = check_every
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.processes = {name: self.start(name) for name in names}
        self._started = dict.fromkeys(names, time.monotonic())
        self._pause = dict.fromkeys(names, 1.0)
        self._watch = threading.Thread(target=self._watch_loop, name="process-watch", daemon=True)
        self._watch.start()

    def start(self, name: str) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self._check_every):
            for name in list(self.processes):
                with self._lock:
                    if self._stopping.is_set():
                        return
                    code = self.processes[name].poll()
                    if code is None:
                        continue
                    # One that ran a while gets a quick restart; one that dies at once backs off.
                    lived = time.monotonic() - self._started[name]
                    pause = 1.0 if lived > 60 else min(60.0, self._pause[name] * 2)
                    self._pause[name] = pause
                print(
                    f"suggestlab: {self._what(name)} exited (code {code}); starting it again in {pause:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if self._stopping.wait(pause):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.processes[name] = self.start(name)
                    self._started[name] = time.monotonic()

    def stopping(self) -> None:
        """No restart from now on; the caller then stops the processes."""
        with self._lock:
            self._stopping.set()


class ApiProcesses(Supervised):
    """`processes` API processes on one port; `stop` ends them all gracefully."""

    def __init__(
        self, settings: Settings, *, host: str, port: int, log_level: str, processes: int, check_every: float = 1.0
    ) -> None:
        self._command = [sys.executable, "-m", "app.cli", "serve", "--host", host, "--port", str(port)]
        self._command += ["--log-level", log_level, "--no-worker", "--reuse-port"]
        # The parent migrated the database already; N children doing it at once would race.
        self._env = {**child_env(settings), "SUGGESTLAB_AUTO_MIGRATE": "false"}
        self._preexec = die_with_parent if sys.platform.startswith("linux") else None
        names = [str(i + 1) for i in range(processes)]
        super().__init__(names, what=lambda name: f"API process {name}", check_every=check_every)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._command, env=self._env, preexec_fn=self._preexec)

    def wait(self) -> None:
        """Blocks until `stop` (from another thread or a signal handler's exception)."""
        while not self._stopping.wait(1.0):
            pass

    def stop(self, grace: float = 30.0) -> None:
        self.stopping()
        stop_processes([(process, grace) for process in self.processes.values()])
