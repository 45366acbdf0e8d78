"""Rounds on a million-image pool through the real service (REST upload, embedded workers, SQLite),
on whatever machine runs it: a cold `random` round (it decodes the pool into the worker's pixel cache),
a warm one, then two `typiclust` rounds (k-means clusters of the million in the VAE's latent space:
the first trains the VAE and encodes the pool, the second reads those latents back). The project is
created with `representation: none`, so the rounds measure the pool path alone; the learned
representation at this size is not part of it.

    python benchmarks/round_1m.py                      # writes benchmarks/results/round_1m.json
    python benchmarks/round_1m.py --images 200000 --out /tmp/round_200k.json
    python benchmarks/round_1m.py --seed-pool --label-rounds 2 --out round_1m-gpu.json

The pool: the million distinct 28x28 PNGs of benchmarks/ingest_speed.py, uploaded in zips of 5,000.
With --seed-pool it is instead a million augmented MNIST digits (benchmarks/representation_1m.py)
written straight into storage, the image table and the worker's pixel cache, without the upload path
or the first round's decoding: the warm rounds on a machine whose device time is too short for
both (ingest_speed.py and the CPU run of this script measure those). --label-rounds N then labels
each round's batch with the digits' classes over REST and runs N `entropy` and N `snn` rounds, which
train on those labels and score the whole pool. --strategies names the rounds instead.
With --representation (needs --seed-pool) the project learns its self-supervised representation of
the pool first, through the service's own background job (REST request, embedded worker), and every
round then runs over those features; the job's phases are timed as a user polling its progress sees
them.
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
from concurrent.futures import ProcessPoolExecutor
from hashlib import sha256
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_load import api_client, cli, free_port, start_serve, wait_healthy  # noqa: E402
from benchmarks.ingest_speed import peak_rss_mb, zips  # noqa: E402
from benchmarks.representation_1m import augment, device_name  # noqa: E402
from benchmarks.round_speed import _timings, wait_ready, wait_representation  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.training import select_device  # noqa: E402

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


def _store_pngs(job: tuple[Path, int, np.ndarray]) -> list[tuple[str, str]]:
    """PNG-encodes rows and writes them to the project's storage: [(sha256, storage key)] in order."""
    from app.core.settings import Settings
    from app.storage import get_storage, image_key

    data_dir, project_id, rows = job
    storage, out = get_storage(Settings(data_dir=data_dir)), []
    for row in rows:
        png = BytesIO()
        PILImage.fromarray(row[0]).save(png, "PNG")
        data = png.getvalue()
        digest = sha256(data).hexdigest()
        key = image_key(project_id, digest, "png")
        storage.put(key, data)
        out.append((digest, key))
    return out


def seed_pool(
    data_dir: Path, project_id: int, images: int, *, validation: int = 2_000, chunk: int = 50_000
) -> dict[str, object]:
    """Writes `images` augmented digits into the project's pool as the upload path and a round's
    decoding would leave them (PNG objects in storage, image rows, rows of the worker's pixel cache),
    through the app's own storage, ORM table and cache; the last `validation` of them are a labelled
    validation split. Returns the seconds and each pool image's class."""
    from sqlalchemy import insert, select

    from app import orm  # every table, for the image table's foreign keys
    from app.core.db import session_factory
    from app.core.settings import Settings
    from app.datasets import load_dataset
    from worker.data import pixel_cache

    Image = orm.Image

    settings = Settings(data_dir=data_dir)
    sessions = session_factory(settings)
    cache = pixel_cache(settings.data_dir, project_id, 28, 1)
    mnist = load_dataset("mnist5k")
    rng = np.random.default_rng(0)
    started = time.monotonic()
    seen: set[str] = set()
    label_of: dict[str, str] = {}
    with ProcessPoolExecutor(max(1, usable_cores())) as pool:
        for start in range(0, images, chunk):
            m = min(chunk, images - start)
            pick = rng.integers(0, len(mnist.images), m)
            rows = augment(mnist.images[pick], rng)[:, None]
            # Encoded and written by every core: one process's small-file writes would take minutes.
            jobs = [(settings.data_dir, project_id, part) for part in np.array_split(rows, 64)]
            encoded = [p for part in pool.map(_store_pngs, jobs) for p in part]
            keep = [i for i, (digest, _) in enumerate(encoded) if digest not in seen]
            seen.update(encoded[i][0] for i in keep)
            keys = [encoded[i][1] for i in keep]
            names = [f"seed-{start + i:07d}.png" for i in keep]
            # The last `validation` images are the labelled validation split the rounds evaluate on.
            splits = ["validation" if start + i >= images - validation else "pool" for i in keep]
            truths = [
                str(int(mnist.labels[pick[i]])) if s == "validation" else None
                for i, s in zip(keep, splits, strict=True)
            ]
            with sessions.begin() as session:
                session.execute(
                    insert(Image.__table__),
                    [
                        dict(
                            project_id=project_id,
                            storage_key=key,
                            sha256=encoded[i][0],
                            format="PNG",
                            width=28,
                            height=28,
                            original_name=name,
                            split=split,
                            ground_truth=truth,
                        )
                        for key, i, name, split, truth in zip(keys, keep, names, splits, truths, strict=True)
                    ],
                )
            cache.append(keys, rows[keep])
            label_of.update((name, str(int(mnist.labels[pick[i]]))) for name, i in zip(names, keep, strict=True))
            print(f"seeded {start + m} ({time.monotonic() - started:.0f} s)", flush=True)
    with sessions() as session:
        query = select(Image.id, Image.original_name).where(Image.project_id == project_id, Image.split == "pool")
        by_id = {image_id: label_of[name] for image_id, name in session.execute(query)}
    return {"seconds": round(time.monotonic() - started, 1), "images": len(seen), "label_by_id": by_id}


