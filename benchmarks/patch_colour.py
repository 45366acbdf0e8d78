"""The patch block on colour images: the paper's RGB patches against patches read along each patch's
own dominant colour axis (models.patches.colour_axis).

For each dataset, the pool part (what a project's representation job trains on; the test split is
never seen) is learned once with the CPU setting as the worker runs it (its pool-scaled time budget,
the paper's patch block). Then a colour-axis patch block is learned on the same pool and put beside
the same SimCLR block, so the two arms differ in the patch block alone. For each seed and label
budget, the same random labels for both, the learner a round fits (models.learner.fit_learner, the
block choice included), scored on the test split. Differences are paired by seed.

    python benchmarks/patch_colour.py --datasets shapes10k,glyphs10k-rgb,symbols10k-rgb \
        > benchmarks/results/patch_colour.md

The rule, written on 2026-12-07 before the first run of this script (a scratch probe of the patch
block alone on shapes10k chose the candidate): the CPU and GPU settings' patch blocks read colour
patches along their colour axis if, on shapes10k (the tuning set) on this machine, the product
learner's mean accuracy over 100, 300 and 1,000 labels is at least 1.0 point above the paper's
block, and not more than 1.0 point below it at any of the three. The held-out sets (glyphs10k-rgb,
symbols10k-rgb) are run after that and decide nothing. Grayscale pools are not run: one channel has
one axis, so their encoder is unchanged (tests/models/test_patches.py).

What that run showed (benchmarks/results/patch_colour.md): shapes10k +1.17 / +0.09 / +0.00 points
at 100 / 300 / 1,000 labels, a mean of +0.42, so the rule above did not adopt it; then glyphs10k-rgb
+1.0 / +1.0 / +2.4 and symbols10k-rgb +13.8 / +20.4 / +20.1. Those two sets have now informed the
decision, so they cannot confirm it. A second rule, written on 2026-12-07 after that run and before
the set it reads existed: textures10k-rgb (app.textures, generated and pinned after the first run,
nothing run on it before this script) decides alone. Adopt the colour axis if there the mean gain
over 100, 300 and 1,000 labels is at least +0.5 point and no budget's paired 95% interval lies
wholly below zero; otherwise the settings keep the paper's patches.

    python benchmarks/patch_colour.py --datasets textures10k-rgb >> benchmarks/results/patch_colour.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.learner_compare import paired_learner_row  # noqa: E402
from models.simulate import load_simulation_data  # noqa: E402

ARMS = ("paper", "colour-axis")


def learn(data: Any, cache: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Pool and test features of both arms, and what the training did."""
    import torch

    from models.patches import fit_patch_encoder
    from models.representation import JointEncoder, SimCLR, setting_for

    size = data.pool_x.shape[-1]
    path = cache / f"patch-colour-{data.name}-{len(data.pool_y)}.npz"
    if path.is_file():
        with np.load(path) as saved:
            arms = {arm: (saved[f"{arm}-pool"], saved[f"{arm}-test"]) for arm in ARMS}
            return arms, json.loads(str(saved["info"]))
    setting = setting_for("cpu", pool_images=len(data.pool_x), image_size=size)
    setting["patch_colour_axis"] = False
    started = time.monotonic()
    model = SimCLR.from_setting(setting, seed=0, device=torch.device("cpu")).fit(data.pool_x)
    seconds = time.monotonic() - started
    history = model.history
    assert history is not None and isinstance(model.encoder, JointEncoder)
    started = time.monotonic()
    axis_block = fit_patch_encoder(data.pool_x, seed=0, colour_axis=True)
    axis_seconds = time.monotonic() - started
    axis_encoder = JointEncoder.fitted(model.encoder.conv, axis_block, data.pool_x)
    info = {
        "budget_s": setting["time_budget_s"],
        "seconds": round(seconds, 1),
        "colour_axis_block_s": round(axis_seconds, 1),
        "passes": round(history.steps / history.steps_per_epoch, 2),
        "epochs_asked": setting["epochs"],
        "precision": "bfloat16" if setting["bfloat16"] else "float32",
    }
    arms = {"paper": (model.transform(data.pool_x), model.transform(data.test_x))}
    model.encoder = axis_encoder
    arms["colour-axis"] = (model.transform(data.pool_x), model.transform(data.test_x))
    cache.mkdir(parents=True, exist_ok=True)
    saved = {f"{arm}-{part}": f for arm, (pool, test) in arms.items() for part, f in (("pool", pool), ("test", test))}
    np.savez(path, info=json.dumps(info), **saved)
    return arms, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes10k")
    parser.add_argument("--labels", default="40,100,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/suggestlab-bench/patch-colour"))
    args = parser.parse_args()

    from benchmarks.representation_1m import device_name
    from models.learner import PoolGraph
    from models.representation import feature_blocks, setting_for

    blocks = feature_blocks(setting_for("cpu"))
    print("# The patch block on colour images: the paper's RGB patches against each patch's colour axis")
    print()
    print(f"Command: `python benchmarks/patch_colour.py {' '.join(sys.argv[1:])}`")
    print()
    print(f"Device: {device_name()}. Random labels, {args.seeds} seeds (the same labels for both arms),")
    print("test accuracy of the learner a round fits, mean ± 95% interval; the difference is paired by seed.")
    print("Both arms share one SimCLR block, trained with the CPU setting and its pool-scaled budget.")
    for name in args.datasets.split(","):
        data = load_simulation_data(name)
        size = data.pool_x.shape[-1]
        arms, info = learn(data, args.cache)
        print()
        print(f"## {name} (pool {len(data.pool_x)} of {size}x{size}, test {len(data.test_y)})")
        print()
        print(
            f"SimCLR and the paper's patch block: {info['seconds']} s of a {info['budget_s']:.0f} s budget, "
            f"{info['passes']} passes of {info['epochs_asked']}, {info['precision']}. The colour-axis "
            f"patch block: {info['colour_axis_block_s']} s to learn."
        )
        print()
        print("| labels | paper's patches | colour-axis patches | colour axis - paper (points) |")
        print("|---|---|---|---|")
        graphs = {arm: PoolGraph.build(pool) for arm, (pool, _) in arms.items()}
        for budget in [int(b) for b in args.labels.split(",")]:
            print(paired_learner_row(data, arms, graphs, budget, args.seeds, blocks))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
