"""Real services for the tests: a live `suggestlab serve` (uvicorn + a Celery worker process) on
SQLite, and the same on PostgreSQL + Redis, each in a throwaway database / Redis db number.

PostgreSQL and Redis are found through SUGGESTLAB_TEST_POSTGRES_URL / SUGGESTLAB_TEST_REDIS_URL
(defaults: the local services). Missing services skip those tests, except under CI=true, where
they fail the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

POSTGRES_URL = os.environ.get("SUGGESTLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SUGGESTLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# One TLS context for every test client: httpx builds one per client otherwise (about 40 ms of CPU
# loading the CA bundle), and polling loops make a client per request. The services speak plain HTTP.
_TLS = ssl.create_default_context()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def descendants(pid: int) -> list[int]:
    found = []
    for child in child_pids(pid):
        found += [child, *descendants(child)]
    return found


def service_unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({exc}); tests that need it cannot run"
    if IN_CI:
        pytest.fail(message + " (CI=true: failing instead of skipping)")
    pytest.skip(message)


@dataclass
class LiveService:
    """A running SuggestLab: its URL, its environment, and an admin token."""

    base_url: str
    env: dict[str, str]
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    admin_token: str = ""
    logs: list[Path] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url + "/api/v1", headers=headers, timeout=60, verify=_TLS)

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def new_user(self, role: str, name: str | None = None) -> tuple[int, str]:
        """Creates a user through the API and returns (id, token)."""
        name = name or f"{role}-{secrets.token_hex(4)}"
        user = self.admin.post("/users", json={"name": name, "role": role})
        assert user.status_code == 201, user.text
        token = self.admin.post(f"/users/{user.json()['id']}/tokens")
        assert token.status_code == 201, token.text
        return user.json()["id"], token.json()["token"]

    def stop(self, grace: float = 1.0) -> None:
        """Ends the service at a test's end: `grace` seconds to stop, then SIGKILL for what is left.
        A graceful stop would wait out a worker's running job (10-30 s a service); the tests that
        are about stopping (tests/test_cli.py) run serve themselves."""
        family = [pid for proc in self.processes if proc.poll() is None for pid in descendants(proc.pid)]
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # A worker still busy after its server gave up would go on training beside later tests.
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_service(tmp: Path, extra_env: dict[str, str], *, separate_worker: bool, name: str) -> LiveService:
    port = _free_port()
    env = {
        **os.environ,
        "SUGGESTLAB_DATA_DIR": str(tmp / "data"),
        "SUGGESTLAB_ENVIRONMENT": "test",
        "SUGGESTLAB_MAX_IMAGE_PIXELS": "1000000",
        # Every pool upload starts a representation job; in tests it trains for seconds, not minutes.
        "SUGGESTLAB_REPRESENTATION_TIME_BUDGET_S": "8",
        # A job waits for the pool to stop arriving; 2 s covers back-to-back test uploads, where
        # the default 10 s would add its wait to every test that waits for a representation.
        "SUGGESTLAB_REPRESENTATION_SETTLE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    service = LiveService(base_url=f"http://127.0.0.1:{port}", env=env, data_dir=tmp / "data")
    service.admin_token = service.cli("create-user", "--name", "root-admin", "--role", "admin")
    ARTIFACTS.mkdir(exist_ok=True)
    commands = [("serve", [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"])]
    if separate_worker:
        # Rounds only, as compose's `worker` runs them: representation jobs wait in their queue, so
        # these tests' rounds never queue behind one.
        worker = [sys.executable, "-m", "app.cli", "worker", "--queues", "training,light", "--log-level", "warning"]
        commands.append(("worker", worker))
    for label, command in commands:
        log = ARTIFACTS / f"{name}-{label}.log"
        service.logs.append(log)
        with log.open("wb") as fh:
            service.processes.append(subprocess.Popen(command, env=env, stdout=fh, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(service.base_url + "/healthz", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        if any(p.poll() is not None for p in service.processes):
            break
        time.sleep(0.3)
    service.stop()
    raise RuntimeError("service did not start: " + "\n".join(p.read_text()[-3000:] for p in service.logs))


@pytest.fixture(scope="session")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = start_service(tmp_path_factory.mktemp("sqlite"), {}, separate_worker=False, name="sqlite")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def idle_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A service with no worker: rounds and simulations stay queued. The authentication-failure limit is
    raised for the fuzzer, whose random sign-ins all fail."""
    env = {"SUGGESTLAB_EMBEDDED_WORKER": "false", "SUGGESTLAB_AUTH_FAILURE_LIMIT": "100000/minute"}
    service = start_service(tmp_path_factory.mktemp("idle"), env, separate_worker=False, name="idle")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres_db_factory() -> Iterator[Callable[[], str]]:
    """Makes throwaway PostgreSQL databases on demand (one per live service, so no two services ever
    share rows or a queue); all are dropped at the end of the session."""
    import psycopg

    base = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(base, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        service_unavailable("PostgreSQL", exc)
    created: list[str] = []

    def make() -> str:
        name = f"suggestlab_test_{secrets.token_hex(4)}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    with psycopg.connect(base, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_db_factory_lazy(request: pytest.FixtureRequest) -> Callable[[], str]:
    """postgres_db_factory, asked for only when called: a test parametrised over SQLite and
    PostgreSQL then runs its SQLite case where there is no PostgreSQL."""
    return lambda: request.getfixturevalue("postgres_db_factory")()


@pytest.fixture(scope="session")
def redis_db_factory() -> Iterator[Callable[[], str]]:
    """Claims empty Redis database numbers on demand; each is flushed at the end of the session."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL + "/0", socket_timeout=5).ping()
    except redis.RedisError as exc:
        service_unavailable("Redis", exc)
    claim = f"suggestlab-test-{secrets.token_hex(4)}"
    claimed: list[redis.Redis] = []

    def make() -> str:
        for number in range(15, 0, -1):
            client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
            if client.dbsize() == 0 and client.set("suggestlab:test-claim", claim, nx=True):
                claimed.append(client)
                return f"{REDIS_URL}/{number}"
        pytest.fail("no empty Redis database number left for the tests")

    yield make
    for client in claimed:
        client.flushdb()


@pytest.fixture(scope="session")
def postgres_url(postgres_db_factory: Callable[[], str]) -> str:
    return postgres_db_factory()


@pytest.fixture(scope="session")
def redis_url(redis_db_factory: Callable[[], str]) -> str:
    return redis_db_factory()


@pytest.fixture(scope="session")
def postgres_service(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[LiveService]:
    service = start_service(
        tmp_path_factory.mktemp("postgres"),
        {"SUGGESTLAB_DATABASE_URL": postgres_url, "SUGGESTLAB_BROKER_URL": redis_url},
        separate_worker=True,
        name="postgres",
    )
    yield service
    service.stop()


def wait_for_round(client: httpx.Client, round_id: int, timeout: float = 180) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/rounds/{round_id}").json()
        if state["status"] not in ("queued", "training", "selecting"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"round {round_id} did not finish in {timeout}s: {state}")
