"""A million-image representation and its index (issue #11): how long the background job's work takes
on this device, and how good nearest-neighbour search is over the features it makes.

The pool is N augmented copies of the 5,000 bundled MNIST digits (shifted, contrast and brightness
jittered, pixel noise), 28x28 grayscale, held as uint8 bytes the way the worker's memory-mapped pixel
cache holds them (models.pixels.PoolPixels). Every step is the product's:
  1. SimCLR with this device's setting and time budget (models.representation.SETTINGS), as the
     worker's representation job runs it;
  2. encoding every pool image;
  3. `LatentIndex` over the features as rounds build it above `exact_max` (HNSW);
  4. 1,000 held-out queries against exact search over the same features: recall@10 and query time
     at several efSearch values;
  5. `PoolGraph.build`, the learner's 10-neighbour graph of the pool, through the same HNSW index.

    python benchmarks/representation_1m.py --out benchmarks/results/representation_1m.json
    python benchmarks/representation_1m.py --n 100000        # a quicker look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.latent_index import LatentIndex  # noqa: E402
from models.learner import PoolGraph  # noqa: E402
from models.pixels import PoolPixels  # noqa: E402
from models.representation import SimCLR, setting_for  # noqa: E402
from models.training import select_device  # noqa: E402


def augmented_bytes(digits: np.ndarray, n: int, rng: np.random.Generator, chunk: int = 65_536) -> np.ndarray:
    """[n, 1, 28, 28] uint8: random digits, each shifted up to 3 px, jittered and noised."""
    out = np.empty((n, 1, 28, 28), dtype=np.uint8)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pick = rng.integers(0, len(digits), m)
        out[start : start + m, 0] = augment(digits[pick], rng)
    return out


def augment(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[m, 28, 28] uint8 digits, each shifted up to 3 px, jittered and noised (a copy)."""
    m = len(digits)
    rows = digits.astype(np.float32) / 255.0
    dx, dy = rng.integers(-3, 4, m), rng.integers(-3, 4, m)
    for shift in range(-3, 4):
        rows[dx == shift] = np.roll(rows[dx == shift], shift, axis=2)
        rows[dy == shift] = np.roll(rows[dy == shift], shift, axis=1)
    rows *= rng.uniform(0.7, 1.3, (m, 1, 1)).astype(np.float32)
    rows += rng.uniform(-0.1, 0.1, (m, 1, 1)).astype(np.float32)
    rows += rng.normal(0, 0.05, rows.shape).astype(np.float32)
    return (np.clip(rows, 0, 1) * 255).round().astype(np.uint8)


def cpu_name() -> str:
    """The CPU's model name where Linux reports one, else its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def device_name(device: object | None = None) -> str:
    """What a run's numbers were measured on: the GPU, or the CPU, its cores and the precision the
    representation trains in there, which decides its features and its speed (on two 2-core CPUs of
    this project MNIST-5k's took 142 s in bfloat16 and 396 s in float32). `device` None: CUDA when
    there is one."""
    import torch

    from models.representation import native_cpu_bfloat16

    if getattr(device, "type", None) == "cuda" or (device is None and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)} (CUDA), {usable_cores()} CPU cores"
    precision = "bfloat16" if native_cpu_bfloat16() else "float32"
    return f"CPU only ({cpu_name()}, {platform.machine()}, trains in {precision}), {usable_cores()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="32,64,128,256")
    parser.add_argument("--time-budget-s", type=float, default=None, help="default: the device setting's")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    digits = load_dataset("mnist5k").images
    device = select_device()
    figures: dict[str, object] = {
        "command": " ".join(["python benchmarks/representation_1m.py", *sys.argv[1:]]),
        "device": device_name(device),
        "n": args.n,
        "date": time.strftime("%Y-%m-%d"),
    }

    t = time.monotonic()
    pool = PoolPixels(augmented_bytes(digits, args.n, rng), np.arange(args.n))
    queries_x = augmented_bytes(digits, args.queries, rng).astype(np.float32) / 255.0
    figures["pool_made_s"] = round(time.monotonic() - t, 1)
    print(f"pool of {args.n:,} made in {figures['pool_made_s']} s", flush=True)

    setting = setting_for(device.type)
    if args.time_budget_s is not None:
        setting["time_budget_s"] = args.time_budget_s
    started = time.monotonic()
    model = SimCLR.from_setting(setting, seed=0, device=device).fit(pool)
    history = model.history
    assert history is not None
    figures["representation"] = {
        "setting": {k: list(v) if isinstance(v, tuple) else v for k, v in setting.items()},
        "train_s": round(history.seconds, 1),
        "steps": history.steps,
        "passes": round(history.steps / history.steps_per_epoch, 3),
        "loss_first_last": [round(history.losses[0], 4), round(history.losses[-1], 4)],
    }
    print(f"representation: {figures['representation']}", flush=True)

    t = time.monotonic()
    features = model.transform(pool)
    queries = model.transform(queries_x)
    figures["encode_s"] = round(time.monotonic() - t, 1)
    print(f"encoded in {figures['encode_s']} s", flush=True)

    t = time.monotonic()
    index = LatentIndex().fit(features, np.arange(args.n))
    figures["index_s"] = round(time.monotonic() - t, 1)
    figures["index"] = "HNSW" if index.approximate else "exact"
    figures["total_s"] = round(time.monotonic() - started, 1)
    print(f"index ({figures['index']}) in {figures['index_s']} s; total {figures['total_s']} s", flush=True)

    t = time.monotonic()
    exact = faiss.IndexFlatL2(features.shape[1])
    exact.add(features)
    _, truth = exact.search(queries, args.k)
    figures["exact_search_s"] = round(time.monotonic() - t, 2)
    del exact
    searches = []
    for ef in (int(e) for e in args.ef.split(",")):
        if index.approximate:
            index.index.hnsw.efSearch = ef
        index.kneighbors(queries[:10], args.k)
        t = time.monotonic()
        _, found = index.kneighbors(queries, args.k)
        seconds = time.monotonic() - t
        recall = float(np.mean([len(set(found[i]) & set(truth[i])) / args.k for i in range(len(queries))]))
        searches.append({"ef_search": ef, "recall": round(recall, 4), "seconds": round(seconds, 3)})
        print(f"efSearch {ef}: recall@{args.k} {recall:.4f} in {seconds:.3f} s", flush=True)
        if not index.approximate:
            break
    figures["searches"] = searches
    del index

    t = time.monotonic()
    PoolGraph.build(features)
    figures["pool_graph_s"] = round(time.monotonic() - t, 1)
    print(f"pool graph in {figures['pool_graph_s']} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
