"""API latency under load: 20 annotators leasing (`next`) and labelling one round while the next round
and the project's representation (SimCLR on the pool) train, on SQLite (embedded broker) and on
PostgreSQL + Redis. Loopback only, bounded in time.

    python benchmarks/api_load.py                      # both backends
    python benchmarks/api_load.py --backends sqlite --seconds 30
    python benchmarks/api_load.py --backends postgres --api-workers 2 --think-ms 500

`--think-ms` is the pause between an annotator's labels (a person looks at the image); 0 makes every
annotator a client that never waits, which measures a saturated server rather than latency.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset, to_zip  # noqa: E402

POSTGRES = os.environ.get("SUGGESTLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("SUGGESTLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def start_serve(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen:
    """`suggestlab serve` on this port (with its embedded workers unless `--no-worker` is passed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def api_client(port: int, token: str, timeout: float = 1800) -> httpx.Client:
    """A client of the service's REST API on this port, as the holder of `token`."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def wait_healthy(port: int, seconds: float = 60) -> None:
    """Until the service on this port answers /healthz (it may still be migrating or starting)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def run_backend(
    backend: str,
    annotators: int,
    seconds: float,
    api_workers: int = 1,
    think_ms: float = 0,
    shared_socket: bool = False,
    no_training: bool = False,
    cold_connections: bool = False,
) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix=f"suggestlab-load-{backend}-"))
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp), "SUGGESTLAB_ENVIRONMENT": "test"}
    cleanup = []
    if backend == "postgres":
        import psycopg

        name = f"suggestlab_load_{secrets.token_hex(3)}"
        base = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        env["SUGGESTLAB_DATABASE_URL"] = POSTGRES.rsplit("/", 1)[0] + "/" + name
        env["SUGGESTLAB_BROKER_URL"] = f"{REDIS}/14"

        def drop() -> None:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        cleanup.append(drop)
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    # One process with its embedded workers (the demo's way), or the compose file's way: uvicorn with
    # several worker processes and the Celery worker beside it.
    serve = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if api_workers > 1 and shared_socket:
        # uvicorn's own --workers: one listening socket shared by every process (compose before stop 21).
        serve = [
            sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port),
            "--workers", str(api_workers), "--log-level", "warning",
        ]  # fmt: skip
    elif api_workers > 1:
        serve += ["--processes", str(api_workers), "--no-worker"]
    procs = [subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    if backend == "postgres" or api_workers > 1:
        # As compose runs them: rounds in one worker, representation training in another.
        for queues in ("training,light", "background,simulations"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker", "--queues", queues, "--log-level", "warning"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # its pool children go with it (killpg below)
                )
            )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_healthy(port)
        client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
        data = load_dataset("mnist5k")
        order = np.random.default_rng(0).permutation(len(data.labels))
        project = client.post("/projects", json={"name": "load", "classes": data.classes}).json()
        pid = project["id"]
        client.post(
            f"/projects/{pid}/images", files={"files": ("pool.zip", to_zip(data, order[:4000], with_labels=False))}
        )
        client.post(
            f"/projects/{pid}/images",
            files={"files": ("val.zip", to_zip(data, order[4000:4500], with_labels=True))},
            data={"split": "validation"},
        )
        tokens = []
        for i in range(annotators):
            user = client.post("/users", json={"name": f"annotator-{i}", "role": "annotator"}).json()
            client.post(f"/projects/{pid}/members", json={"user_id": user["id"]})
            tokens.append(client.post(f"/users/{user['id']}/tokens").json()["token"])
        first = client.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 1500}).json()
        while client.get(f"/rounds/{first['id']}").json()["status"] != "ready":
            time.sleep(0.5)
        # Label a few so the next round has something to train on, then start it: it trains during the load.
        seed_items = client.post(f"/projects/{pid}/next", json={"limit": 50}).json()["data"]
        for item in seed_items:
            client.post(f"/images/{item['image_id']}/annotations", json={"label": "1"})
        # close_open: annotators keep labelling the open batch while this round trains; its batch is
        # large too, so labelling goes on after it replaces the open one. A representation trains
        # throughout (the upload queued one; a second request is refused while it runs).
        client.post(f"/projects/{pid}/representations")
        body = {"strategy": "entropy", "batch_size": 2000, "close_open": True}
        training = client.post(f"/projects/{pid}/rounds", json=body).json()

        # Each annotator's HTTP client is made before the clock starts: building one (its TLS context
        # included) takes the load generator ~15-25 ms of CPU under the GIL on this machine, and 20
        # of them built in the first second delayed the other threads' timed requests. All 20
        # annotators still send their first request in the same instant.
        if no_training:
            # Nothing trains during the load: what is left is the API's own cost on these cores.
            for proc in procs[1:]:
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(2)
        clients = [
            httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) for token in tokens
        ]
        if not cold_connections:
            # An annotator's browser opens the labelling page (the page, then `/me`: who they are) before it
            # asks for work, so its first `next` goes over a connection that is already open. Without
            # this, all 20 TCP connections and each one's first request land in the first second
            # (`--cold-connections`, the runs before stop 22).
            for c in clients:
                c.get(f"http://127.0.0.1:{port}/").raise_for_status()
                c.get("/me").raise_for_status()

        timings: dict[str, list[float]] = {"next": [], "label": []}
        started: dict[str, list[float]] = {"next": [], "label": []}  # when each call began (s into the run)
        failures: list[int] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds
        begin = time.monotonic()

        def annotator(c: httpx.Client) -> None:
            with closing(c):
                while time.monotonic() < stop_at:
                    at, t = time.monotonic() - begin, time.perf_counter()
                    r = c.post(f"/projects/{pid}/next", json={"limit": 5})
                    with lock:
                        timings["next"].append(time.perf_counter() - t)
                        started["next"].append(at)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                        continue
                    if not r.json()["data"]:
                        time.sleep(think_ms / 1000)  # a person sees "nothing to label" and waits
                    for item in r.json()["data"]:
                        at, t = time.monotonic() - begin, time.perf_counter()
                        lr = c.post(f"/images/{item['image_id']}/annotations", json={"label": "3", "duration_ms": 500})
                        with lock:
                            timings["label"].append(time.perf_counter() - t)
                            started["label"].append(at)
                        if lr.status_code not in (200, 201):
                            failures.append(lr.status_code)
                        if time.monotonic() > stop_at:
                            return
                        time.sleep(think_ms / 1000)

        threads = [threading.Thread(target=annotator, args=(c,)) for c in clients]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        round_state = client.get(f"/rounds/{training['id']}").json()
        representation = client.get(f"/projects/{pid}/representations").json()["data"]
        return {
            "backend": backend,
            "api_workers": api_workers,
            "think_ms": think_ms,
            "annotators": annotators,
            "page_opened_first": not cold_connections,
            "seconds": seconds,
            "requests": {k: len(v) for k, v in timings.items()},
            "p50_ms": {k: round(percentile(v, 50), 1) for k, v in timings.items()},
            "p95_ms": {k: round(percentile(v, 95), 1) for k, v in timings.items()},
            # 403s are expected: when the concurrently training round becomes ready it replaces the
            # open batch, and items leased from the old batch can no longer be labelled by annotators.
            # The same without the first 2 s, when 20 annotators arrive together at a server whose
            # database connections are not open yet (each API process opens its pool then).
            "steady_p95_ms": {
                k: round(percentile([d for d, at in zip(v, started[k], strict=True) if at >= 2.0], 95), 1)
                for k, v in timings.items()
            },
            # The slowest calls and when they came (seconds into the run): a burst at the start or at
            # the moment the training round replaced the open batch reads differently from a steady tail.
            "slowest": {
                k: [[round(started[k][i], 1), round(1000 * v[i], 1)] for i in np.argsort(v)[::-1][:10]]
                for k, v in timings.items()
            },
            "failures_by_status": {str(code): failures.count(code) for code in sorted(set(failures))},
            "concurrent_round_status_at_end": f"{round_state['status']} ({round_state['phase']})",
            "representation_status_at_end": representation[0]["status"] if representation else None,
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                # A worker's warm shutdown waits for the representation it is training: stop it, with
                # its pool children when it leads its own process group.
                if proc.pid == os.getpgid(proc.pid):
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
        for fn in cleanup:
            fn()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (compose runs 4)")
    parser.add_argument(
        "--shared-socket",
        action="store_true",
        help="run the API processes as uvicorn --workers (one shared socket) instead of serve --processes",
    )
    parser.add_argument("--think-ms", type=float, default=0, help="pause between an annotator's labels")
    parser.add_argument(
        "--no-training",
        action="store_true",
        help="stop the workers before the load (PostgreSQL only): the round and representation do not train",
    )
    parser.add_argument(
        "--cold-connections",
        action="store_true",
        help="annotators send their first `next` on a new connection, without opening the page first",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "api_load.json"))
    args = parser.parse_args()
    results = [
        run_backend(
            b,
            args.annotators,
            args.seconds,
            args.api_workers,
            args.think_ms,
            args.shared_socket,
            args.no_training,
            args.cold_connections,
        )
        for b in args.backends.split(",")
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/api_load.py " + " ".join(sys.argv[1:])
    out.write_text(json.dumps({"command": command, "results": results}, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
