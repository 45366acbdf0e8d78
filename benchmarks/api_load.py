"""API latency under load: 20 annotators leasing (`next`) and labelling one round while the next round
trains, on SQLite (embedded broker) and on PostgreSQL + Redis. Loopback only, bounded in time.

    python benchmarks/api_load.py                      # both backends
    python benchmarks/api_load.py --backends sqlite --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
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


def run_backend(backend: str, annotators: int, seconds: float) -> dict[str, object]:
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
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    if backend == "postgres":
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--log-level", "warning"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
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
            f"/projects/{pid}/images", files={"files": ("pool.zip", to_zip(data, order[:3000], with_labels=False))}
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
        first = client.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 2000}).json()
        while client.get(f"/rounds/{first['id']}").json()["status"] != "ready":
            time.sleep(0.5)
        # Label a few so the next round has something to train on, then start it: it trains during the load.
        seed_items = client.post(f"/projects/{pid}/next", json={"limit": 50}).json()["data"]
        for item in seed_items:
            client.post(f"/images/{item['image_id']}/annotations", json={"label": "1"})
        # close_open: annotators keep labelling the open batch while this round trains.
        body = {"strategy": "entropy", "batch_size": 100, "close_open": True}
        training = client.post(f"/projects/{pid}/rounds", json=body).json()

        timings: dict[str, list[float]] = {"next": [], "label": []}
        failures: list[int] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def annotator(token: str) -> None:
            with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                while time.monotonic() < stop_at:
                    t = time.perf_counter()
                    r = c.post(f"/projects/{pid}/next", json={"limit": 5})
                    with lock:
                        timings["next"].append(time.perf_counter() - t)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                        continue
                    for item in r.json()["data"]:
                        t = time.perf_counter()
                        lr = c.post(f"/images/{item['image_id']}/annotations", json={"label": "3", "duration_ms": 500})
                        with lock:
                            timings["label"].append(time.perf_counter() - t)
                        if lr.status_code not in (200, 201):
                            failures.append(lr.status_code)
                        if time.monotonic() > stop_at:
                            return

        threads = [threading.Thread(target=annotator, args=(tok,)) for tok in tokens]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        round_state = client.get(f"/rounds/{training['id']}").json()
        return {
            "backend": backend,
            "annotators": annotators,
            "seconds": seconds,
            "requests": {k: len(v) for k, v in timings.items()},
            "p50_ms": {k: round(percentile(v, 50), 1) for k, v in timings.items()},
            "p95_ms": {k: round(percentile(v, 95), 1) for k, v in timings.items()},
            # 403s are expected: when the concurrently training round becomes ready it replaces the
            # open batch, and items leased from the old batch can no longer be labelled by annotators.
            "failures_by_status": {str(code): failures.count(code) for code in sorted(set(failures))},
            "concurrent_round_status_at_end": f"{round_state['status']} ({round_state['phase']})",
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        for fn in cleanup:
            fn()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "api_load.json"))
    args = parser.parse_args()
    results = [run_backend(b, args.annotators, args.seconds) for b in args.backends.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/api_load.py " + " ".join(sys.argv[1:])
    out.write_text(json.dumps({"command": command, "results": results}, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
