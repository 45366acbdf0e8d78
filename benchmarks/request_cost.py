"""What one annotator request costs the database: statements, transactions and pool check-outs per
`POST /projects/{id}/next` and per label, on PostgreSQL (+ Redis) and SQLite, with the latency of
each on a quiet machine.

Under load on a small machine every database round trip is a wake-up of another process that has
to wait for a core, so the count of round trips, not the SQL's own cost, sets the p95 that
`api_load.py` measures. This script counts them exactly (no timing noise) so a change can be judged
before the noisy load run.

    python benchmarks/request_cost.py --out benchmarks/results/request_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES = os.environ.get("SUGGESTLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("SUGGESTLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _counting(engine: Any, tally: Counter[str]) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        tally["statements"] += 1
        tally["statement:" + statement.split(None, 1)[0].upper()] += 1

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        tally["transactions"] += 1

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        tally["commits"] += 1

    @event.listens_for(engine.pool, "checkout")
    def _checkout(*args: Any) -> None:
        tally["checkouts"] += 1


def _redis_counting(tally: Counter[str]) -> None:
    import redis

    original = redis.Redis.execute_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        tally["redis_commands"] += 1
        return original(self, *args, **kwargs)

    redis.Redis.execute_command = counted  # type: ignore[method-assign]


def measure(backend: str, requests: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"request-cost-{backend}-"))
    os.environ["SUGGESTLAB_DATA_DIR"] = str(data_dir)
    os.environ["SUGGESTLAB_ENVIRONMENT"] = "test"
    os.environ["SUGGESTLAB_EMBEDDED_WORKER"] = "false"
    dropped: str | None = None
    if backend == "postgres":
        import psycopg

        name = f"suggestlab_cost_{secrets.token_hex(4)}"
        base = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        dropped = name
        os.environ["SUGGESTLAB_DATABASE_URL"] = POSTGRES.rsplit("/", 1)[0] + "/" + name
        os.environ["SUGGESTLAB_BROKER_URL"] = REDIS + "/14"
    else:
        os.environ.pop("SUGGESTLAB_DATABASE_URL", None)
        os.environ.pop("SUGGESTLAB_BROKER_URL", None)
    try:
        return _measure(backend, requests)
    finally:
        if dropped is not None:
            from app.core.db import dispose_engines

            dispose_engines()
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')


def _measure(backend: str, requests: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.core import ratelimit
    from app.core.db import dispose_engines, session_factory, session_scope
    from app.core.migrate import upgrade
    from app.core.settings import get_settings
    from app.images.orm import Image, Split
    from app.projects.orm import Project, ProjectMember
    from app.rounds.orm import Round, RoundStatus, Suggestion
    from app.users import service as users
    from app.users.orm import Role

    get_settings.cache_clear()
    # The rate limiter keeps its storage per process: a SQLite run after a PostgreSQL one must count
    # in memory, as the embedded mode does, not in the Redis the earlier run used.
    ratelimit._limiter.cache_clear()
    dispose_engines()
    settings = get_settings()
    upgrade(settings)
    annotators = 4
    with session_scope(settings) as session:
        project = Project(name="cost", classes=["a", "b"], settings={})
        session.add(project)
        session.flush()
        tokens = []
        for i in range(annotators):
            user = users.create(session, name=f"annotator-{i}", role=Role.annotator)
            session.add(ProjectMember(project_id=project.id, user_id=user.id))
            tokens.append(users.issue_token(session, user=user))
        images = [
            Image(
                project_id=project.id,
                storage_key=f"k{i}",
                sha256=f"{i:064d}",
                format="png",
                width=28,
                height=28,
                original_name=f"{i}.png",
                split=Split.pool,
            )
            for i in range(requests * 10)
        ]
        session.add_all(images)
        session.flush()
        round_ = Round(project_id=project.id, index=1, strategy="random", batch_size=len(images))
        round_.status = RoundStatus.ready
        session.add(round_)
        session.flush()
        session.add_all(
            Suggestion(round_id=round_.id, image_id=image.id, rank=rank, score=0.0, reason={})
            for rank, image in enumerate(images)
        )
        project_id = project.id

    from app.main import create_app

    engine = session_factory(settings).kw["bind"]
    tally: Counter[str] = Counter()
    _counting(engine, tally)
    _redis_counting(tally)
    out: dict[str, Any] = {"backend": backend}
    with TestClient(create_app()) as client:
        heads = [{"Authorization": f"Bearer {token}"} for token in tokens]
        for head in heads:  # warm the pool and every cache once
            client.post(f"/api/v1/projects/{project_id}/next", json={"limit": 1}, headers=head)
        for kind in ("next", "label"):
            cost: Counter[str] = Counter()
            seconds: list[float] = []
            cpu = 0.0
            for i in range(requests):
                head = heads[i % annotators]
                if kind == "label":
                    leased = client.post(f"/api/v1/projects/{project_id}/next", json={"limit": 1}, headers=head)
                    image_id = leased.json()["data"][0]["image_id"]
                    path, body = f"/api/v1/images/{image_id}/annotations", {"label": "a"}
                else:
                    path, body = f"/api/v1/projects/{project_id}/next", {"limit": 5}
                before = Counter(tally)
                start, start_cpu = time.perf_counter(), time.process_time()
                response = client.post(path, json=body, headers=head)
                seconds.append(time.perf_counter() - start)
                cpu += time.process_time() - start_cpu
                assert response.status_code in (200, 201), response.text
                cost.update(tally - before)
            out[kind] = {
                "per_request": {key: round(value / requests, 2) for key, value in sorted(cost.items())},
                # Every thread of this process: the service's and the in-process client's.
                "cpu_ms_per_request": round(1000 * cpu / requests, 2),
                "latency_ms_median": round(1000 * statistics.median(seconds), 2),
                "latency_ms_p95": round(1000 * sorted(seconds)[int(0.95 * (len(seconds) - 1))], 2),
            }
    dispose_engines()
    out["served"] = _served(project_id, tokens, requests)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(project_id: int, tokens: list[str], requests: int) -> dict[str, Any]:
    """The same requests to a real uvicorn process (as compose runs the API, one process here): its own
    CPU time per request, read from /proc, and the latency a client sees."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=os.environ.copy(),
        cwd=ROOT,
    )
    served: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        clients = [httpx.Client(base_url=base, headers={"Authorization": f"Bearer {t}"}) for t in tokens]
        for client in clients:  # warm every connection and cache
            client.post(f"/projects/{project_id}/next", json={"limit": 1})
        for kind in ("next", "label"):
            seconds: list[float] = []
            cpu = 0.0
            for i in range(requests):
                client = clients[i % len(clients)]
                if kind == "label":
                    leased = client.post(f"/projects/{project_id}/next", json={"limit": 1}).json()
                    path, body = f"/images/{leased['data'][0]['image_id']}/annotations", {"label": "a"}
                else:
                    path, body = f"/projects/{project_id}/next", {"limit": 5}
                start, start_cpu = time.perf_counter(), _cpu_seconds(server.pid)
                response = client.post(path, json=body)
                seconds.append(time.perf_counter() - start)
                cpu += _cpu_seconds(server.pid) - start_cpu
                assert response.status_code in (200, 201), response.text
            served[kind] = {
                "server_cpu_ms_per_request": round(1000 * cpu / requests, 2),
                "latency_ms_median": round(1000 * statistics.median(seconds), 2),
                "latency_ms_p95": round(1000 * sorted(seconds)[int(0.95 * (len(seconds) - 1))], 2),
            }
        for client in clients:
            client.close()
    finally:
        server.terminate()
        server.wait(30)
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = [measure(backend, args.requests) for backend in args.backends.split(",")]
    print(json.dumps(results, indent=2))
    if args.out:
        command = "python benchmarks/request_cost.py " + " ".join(sys.argv[1:])
        args.out.write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
