"""How long a project's simulation takes through REST, and which representation its curves select in.

    python benchmarks/simulation_speed.py --out benchmarks/results/simulation_speed.json

The embedded default (SQLite, embedded workers) gets a project whose pool is the 5,000 bundled MNIST
digits, uploaded in one request with their labels (the simulation's oracle). Once the project's
representation job is ready, a simulation of `random` and `auto` (20 + 20 x 5 labels, one seed) is
started over REST. The result holds the representation job's figures, the simulation's wall time
from its request, and the summary's `learner` and `representation` (absent before the simulation
read the project's representation).

To measure older code, run this script from a worktree of that code with PYTHONPATH set to it:

    cd WORKTREE && PYTHONPATH=$PWD python /path/to/benchmarks/simulation_speed.py --out /path/to/result.json

The service starts as `python -m app.cli` in that directory and environment, so it runs the
worktree's code; `-m` puts the working directory first on the import path.
"""

from __future__ import annotations

import argparse
import json
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

from app.datasets import load_dataset, to_zip  # noqa: E402
from benchmarks.api_load import cli, free_port, start_serve, wait_healthy  # noqa: E402
from benchmarks.round_speed import wait_representation  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SIMULATION = {"strategies": ["random", "auto"], "initial": 20, "batch": 20, "rounds": 5, "seeds": 1}


def wait_simulation(client: httpx.Client, simulation_id: int, timeout: float = 3600) -> tuple[dict, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = client.get(f"/simulations/{simulation_id}").json()
        if state["status"] not in ("queued", "running"):
            return state, time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"simulation {simulation_id}")


def simulation_benchmark() -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="suggestlab-simulation-"))
    env = {**os.environ, "SUGGESTLAB_DATA_DIR": str(tmp)}
    port = free_port()
    admin = cli(env, "create-user", "--name", "admin", "--role", "admin")
    serve = start_serve(env, port)
    try:
        wait_healthy(port)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {admin}"}, timeout=600
        )
        data = load_dataset("mnist5k")
        pid = client.post("/projects", json={"name": "simulated", "classes": data.classes}).json()["id"]
        archive = to_zip(data, np.arange(len(data.labels)), with_labels=True)
        client.post(f"/projects/{pid}/images", files={"files": ("pool.zip", archive)}).raise_for_status()
        representation = wait_representation(client, pid)
        created = client.post(f"/projects/{pid}/simulations", json=SIMULATION)
        created.raise_for_status()
        state, wall = wait_simulation(client, created.json()["id"])
        summary = state.get("summary") or {}
        return {
            "representation_job": {k: representation[k] for k in ("status", "wall_s", "metrics")},
            "simulation": {
                "status": state["status"],
                "error": state.get("error"),
                "wall_s": round(wall, 1),
                "learner": summary.get("learner"),
                "representation": summary.get("representation"),
                "full_pool_accuracy": summary.get("full_pool_accuracy"),
                "final_accuracy": {
                    name: curve["mean_accuracy"][-1] for name, curve in (summary.get("strategies") or {}).items()
                },
            },
        }
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def code_commit() -> str:
    """The commit of the code the service runs: the first PYTHONPATH entry's checkout, else this one."""
    tree = (os.environ.get("PYTHONPATH") or str(ROOT)).split(os.pathsep)[0]
    done = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{tree} at {done.stdout.strip() or 'unknown'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "simulation_speed.json")
    args = parser.parse_args()
    out = {
        "command": " ".join(["python", "benchmarks/simulation_speed.py", *sys.argv[1:]]),
        "code": code_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **simulation_benchmark(),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
