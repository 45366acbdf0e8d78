"""Upload speed through the real service: N distinct 28x28 PNGs in zips of 5,000, POSTed one zip after
another to `suggestlab serve` (REST, multipart), timed per zip.

    python benchmarks/ingest_speed.py                                # SQLite, 50,000 images
    python benchmarks/ingest_speed.py --backend postgres             # a throwaway PostgreSQL database
    python benchmarks/ingest_speed.py --ingest-processes 1 --out ingest_speed-serial

The project is created with `representation: none`, so no representation job trains beside the
uploads: the figure is the ingest alone (decode, verify, hash, deduplicate, store, insert). The
images: the 5,000 bundled MNIST digits, each shifted by one pixel in 9 directions and transposed
(10 variants), so every file has bytes of its own.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from benchmarks.api_load import cli, free_port, wait_healthy  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
POSTGRES = os.environ.get("SUGGESTLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def variants(count: int) -> list[np.ndarray]:
    digits = load_dataset("mnist5k").images
    out: list[np.ndarray] = []
    for v in range(10):
        for image in digits:
            moved = image.T if v == 9 else np.roll(image, (v // 3 - 1, v % 3 - 1), axis=(0, 1))
            out.append(moved)
            if len(out) == count:
                return out
    return out


def zips(images: list[np.ndarray], size: int) -> list[bytes]:
    archives = []
    for start in range(0, len(images), size):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(start, min(start + size, len(images))):
                png = io.BytesIO()
                PILImage.fromarray(images[i]).save(png, "PNG")
                archive.writestr(f"img-{i:07d}.png", png.getvalue())
        archives.append(buf.getvalue())
    return archives


def postgres_database() -> tuple[str, str]:
    import psycopg

    name = f"suggestlab_ingest_{secrets.token_hex(4)}"
    base = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, name


def drop_postgres(name: str) -> None:
    import psycopg

    base = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args: argparse.Namespace) -> dict[str, object]:
    print(f"building {args.images} PNGs in zips of {args.zip_size}...", flush=True)
    archives = zips(variants(args.images), args.zip_size)
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-ingest-"))
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp)}
    if args.ingest_processes is not None:
        env["SUGGESTLAB_INGEST_PROCESSES"] = str(args.ingest_processes)
    database = None
    if args.backend == "postgres":
        url, database = postgres_database()
        env["SUGGESTLAB_DATABASE_URL"] = url
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(port)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {admin}"}, timeout=1800
        )
        body = {"name": "ingest", "classes": [str(i) for i in range(10)], "settings": {"representation": "none"}}
        pid = client.post("/projects", json=body).json()["id"]
        per_zip = []
        accepted = duplicates = rejected = 0
        started = time.monotonic()
        for n, archive in enumerate(archives):
            t = time.monotonic()
            response = client.post(f"/projects/{pid}/images", files={"files": (f"part-{n}.zip", archive)})
            response.raise_for_status()
            report = response.json()
            seconds = time.monotonic() - t
            accepted += len(report["accepted"])
            duplicates += len(report["duplicates"])
            rejected += len(report["rejected"])
            per_zip.append(round(seconds, 2))
            print(f"  zip {n + 1}/{len(archives)}: {seconds:.2f} s", flush=True)
        total = time.monotonic() - started
    finally:
        serve.terminate()
        serve.wait(30)
        if database:
            drop_postgres(database)
    return {
        "backend": args.backend,
        "images": args.images,
        "zip_size": args.zip_size,
        "ingest_processes": args.ingest_processes if args.ingest_processes is not None else "default",
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "seconds": round(total, 1),
        "images_per_s": round(args.images / total),
        "per_zip_s": per_zip,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--zip-size", type=int, default=5_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ingest-processes", type=int, default=None, help="default: the service's own")
    parser.add_argument("--out", default=None, help="results/<out>.json (default: ingest_speed-<backend>)")
    args = parser.parse_args()
    result = run(args)
    result["command"] = "python benchmarks/ingest_speed.py " + " ".join(sys.argv[1:])
    out = RESULTS / f"{args.out or 'ingest_speed-' + args.backend}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_zip_s"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
