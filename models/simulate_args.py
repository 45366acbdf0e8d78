"""Command-line arguments of `suggestlab simulate` (kept apart so the CLI parser stays torch-free)."""

from __future__ import annotations

import argparse


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist5k", help="mnist5k, digits, shapes10k, or a folder with labels.csv")
    parser.add_argument("--strategies", default="random,entropy,snn")
    parser.add_argument("--initial", type=int, default=20, help="random labels to start from")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="results")
    parser.add_argument("--params", default="", help='JSON per strategy, e.g. {"snn": {"alpha": 2}}')
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--vae-epochs", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument(
        "--learner",
        default="simclr",
        choices=["simclr", "cnn"],
        help="simclr: head on a self-supervised representation of the pool; cnn: small CNN from scratch",
    )
    parser.add_argument(
        "--representation-epochs",
        type=int,
        default=None,
        help="SimCLR epochs over the pool (default: the device setting, 50 on a CPU, 150 on a GPU)",
    )
    parser.add_argument(
        "--fine-tune",
        action="store_true",
        help="as a project's fine_tune setting: from 30 labels per class the representation's encoder, "
        "fine-tuned with the head, challenges the head (slower: one or two more network fits per round)",
    )
    parser.add_argument("--no-full-pool", action="store_true", help="skip the full-pool reference accuracy")
