"""What encoding images costs with each block of the joint representation (SimCLR's conv encoder,
the k-means patch encoder, both), by the path rounds use (`models.representation.encode`). A round
encodes the validation split once per representation, and any pool image the representation has not
seen; the representation job encodes the whole pool.

The encoders are fitted on the bundled MNIST digits (SimCLR's untrained: its speed does not depend
on its weights). Speed only: nothing here is an accuracy.

    python benchmarks/encode_cost.py > benchmarks/results/encode_cost.md
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.challenger_cost import timed  # noqa: E402
from models.cores import usable_cores  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="500,2000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from app.datasets import load_dataset
    from models.patches import fit_patch_encoder
    from models.representation import ConvEncoder, JointEncoder, encode

    pool = load_dataset("mnist5k").images[:, None].astype(np.float32) / 255.0
    torch.manual_seed(0)
    conv = ConvEncoder(1, (32, 64, 128))
    patches = fit_patch_encoder(pool)
    joint = JointEncoder.fitted(conv, patches, pool)
    encoders = {"SimCLR's conv encoder": conv, "patch encoder": patches, "joint (both)": joint}
    print("# Encoding cost per block of the joint representation")
    print()
    print(f"Command: `{' '.join(['python', 'benchmarks/encode_cost.py', *sys.argv[1:]])}`")
    print(f"Machine: {platform.machine()}, {usable_cores()} cores, torch threads {torch.get_num_threads()}.")
    print(f"Images: MNIST 28x28 grayscale; best of {args.repeats} runs (seconds).")
    print()
    counts = [int(n) for n in args.images.split(",")]
    print("| encoder | " + " | ".join(f"{n} images" for n in counts) + " | per image |")
    print("|---|" + "---|" * (len(counts) + 1))
    for name, encoder in encoders.items():
        cells, per_image = [], 0.0
        for n in counts:
            x = pool[:n]
            best = min(timed(lambda x=x, encoder=encoder: encode(encoder, x))[1] for _ in range(args.repeats))
            cells.append(f"{best:.2f}")
            per_image = best / n
        print(f"| {name} | " + " | ".join(cells) + f" | {per_image * 1000:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
