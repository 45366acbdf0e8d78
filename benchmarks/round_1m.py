"""Rounds on a million-image pool through the real service (REST upload, embedded workers, SQLite),
on whatever machine runs it: a cold `random` round (it decodes the pool into the worker's pixel cache),
a warm one, then two `typiclust` rounds (k-means clusters of the million in the VAE's latent space:
the first trains the VAE and encodes the pool, the second reads those latents back). The project is
created with `representation: none`, so the rounds measure the pool path alone; the learned
representation at this size is not part of it.

    python benchmarks/round_1m.py                      # writes benchmarks/results/round_1m.json
    python benchmarks/round_1m.py --images 200000 --out /tmp/round_200k.json

The pool: the million distinct 28x28 PNGs of benchmarks/ingest_speed.py, uploaded in zips of 5,000.
Peak memory is read from /proc for the API process and each worker process, over the whole run and
(reset through /proc/PID/clear_refs after each round) for each round's worker processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_load import api_client, cli, free_port, start_serve, wait_healthy  # noqa: E402
from benchmarks.ingest_speed import peak_rss_mb, zips  # noqa: E402
from benchmarks.round_speed import _timings, wait_ready  # noqa: E402
from models.cores import usable_cores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def descendants(pid: int) -> list[int]:
    """Every process below pid (Linux /proc), children first."""
    out, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        out += [int(c) for c in children]
        frontier += [int(c) for c in children]
    return out


def reset_peak(pid: int) -> None:
    """Starts the process's peak-RSS count again (Linux: 5 > /proc/PID/clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def run(images: int, batch: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-1m-"))
    print(f"building {images} PNGs...", flush=True)
    (tmp / "zips").mkdir()
    archives = zips(images, 5_000, tmp / "zips")
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp / "data")}
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    serve = start_serve(env, port)
    out: dict[str, object] = {"images": images, "batch": batch}
    try:
        wait_healthy(port)
        client = api_client(port, admin)
        body = {"name": "million", "classes": [str(i) for i in range(10)], "settings": {"representation": "none"}}
        pid = client.post("/projects", json=body).json()["id"]
        t = time.monotonic()
        for path in archives:
            with path.open("rb") as archive:
                client.post(f"/projects/{pid}/images", files={"files": (path.name, archive)}).raise_for_status()
        out["upload_s"] = round(time.monotonic() - t, 1)
        print(f"uploaded in {out['upload_s']} s", flush=True)
        shutil.rmtree(tmp / "zips")

        rounds = []
        overall: dict[str, float] = {}
        for strategy in ("random", "random", "typiclust", "typiclust"):
            created = client.post(
                f"/projects/{pid}/rounds", json={"strategy": strategy, "batch_size": batch, "close_open": True}
            ).json()
            state, wall = wait_ready(client, created["id"], timeout=3600)
            workers = descendants(serve.pid)
            peaks = {proc: peak_rss_mb(proc) or 0.0 for proc in workers}
            for proc, mb in peaks.items():
                overall[str(proc)] = max(mb, overall.get(str(proc), 0.0))
                reset_peak(proc)
            rounds.append(
                {
                    "strategy": strategy,
                    "wall_s": round(wall, 2),
                    "worker_peak_rss_mb": max(peaks.values(), default=None),
                    **_timings(state),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
        out["rounds"] = rounds
        out["api_peak_rss_mb"] = peak_rss_mb(serve.pid)
        out["worker_peak_rss_mb"] = overall
    finally:
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine"] = f"{platform.machine()}, {usable_cores()} cores"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "round_1m.json")
    args = parser.parse_args()
    result = run(args.images, args.batch)
    result["command"] = "python benchmarks/round_1m.py " + " ".join(sys.argv[1:])
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
