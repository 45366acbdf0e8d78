"""What a training worker takes from the API on a shared machine, by how the worker is started.

Two measurements per configuration, each with a real worker process started as `suggestlab worker`
starts (a session of its own, at its niceness, with or without its autogroup lowered):

- **share**: the API's process and a worker both want the same core (both pinned to core 0, both
  spinning). The worker's share of that core is what it takes from the API when the API is busy
  (an upload, many annotators). Niceness 15 should leave it a few percent.
- **wake-up**: the worker trains a small CNN with torch on every core while a probe in this process
  (the API's stand-in) sleeps 1 ms at a time, as the API does on each database reply, and records
  how late it wakes. This is the scheduling delay a request pays per round trip.

    python benchmarks/worker_priority.py --out benchmarks/results/worker_priority.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# (niceness, autogroup lowered) of the worker: before this change only the niceness was set.
CONFIGS: dict[str, tuple[int, bool] | None] = {
    "nothing training": None,
    "nice 15, niceness only (before)": (15, False),
    "nice 15 + autogroup (background worker now)": (15, True),
    "nice 5, niceness only (before)": (5, False),
    "nice 5 + autogroup (round worker now)": (5, True),
}

WORKER = """
import os, sys
nice, autogroup, work = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
os.nice(nice)
if autogroup:
    from app.cli import lower_autogroup
    lower_autogroup(nice)
if work == "spin":
    os.sched_setaffinity(0, {0})
    print("ready", flush=True)
    while True:
        pass
import torch
torch.set_num_threads(os.cpu_count() or 1)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(64, 3, 32, 32)
print("ready", flush=True)
while True:
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
"""


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _start(worker: tuple[int, bool], work: str, own_session: bool) -> subprocess.Popen[str]:
    """`WORKER` at this (niceness, autogroup lowered), spinning on core 0 or training."""
    nice, autogroup = worker
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(nice), "1" if autogroup else "0", work],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=own_session,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def share(worker: tuple[int, bool], seconds: float) -> float:
    """The worker's share of one core that the API's process wants all of."""
    api = _start((0, False), "spin", own_session=False)  # the API's stand-in, in this session
    job = _start(worker, "spin", own_session=True)
    try:
        time.sleep(1)
        a0, w0 = _cpu_ticks(api.pid), _cpu_ticks(job.pid)
        time.sleep(seconds)
        a1, w1 = _cpu_ticks(api.pid), _cpu_ticks(job.pid)
    finally:
        _stop(api, job)
    return (w1 - w0) / max(1, (a1 - a0) + (w1 - w0))


def wakeups(worker: tuple[int, bool] | None, seconds: float, sleep_s: float = 0.001) -> np.ndarray:
    """How late (ms) each 1 ms sleep of this process ended while the worker trains."""
    job = None
    if worker is not None:
        job = _start(worker, "train", own_session=True)
        time.sleep(2)  # torch's threads up and busy
    late = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            time.sleep(sleep_s)
            late.append(time.perf_counter() - t - sleep_s)
    finally:
        if job is not None:
            _stop(job)
    return np.asarray(late) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="each configuration, interleaved")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    autogroup = Path("/proc/self/autogroup")
    results = []
    for repeat in range(args.repeats):
        for name, worker in CONFIGS.items():
            late = wakeups(worker, args.seconds)
            row: dict[str, object] = {
                "worker": name,
                "repeat": repeat,
                "worker_share_of_a_core_the_api_wants": None if worker is None else round(share(worker, 5), 3),
                "wakeups": len(late),
                "wakeup_late_ms": {f"p{q}": round(float(np.percentile(late, q)), 3) for q in (50, 95, 99)},
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    facts = {
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "autogroup": autogroup.exists(),
    }
    if args.out:
        command = "python benchmarks/worker_priority.py " + " ".join(sys.argv[1:])
        args.out.write_text(json.dumps({"command": command, "machine": facts, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
