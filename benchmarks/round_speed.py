"""Round speed through the real service (REST upload, embedded worker, SQLite): a cold `random` round on
a fresh 10,000-image pool, the representation job beside it, then warm `entropy` rounds (batch 100)
once the representation is ready; and `suggestlab demo` until its page is served, on a quiet machine
and with another process keeping one core busy.

    python benchmarks/round_speed.py                 # writes benchmarks/results/round_speed.{json,md}
    python benchmarks/round_speed.py --skip-demo
    python benchmarks/round_speed.py --skip-demo --warm-rounds 6 --out benchmarks/results/round_speed-challenge.json
    python benchmarks/round_speed.py --skip-demo --upload-after 1000 --out benchmarks/results/round_speed-upload.json

`--upload-after N` holds N of the pool back until the warm rounds are done, uploads them then (which
queues a new representation) and runs `--rounds-after-upload` more labelled `entropy` rounds while that
representation trains: each reports how many images it encoded and whether it stored the pool's
features (a new `latents.npz`).

From `CNN_CHALLENGE_PER_CLASS` labels per class (30 until stop 49, 10 since) the worker fits the
networks that challenge the head after each round is written; the next round is requested once that
follow-up is recorded, as it would be by a person labelling the batch, and the follow-up's own time
is reported beside it.

The pool: the 5,000 bundled MNIST digits (4,500 of them), their transposes and 1,000 of them turned
upside down: 10,000 distinct 28x28 images (a speed benchmark; the labels of the copies are the digit's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import Dataset, load_dataset, to_zip  # noqa: E402
from benchmarks.api_load import cli, free_port, start_serve, wait_healthy  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.learner import CNN_CHALLENGE_PER_CLASS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def ten_thousand() -> tuple[Dataset, np.ndarray, np.ndarray]:
    data = load_dataset("mnist5k")
    order = np.random.default_rng(0).permutation(len(data.labels))
    base, validation = order[:4500], order[4500:]
    images = np.concatenate([data.images, data.images[base].transpose(0, 2, 1), data.images[base[:1000], ::-1, ::-1]])
    labels = np.concatenate([data.labels, data.labels[base], data.labels[base[:1000]]])
    big = Dataset("speed", images, labels, data.classes, 28)
    pool = np.concatenate([base, np.arange(5000, len(labels))])
    return big, pool, validation


def wait_ready(client: httpx.Client, round_id: int, timeout: float = 1800) -> tuple[dict, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = client.get(f"/rounds/{round_id}").json()
        if state["status"] not in ("queued", "training", "selecting"):
            return state, time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"round {round_id}")


def wait_representation(client: httpx.Client, project_id: int, timeout: float = 7200) -> dict[str, object]:
    """Polls the project's newest representation until it is ready or failed: each phase's first
    sighting (seconds from the request, progress) and the job's own metrics."""
    started, phases = time.monotonic(), []
    while time.monotonic() - started < timeout:
        rows = client.get(f"/projects/{project_id}/representations").json()["data"]
        if not rows:  # the upload's job is created by the worker's ingest, a moment after the upload
            time.sleep(1.0)
            continue
        row = rows[0]
        if not phases or phases[-1]["phase"] != row["phase"]:
            phases.append({"phase": row["phase"], "at_s": round(time.monotonic() - started, 1)})
            print(json.dumps(phases[-1]), flush=True)
        if row["status"] in ("ready", "failed"):
            return {
                "status": row["status"],
                "error": row["error"],
                "wall_s": round(time.monotonic() - started, 1),
                "phases": phases,
                "metrics": row["metrics"],
            }
        time.sleep(1.0)
    raise TimeoutError(f"representation of project {project_id}")


