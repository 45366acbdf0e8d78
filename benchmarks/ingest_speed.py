"""Upload speed through the real service: N distinct 28x28 PNGs in zips of 5,000, POSTed one zip after
another to `suggestlab serve` (REST, multipart), timed per zip.

    python benchmarks/ingest_speed.py                                # SQLite, 50,000 images
    python benchmarks/ingest_speed.py --backend postgres             # a throwaway PostgreSQL database
    python benchmarks/ingest_speed.py --ingest-processes 1 --out ingest_speed-serial
    python benchmarks/ingest_speed.py --images 1000000 --progress --out ingest_speed-1m   # a million

The project is created with `representation: none`, so no representation job trains beside the
uploads: the figure is the ingest alone (decode, verify, hash, deduplicate, store, insert). The
images: the 5,000 bundled MNIST digits, each shifted by one pixel in 9 directions and transposed
(10 variants), so every file has bytes of its own; past 50,000, each variant also carries its index
in its first three pixels. The zips are written to a temporary folder before the clock starts, so a
million images never sit in this process's memory. `--progress` uploads through the streaming path
(`?progress=true`, one JSON line per stored run).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from benchmarks.api_load import api_client, cli, free_port, start_serve, wait_healthy  # noqa: E402
from models.cores import usable_cores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
POSTGRES = os.environ.get("SUGGESTLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def variant(digits: np.ndarray, i: int) -> np.ndarray:
    """Image i: digit i % 5,000 in variant (i // 5,000) % 10; from 50,000 on, stamped with i."""
    image, v = digits[i % len(digits)], (i // len(digits)) % 10
    moved = image.T.copy() if v == 9 else np.roll(image, (v // 3 - 1, v % 3 - 1), axis=(0, 1))
    if i >= 10 * len(digits):
        moved[0, :3] = ((i >> 16) & 255, (i >> 8) & 255, i & 255)
    return moved


def zips(count: int, size: int, folder: Path) -> list[Path]:
    digits = load_dataset("mnist5k").images
    paths = []
    for start in range(0, count, size):
        path = folder / f"part-{start // size:04d}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(start, min(start + size, count)):
                png = io.BytesIO()
                PILImage.fromarray(variant(digits, i)).save(png, "PNG")
                archive.writestr(f"img-{i:07d}.png", png.getvalue())
        paths.append(path)
    return paths


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (Linux), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


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
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-ingest-"))
    print(f"building {args.images} PNGs in zips of {args.zip_size}...", flush=True)
    (tmp / "zips").mkdir()
    archives = zips(args.images, args.zip_size, tmp / "zips")
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp)}
    if args.ingest_processes is not None:
        env["SUGGESTLAB_INGEST_PROCESSES"] = str(args.ingest_processes)
    database = None
    if args.backend == "postgres":
        url, database = postgres_database()
        env["SUGGESTLAB_DATABASE_URL"] = url
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    serve = start_serve(env, port, "--no-worker")
    try:
        wait_healthy(port)
        client = api_client(port, admin)
        body = {"name": "ingest", "classes": [str(i) for i in range(10)], "settings": {"representation": "none"}}
        pid = client.post("/projects", json=body).json()["id"]
        per_zip = []
        accepted = duplicates = rejected = 0
        started = time.monotonic()
        progress_lines = 0
        for n, path in enumerate(archives):
            t = time.monotonic()
            with path.open("rb") as archive:
                if args.progress:
                    report = {}
                    with client.stream(
                        "POST", f"/projects/{pid}/images?progress=true", files={"files": (path.name, archive)}
                    ) as response:
                        response.raise_for_status()
                        for line in response.iter_lines():
                            event = json.loads(line)
                            progress_lines += 1
                            report = event.get("report", report)
                else:
                    response = client.post(f"/projects/{pid}/images", files={"files": (path.name, archive)})
                    response.raise_for_status()
                    report = response.json()
            seconds = time.monotonic() - t
            accepted += len(report["accepted"])
            duplicates += len(report["duplicates"])
            rejected += len(report["rejected"])
            per_zip.append(round(seconds, 2))
            print(f"  zip {n + 1}/{len(archives)}: {seconds:.2f} s", flush=True)
        total = time.monotonic() - started
        stored = client.get(f"/projects/{pid}").json()
        peak = peak_rss_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait(30)
        if database:
            drop_postgres(database)
        shutil.rmtree(tmp, ignore_errors=True)  # a million images are gigabytes of small files
    return {
        "backend": args.backend,
        "images": args.images,
        "zip_size": args.zip_size,
        "ingest_processes": args.ingest_processes if args.ingest_processes is not None else "default",
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "progress": bool(args.progress),
        "progress_lines": progress_lines,
        "project_counts": stored.get("counts"),
        "api_peak_rss_mb": peak,
        "seconds": round(total, 1),
        "images_per_s": round(args.images / total),
        "per_zip_s": per_zip,
        "machine": f"{platform.machine()}, {usable_cores()} cores",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--zip-size", type=int, default=5_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ingest-processes", type=int, default=None, help="default: the service's own")
    parser.add_argument("--out", default=None, help="results/<out>.json (default: ingest_speed-<backend>)")
    parser.add_argument("--progress", action="store_true", help="upload through ?progress=true (JSON lines)")
    args = parser.parse_args()
    result = run(args)
    result["command"] = "python benchmarks/ingest_speed.py " + " ".join(sys.argv[1:])
    out = RESULTS / f"{args.out or 'ingest_speed-' + args.backend}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_zip_s"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
