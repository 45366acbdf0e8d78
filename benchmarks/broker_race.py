"""How often a worker polling the embedded broker's folder would see a message file that is not
whole yet: kombu's own filesystem transport against SuggestLab's (app/core/broker.py).

Two writer processes put N messages each (4 KB payloads, as a round's task message is small) while
this process lists the folder as fast as it can and reads every message file it sees.

    python benchmarks/broker_race.py > benchmarks/results/broker_race.md
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITER = """
import sys
from kombu import Connection
folder, control, transport, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": control}
with Connection("filesystem://", transport=transport, transport_options=options) as conn:
    queue = conn.SimpleQueue("training")
    for n in range(count):
        queue.put({"n": n, "padding": "x" * 4000})
"""


def peek(transport: str, count: int) -> tuple[int, int]:
    root = Path(tempfile.mkdtemp(prefix="broker-race-"))
    folder, control = root / "queue", root / "control"
    folder.mkdir()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(control), transport, str(count)], cwd=ROOT)
        for _ in range(2)
    ]
    seen = incomplete = 0
    while any(w.poll() is None for w in writers):
        for name in os.listdir(folder):
            if name.startswith(".") or not name.endswith(".training.msg"):
                continue
            try:
                raw = (folder / name).read_bytes()
            except FileNotFoundError:
                continue
            seen += 1
            try:
                json.loads(raw)
            except ValueError:
                incomplete += 1
            (folder / name).unlink(missing_ok=True)
    shutil.rmtree(root)
    return seen, incomplete


def main() -> int:
    count, repeats = 1500, 3
    print("# Embedded broker: message files seen before they were whole\n")
    print("`python benchmarks/broker_race.py`: 2 writer processes x 1,500 messages, a reader listing the")
    print(f"folder as fast as it can; {repeats} runs per transport, {os.cpu_count()} cores.\n")
    print("| transport | run | files read | empty or cut short |")
    print("|---|---|---|---|")
    for label, transport in (("kombu filesystem", "filesystem"), ("app.core.broker", "app.core.broker:Transport")):
        for run in range(repeats):
            seen, incomplete = peek(transport, count)
            print(f"| {label} | {run + 1} | {seen} | {incomplete} ({incomplete / max(seen, 1):.1%}) |", flush=True)
    print("\nA worker that reads such a file raises a JSON error in its consumer and exits (kombu 5.x);")
    print("tests/app/test_embedded_worker.py shows the same check and the worker that survives it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