def rounds_benchmark(
    warm_rounds: int, representation_budget: float, upload_after: int = 0, rounds_after_upload: int = 3
) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-speed-"))
    env = {
        **os.environ,
        "SUGGESTLAB_DATA_DIR": str(tmp),
        "SUGGESTLAB_REPRESENTATION_TIME_BUDGET_S": str(representation_budget),
    }
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    serve = start_serve(env, port)
    out: dict[str, object] = {}
    try:
        wait_healthy(port)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {admin}"}, timeout=600
        )
        data, pool, validation = ten_thousand()
        pool, held_back = pool[: len(pool) - upload_after], pool[len(pool) - upload_after :]
        pid = client.post("/projects", json={"name": "speed", "classes": data.classes}).json()["id"]
        t = time.monotonic()
        for chunk in np.array_split(pool, 2):
            archive = to_zip(data, chunk, with_labels=False)
            client.post(f"/projects/{pid}/images", files={"files": ("pool.zip", archive)}).raise_for_status()
        upload_s = time.monotonic() - t
        archive = to_zip(data, validation, with_labels=True)
        client.post(
            f"/projects/{pid}/images", files={"files": ("val.zip", archive)}, data={"split": "validation"}
        ).raise_for_status()
        out["upload"] = {"images": len(pool), "seconds": round(upload_s, 1)}

        cold = client.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 100}).json()
        state, wall = wait_ready(client, cold["id"])
        out["cold_random"] = {"wall_s": round(wall, 2), "metrics": _timings(state)}

        job = wait_representation(client, pid)
        # The job's own figures live under its metrics, as the API returns them.
        out["representation"] = {
            "status": job["status"],
            "waited_s": job["wall_s"],
            "epochs": (job["metrics"] or {}).get("epochs"),
            "seconds": (job["metrics"] or {}).get("seconds"),
            # The rounds worker loads a new representation while the first batch is labelled (minutes
            # for a person); the first warm round is requested once that is recorded.
            "rounds_prepared": wait_prepared(client, pid),
        }

        names = image_names(client, pid)
        label_of = {f"speed-{i:05d}.png": str(data.labels[i]) for i in range(len(data.labels))}
        warm: list[dict[str, object]] = []
        previous = cold["id"]
        for _ in range(warm_rounds):
            previous = labelled_round(client, pid, previous, names, label_of, warm)
        if warm:
            warm[-1]["follow_up"] = wait_follow_up(client, previous)
        out["warm_entropy"] = warm
        if len(held_back):
            t = time.monotonic()
            archive = to_zip(data, held_back, with_labels=False)
            client.post(f"/projects/{pid}/images", files={"files": ("more.zip", archive)}).raise_for_status()
            out["upload_after"] = {"images": len(held_back), "seconds": round(time.monotonic() - t, 1)}
            names = image_names(client, pid)
            after: list[dict[str, object]] = []
            for _ in range(rounds_after_upload):
                stored = len(list(tmp.rglob("latents.npz")))
                previous = labelled_round(client, pid, previous, names, label_of, after)
                metrics = client.get(f"/rounds/{previous}").json().get("metrics") or {}
                space = metrics.get("representation") or {}
                after[-1].update(
                    representation_id=space.get("id"),
                    encoded_now=space.get("encoded_now"),
                    stored_features=len(list(tmp.rglob("latents.npz"))) > stored,
                    new_representation=client.get(f"/projects/{pid}/representations").json()["data"][0]["status"],
                )
            out["rounds_after_upload"] = after
    finally:
        serve.terminate()
        serve.wait(60)
    return out


def image_names(client: httpx.Client, project_id: int) -> dict[int, str]:
    names: dict[int, str] = {}
    for page in range(1, 30):
        params = {"per_page": 500, "page": page}
        names.update(
            (i["id"], i["original_name"])
            for i in client.get(f"/projects/{project_id}/images", params=params).json()["data"]
        )
    return names