def label_batch(client: httpx.Client, round_id: int, label_by_id: dict[int, str]) -> int:
    """Labels the round's pending suggestions with their images' classes, as an annotator would."""
    done = 0
    for s in client.get(f"/rounds/{round_id}/suggestions").json()["data"]:
        if s["status"] == "pending" and s["image_id"] in label_by_id:
            client.post(f"/images/{s['image_id']}/annotations", json={"label": label_by_id[s["image_id"]]})
            done += 1
    return done


def run(
    images: int,
    batch: int,
    *,
    seeded: bool = False,
    representation: bool = False,
    label_rounds: int = 0,
    strategies: list[str] | None = None,
    progress: Path | None = None,
) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-1m-"))
    archives: list[Path] = []
    if not seeded:
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
        kind = "simclr" if representation else "none"
        body = {"name": "million", "classes": [str(i) for i in range(10)], "settings": {"representation": kind}}
        pid = client.post("/projects", json=body).json()["id"]
        label_by_id: dict[int, str] = {}
        if seeded:
            seeding = seed_pool(tmp / "data", pid, images)
            label_by_id = seeding.pop("label_by_id")  # type: ignore[assignment]
            out["seeded"] = seeding
        else:
            t = time.monotonic()
            for path in archives:
                with path.open("rb") as archive:
                    client.post(f"/projects/{pid}/images", files={"files": (path.name, archive)}).raise_for_status()
            out["upload_s"] = round(time.monotonic() - t, 1)
            print(f"uploaded in {out['upload_s']} s", flush=True)
            shutil.rmtree(tmp / "zips")

        if representation:
            for proc in descendants(serve.pid):
                reset_peak(proc)
            client.post(f"/projects/{pid}/representations").raise_for_status()
            learned = wait_representation(client, pid)
            learned["worker_peak_rss_mb"] = max(
                (peak_rss_mb(proc) or 0.0 for proc in descendants(serve.pid)), default=None
            )
            out["representation"] = learned
            if learned["status"] != "ready":
                raise RuntimeError(f"the representation failed: {learned['error']}")

        rounds: list[dict[str, object]] = []
        out["rounds"] = rounds
        overall: dict[str, float] = {}
        strategies = strategies or ["random", "random", "typiclust", "typiclust", *(["entropy", "snn"] * label_rounds)]
        previous: int | None = None
        for strategy in strategies:
            labelled = label_batch(client, previous, label_by_id) if label_by_id and previous else 0
            created = client.post(
                f"/projects/{pid}/rounds", json={"strategy": strategy, "batch_size": batch, "close_open": True}
            ).json()
            previous = created["id"]
            state, wall = wait_ready(client, created["id"], timeout=3600)
            workers = descendants(serve.pid)
            peaks = {proc: peak_rss_mb(proc) or 0.0 for proc in workers}
            for proc, mb in peaks.items():
                overall[str(proc)] = max(mb, overall.get(str(proc), 0.0))
                reset_peak(proc)
            rounds.append(
                {
                    "strategy": strategy,
                    "labelled_before": labelled,
                    "wall_s": round(wall, 2),
                    "worker_peak_rss_mb": max(peaks.values(), default=None),
                    **_timings(state),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
            if progress is not None:
                progress.write_text(json.dumps(out, indent=2) + "\n")
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
    out["device"] = device_name(select_device())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "round_1m.json")
    parser.add_argument("--seed-pool", action="store_true", help="write the pool directly (see above)")
    parser.add_argument("--label-rounds", type=int, default=0, help="with --seed-pool: labelled entropy+snn pairs")
    parser.add_argument("--strategies", help="the rounds, comma-separated, instead of the sequence above")
    parser.add_argument(
        "--representation", action="store_true", help="with --seed-pool: learn the representation, then run rounds"
    )
    args = parser.parse_args()
    if args.label_rounds and not args.seed_pool:
        parser.error("--label-rounds needs --seed-pool (the uploaded pool's classes are not kept)")
    if args.representation and not args.seed_pool:
        # An upload in 200 zips would start the job on the first zip's 5,000 images.
        parser.error("--representation needs --seed-pool")
    # Written after every round as well, so a run cut short by its time limit leaves what it measured.
    result = run(
        args.images,
        args.batch,
        seeded=args.seed_pool,
        representation=args.representation,
        label_rounds=args.label_rounds,
        strategies=args.strategies.split(",") if args.strategies else None,
        progress=args.out,
    )
    result["command"] = "python benchmarks/round_1m.py " + " ".join(sys.argv[1:])
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
