"""What reading a decoded pool back from the worker's pixel cache costs a round (issue #11, "a warm
round on 1M images"): `worker.data.PixelCache.load` for every pool key, with nothing to decode.

The cache is written directly (N rows of uint8 noise under content-hash-like keys), as a pool that
earlier rounds already decoded would leave it; no image is stored, since none is read. The load is
repeated `--repeats` times in one process, as a worker serves one round after another.

    python benchmarks/pixel_cache_load.py --out benchmarks/results/pixel_cache_load.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import worker.data  # noqa: E402
from app.storage import LocalStorage  # noqa: E402
from models.cores import usable_cores  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [f"projects/1/images/{hashlib.sha256(str(i).encode()).hexdigest()}.png" for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = worker.data.PixelCache(Path(tmp) / "cache", 28, 1)
        t = time.monotonic()
        for start in range(0, args.n, 50_000):
            chunk = keys[start : start + 50_000]
            cache.append(chunk, rng.integers(0, 256, (len(chunk), 1, 28, 28), dtype=np.uint8))
        write_s = time.monotonic() - t
        storage = LocalStorage(Path(tmp) / "store")
        # The first load as a newly started worker makes it: nothing of the keys file read yet. (Code
        # before stop 30 kept nothing between loads, so there every load is a first one.)
        getattr(worker.data, "_KEY_ROWS", {}).clear()
        loads = []
        for _ in range(args.repeats):
            reader = worker.data.PixelCache(Path(tmp) / "cache", 28, 1)  # a round makes its own cache object
            t = time.monotonic()
            pixels = reader.load(storage, keys)
            loads.append(round(time.monotonic() - t, 3))
            assert reader.decoded_last == 0 and len(pixels) == args.n
        print(json.dumps({"write_s": round(write_s, 1), "load_s": loads}))
    if args.out:
        result = {
            "command": " ".join(["python", "benchmarks/pixel_cache_load.py", *sys.argv[1:]]),
            "machine": f"CPU only, {usable_cores()} cores",
            "rows": args.n,
            "write_s": round(write_s, 1),
            "load_s": loads,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