def labelled_round(
    client: httpx.Client,
    project_id: int,
    previous: int,
    names: dict[int, str],
    label_of: dict[str, str],
    rounds: list[dict[str, object]],
) -> int:
    """Labels the previous round's batch, runs the next `entropy` round and appends its figures to
    `rounds`; returns its id. A person labels a batch in minutes; the worker's follow-up of the
    previous round (the challengers' fit, from 30 labels per class) takes seconds. Timing the next
    round from when that is done measures the round; the follow-up is reported on its own."""
    follow_up = wait_follow_up(client, previous)
    if rounds:
        rounds[-1]["follow_up"] = follow_up
    for s in client.get(f"/rounds/{previous}/suggestions").json()["data"]:
        name = names.get(s["image_id"])
        if name in label_of and s["status"] == "pending":
            client.post(f"/images/{s['image_id']}/annotations", json={"label": label_of[name]})
    body = {"strategy": "entropy", "batch_size": 100, "close_open": True}
    created = client.post(f"/projects/{project_id}/rounds", json=body).json()
    state, wall = wait_ready(client, created["id"])
    rounds.append({"wall_s": round(wall, 2), "metrics": _timings(state)})
    return int(created["id"])


def wait_prepared(client: httpx.Client, project_id: int, timeout: float = 600) -> dict | None:
    """The newest representation's `rounds_prepared` record (None if no rounds worker made one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = client.get(f"/projects/{project_id}/representations").json()["data"][0]
        if "rounds_prepared" in (newest["metrics"] or {}):
            return newest["metrics"]["rounds_prepared"]
        time.sleep(0.2)
    return None


def wait_follow_up(client: httpx.Client, round_id: int, timeout: float = 600) -> dict | None:
    """The round's `next_challenger` record (how long its follow-up fit took, and the seconds
    waited for it here) once written; None for a round too early in labels to have one."""
    state = client.get(f"/rounds/{round_id}").json()
    metrics = state.get("metrics") or {}
    classes = len(metrics.get("class_counts") or {})
    if not classes or metrics.get("labels", 0) < CNN_CHALLENGE_PER_CLASS * classes:
        return None
    started = time.monotonic()
    while "next_challenger" not in metrics and time.monotonic() - started < timeout:
        time.sleep(0.2)
        metrics = client.get(f"/rounds/{round_id}").json().get("metrics") or {}
    record = metrics.get("next_challenger")
    return {**record, "waited_s": round(time.monotonic() - started, 2)} if record else None


def _timings(state: dict) -> dict[str, object]:
    metrics = state.get("metrics") or {}
    return {
        "status": state["status"],
        "representation": (metrics.get("representation") or {}).get("kind"),
        "vae_trained": (metrics.get("vae") or {}).get("trained"),
        "decoded_images": metrics.get("decoded_images"),
        "labels": metrics.get("labels"),
        "accuracy": metrics.get("accuracy"),
        "challenge": (metrics.get("learner") or {}).get("challenge"),
        "timings": metrics.get("timings"),
    }


def _burn() -> None:
    while True:
        pass


def demo_benchmark(busy_core: bool) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-demo-"))
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp / "demo"), "PYTHONUNBUFFERED": "1"}
    hog = multiprocessing.Process(target=_burn, daemon=True) if busy_core else None
    if hog:
        hog.start()
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    served = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        while served is None and time.monotonic() - started < 600:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    served = time.monotonic() - started
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if hog:
            hog.terminate()
    return {"busy_core": busy_core, "page_served_s": round(served, 1) if served else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--representation-budget", type=float, default=240.0)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--upload-after", type=int, default=0, help="images held back and uploaded after the warm rounds"
    )
    parser.add_argument("--rounds-after-upload", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "round_speed.json")
    args = parser.parse_args()
    command = "python benchmarks/round_speed.py " + " ".join(sys.argv[1:])
    results: dict[str, object] = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {usable_cores()} cores",
    }
    if not args.skip_demo:
        results["demo"] = [demo_benchmark(False), demo_benchmark(True)]
        print(json.dumps(results["demo"]), flush=True)
    results["rounds"] = rounds_benchmark(
        args.warm_rounds, args.representation_budget, args.upload_after, args.rounds_after_upload
    )
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
