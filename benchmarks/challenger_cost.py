"""What the networks that challenge the head cost on this machine: one fit of the CNN from scratch
(and, with --fine-tune, of the representation's encoder fine-tuned with a head) at a few label
counts, and the CNN's predictions over a pool, by the path rounds use (BatchNorm folded,
channels-last, small batches on a CPU) and by the plain one it replaced.

The images are the bundled MNIST digits (28x28; tiled to the pool size). Speed only: nothing here is
an accuracy. Since stop 20 the fits run after a round's batch is out (worker/pipeline.py); the
predictions are on the round's path whenever the CNN predicts.

    python benchmarks/challenger_cost.py > benchmarks/results/challenger_cost.md
    python benchmarks/challenger_cost.py --labels 300,1000 --fine-tune
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.datasets import load_dataset  # noqa: E402
from models.cores import usable_cores  # noqa: E402
from models.head import fit_head  # noqa: E402
from models.learner import fine_tunable  # noqa: E402
from models.representation import ConvEncoder  # noqa: E402
from models.training import fit_classifier, predict_proba, select_device  # noqa: E402

T = TypeVar("T")


@torch.no_grad()
def plain_predictions(model: torch.nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The predictions as rounds made them before stop 20: the network in its default (NCHW) layout,
    BatchNorm unfolded, batches of 1,024."""
    device = next(model.parameters()).device
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()
    out = [
        torch.softmax(model(torch.as_tensor(x[s : s + batch_size], device=device)), 1).cpu().numpy()
        for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def timed(work: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = work()
    return result, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="300,1000,3000", help="label counts to fit on")
    parser.add_argument("--pool", type=int, default=10_000, help="images to predict")
    parser.add_argument("--fine-tune", action="store_true", help="also time the fine-tuned encoder (slow on a CPU)")
    args = parser.parse_args()
    device = select_device()
    data = load_dataset("mnist5k")
    reps = -(-args.pool // len(data.labels))
    pool = np.tile(data.images, (reps, 1, 1))[: args.pool, None].astype(np.float32) / 255.0
    labels = np.tile(data.labels, reps)[: args.pool]
    command = "python benchmarks/challenger_cost.py " + " ".join(sys.argv[1:])
    print("# What the head's challengers cost\n")
    print(f"Command: `{command.strip()}`. Machine: {platform.machine()}, {usable_cores()} cores, {device}.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads. MNIST digits, 28x28.\n")
    print("| labels | CNN fit (s) | fine-tuned fit (s) |")
    print("|---|---|---|")
    cnn = None
    encoder = ConvEncoder(1, (32, 64, 128)).to(device).eval()
    for n in (int(v) for v in args.labels.split(",")):
        x, y = pool[:n], labels[:n]
        cnn, cnn_s = timed(lambda x=x, y=y: fit_classifier(x, y, 10, seed=0, device=device))
        tuned_s = "-"
        if args.fine_tune:
            features = np.random.default_rng(0).normal(size=(n, encoder.out_dim)).astype(np.float32)
            network = fine_tunable(encoder, fit_head(features, y, 10))
            _, seconds = timed(
                lambda x=x, y=y, network=network: fit_classifier(
                    x, y, 10, seed=0, device=device, model=network, lr=3e-4
                )
            )
            tuned_s = f"{seconds:.1f}"
        print(f"| {n:,} | {cnn_s:.1f} | {tuned_s} |", flush=True)
    assert cnn is not None
    fast, fast_s = timed(lambda: predict_proba(cnn, pool))
    plain, plain_s = timed(lambda: plain_predictions(cnn, pool))
    agree = float((fast.argmax(1) == plain.argmax(1)).mean())
    print(f"\nThe CNN's predictions over {args.pool:,} images:\n")
    print("| path | seconds | images/s |")
    print("|---|---|---|")
    print(f"| plain (before stop 20) | {plain_s:.2f} | {args.pool / plain_s:,.0f} |")
    print(f"| folded, channels-last (rounds now) | {fast_s:.2f} | {args.pool / fast_s:,.0f} |")
    print(
        f"\nLargest difference in a probability: {np.abs(fast - plain).max():.1e}; "
        f"same predicted class for {agree:.2%} of the images."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
