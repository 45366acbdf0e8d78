"""Simulated active learning with an oracle: "which strategy fits my data?"

Each (strategy, seed) run starts from `initial` random labels of the pool, then repeats: train,
evaluate on the held-out test split, select `batch` images (their oracle labels join the training
set). Every step is `models.active.run_step`, the function real rounds use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.cores import usable_cores


@dataclass
class GivenRepresentation:
    """Features made outside the simulation (a project's own representation), used instead of
    learning one: the pool's and the test split's rows, the encoder that made them, and the widths of
    the blocks they are made of (None: one block)."""

    pool: np.ndarray
    test: np.ndarray
    encoder: Any
    blocks: list[int] | None


@dataclass
class SimulationData:
    name: str
    pool_x: np.ndarray  # [N, C, S, S] float32 in [0, 1]
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    given: GivenRepresentation | None = None


@dataclass
class SimulationConfig:
    strategies: list[str]
    initial: int = 20
    batch: int = 20
    rounds: int = 15
    seeds: int = 5
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    vae_epochs: int = 30
    latent_dim: int = 32
    jobs: int = 1
    # "simclr": a calibrated head on a self-supervised representation of the pool (the product's
    # learner); "cnn": the SmallCNN trained from scratch on the labels alone (the earlier learner).
    learner: str = "simclr"
    # None: the epochs of the device's setting (models.representation.SETTINGS), as a project gets.
    representation_epochs: int | None = None
    # None: the setting of the device this runs on. "cuda" on a CPU machine reads the GPU setting's
    # features from the cache, so curves of a representation trained on a GPU can be run anywhere.
    representation_setting: str | None = None
    # A project's `fine_tune` setting: the representation's encoder, fine-tuned with the head on the
    # labelled pixels, joins the challenge from 30 labels per class.
    fine_tune: bool = False


def split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def load_simulation_data(dataset: str, *, test_fraction: float = 0.2, image_size: int | None = None) -> SimulationData:
    """mnist5k, digits, or a folder with images and a `labels.csv` of `filename,label` rows."""
    from app.datasets import DATASETS

    if dataset in DATASETS:
        from app.datasets import load_dataset

        data = load_dataset(dataset)
        size = image_size or data.image_size
        x = _resize(data.pixels(), size)
        pool_x, pool_y, test_x, test_y = split(x, data.labels, test_fraction)
        return SimulationData(dataset, pool_x, pool_y, test_x, test_y, data.classes)
    if not Path(dataset).is_dir():
        raise ValueError(f"{dataset!r} is neither a bundled dataset ({', '.join(DATASETS)}) nor a folder")
    return _load_folder(Path(dataset), test_fraction, image_size or 28)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size:
        return np.ascontiguousarray(x, dtype=np.float32)
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.as_tensor(x), size=(size, size), mode="bilinear", align_corners=False).numpy()


def _load_folder(folder: Path, test_fraction: float, size: int) -> SimulationData:
    import csv

    from PIL import Image as PILImage

    labels_file = folder / "labels.csv"
    if not labels_file.is_file():
        raise ValueError(f"{folder} has no labels.csv (rows: filename,label)")
    rows = [r for r in csv.reader(labels_file.read_text(encoding="utf-8-sig").splitlines()) if len(r) == 2]
    if rows and rows[0][0].strip().lower() == "filename":
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{labels_file} lists no images")
    classes = sorted({label.strip() for _, label in rows})
    if len(classes) < 2:
        raise ValueError(f"{labels_file} names {len(classes)} class; a simulation needs at least 2")
    images = []
    for name, _ in rows:
        path = folder / name.strip()
        if not path.is_file():
            raise ValueError(f"{labels_file} lists {name.strip()!r}, which is not a file in {folder}")
        try:
            with PILImage.open(path) as img:
                images.append(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for bytes it cannot read
            raise ValueError(f"{path} is not a readable image ({exc})") from None
    channels = 1 if all(_is_gray(img) for img in images) else 3
    arrays = [
        np.asarray(img.convert("L" if channels == 1 else "RGB").resize((size, size)), dtype=np.float32) / 255.0
        for img in images
    ]
    x = np.stack([a[None] if channels == 1 else a.transpose(2, 0, 1) for a in arrays])
    y = np.asarray([classes.index(label.strip()) for _, label in rows], dtype=np.int64)
    pool_x, pool_y, test_x, test_y = split(x, y, test_fraction)
    return SimulationData(folder.name, pool_x, pool_y, test_x, test_y, classes)


def _is_gray(img: Any) -> bool:
    arr = np.asarray(img)
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def _vae_for(data: SimulationData, seed: int, config: SimulationConfig, cache: Path | None) -> Any:
    import torch

    from models.vae_training import fit_vae

    path = (
        cache / f"vae-{data.name}-{len(data.pool_y)}-{config.latent_dim}-{config.vae_epochs}-{seed}.pt"
        if cache
        else None
    )
    if path is not None and path.is_file():
        return torch.load(path, weights_only=False)
    vae, _ = fit_vae(data.pool_x, latent_dim=config.latent_dim, epochs=config.vae_epochs, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vae, path)
    return vae


_FEATURES_IN_MEMORY: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_ENCODER_IN_MEMORY: dict[tuple[str, str], Any] = {}


def _representation_setting(config: SimulationConfig) -> dict[str, Any]:
    from models.representation import setting_for
    from models.training import select_device

    return setting_for(config.representation_setting or select_device().type, config.representation_epochs)


def _cache_path(data: SimulationData, tag: str, cache: Path | None) -> Path | None:
    return cache / f"simclr-{data.name}-{len(data.pool_y)}-{tag}.npz" if cache is not None else None


def representation_cache(data: SimulationData, config: SimulationConfig, cache: Path | None) -> Path | None:
    """Where the features of this dataset under the config's representation setting are cached."""
    from models.representation import setting_tag

    return _cache_path(data, setting_tag(_representation_setting(config)), cache)


def representation_for(
    data: SimulationData, config: SimulationConfig, cache: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """SimCLR features of the pool and the test split: trained once per dataset on the pool alone
    (labels unused, test images unseen), shared by every strategy and seed, as in a real project."""
    from models.representation import SimCLR, setting_tag
    from models.training import select_device

    if data.given is not None:
        return data.given.pool, data.given.test
    device = select_device()
    # No time budget here: a simulation must give the same encoder on every machine of a kind.
    setting = _representation_setting(config)
    tag = setting_tag(setting)
    path = _cache_path(data, tag, cache)
    if path is not None and path.is_file():
        with np.load(path) as saved:
            return saved["pool"], saved["test"]
    # Without a cache folder (a simulation in the worker) the features are kept in memory, keyed by
    # the images themselves, so the curves of one run share one encoder instead of training one each.
    key = _memory_key(data, config)
    if path is None and key in _FEATURES_IN_MEMORY:
        return _FEATURES_IN_MEMORY[key]
    setting.pop("time_budget_s")
    simclr = SimCLR.from_setting(setting, seed=0, device=device).fit(data.pool_x)
    pool, test = simclr.transform(data.pool_x), simclr.transform(data.test_x)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, pool=pool, test=test)
        _save_encoder(simclr.encoder, _encoder_path(path))
    else:
        _FEATURES_IN_MEMORY.clear()  # one dataset's features at a time bound the memory
        _ENCODER_IN_MEMORY.clear()
        _FEATURES_IN_MEMORY[key] = (pool, test)
        _ENCODER_IN_MEMORY[key] = simclr.encoder
    return pool, test


def _memory_key(data: SimulationData, config: SimulationConfig) -> tuple[str, str]:
    from models.representation import setting_tag

    digest = hashlib.sha1(np.ascontiguousarray(data.pool_x).tobytes())
    digest.update(np.ascontiguousarray(data.test_x).tobytes())
    return digest.hexdigest(), setting_tag(_representation_setting(config))


def _encoder_path(features_path: Path) -> Path:
    return features_path.with_name(features_path.stem + "-encoder.pt")


def _save_encoder(encoder: Any, path: Path) -> None:
    import torch

    from models.representation import encoder_config

    state = {name: tensor.detach().cpu() for name, tensor in encoder.state_dict().items()}
    torch.save({"config": encoder_config(encoder), "state_dict": state}, path)


def encoder_for(data: SimulationData, config: SimulationConfig, cache: Path | None) -> Any:
    """The encoder that made `representation_for`'s features (what a project's `fine_tune` setting
    fine-tunes). A features cache written before encoders were kept beside it is trained again, and
    both are rewritten: training is seeded, so on one machine the features come out the same."""
    import torch

    from models.representation import build_encoder
    from models.training import select_device

    if data.given is not None:
        return data.given.encoder.to(select_device()).eval()
    path = representation_cache(data, config, cache)
    if path is None:
        representation_for(data, config, cache)
        return _ENCODER_IN_MEMORY[_memory_key(data, config)]
    if not _encoder_path(path).is_file():
        if path.is_file() and config.representation_setting not in (None, select_device().type):
            raise ValueError(
                f"{path} holds features of the {config.representation_setting} setting without their encoder; "
                "fine-tuning needs the encoder: train that setting's representation again on its device"
            )
        path.unlink(missing_ok=True)
        representation_for(data, config, cache)
    payload = torch.load(_encoder_path(path), map_location="cpu", weights_only=True)
    encoder = build_encoder(payload["config"])
    encoder.load_state_dict(payload["state_dict"])
    return encoder.to(select_device()).eval()


def _needs_vae(strategy: str, config: SimulationConfig) -> bool:
    """With a learned representation only the decoder strategies need a VAE; without one, every
    latent-space strategy selects among VAE codes."""
    if config.learner == "simclr":
        return strategy in ("si", "snn-plain", "hybrid")
    return strategy not in ("random", "entropy", "margin")


def run_one(
    data: SimulationData,
    strategy: str,
    seed: int,
    config: SimulationConfig,
    cache: Path | None = None,
    on_round: Callable[[], None] | None = None,
    on_step: Callable[[dict[str, Any], Any], None] | None = None,
) -> list[dict[str, Any]]:
    """One learning curve: a row per round with the number of labels and the test accuracy.
    `on_step` sees each round's row and its `run_step` result (the learner and its choices)."""
    from models.active import run_step
    from models.training import fit_classifier, select_device
    from models.vae_training import encode_means

    device = select_device()
    rng = np.random.default_rng(seed)
    pool_x, pool_y = data.pool_x, data.pool_y
    n_classes = len(data.classes)
    ids = np.arange(len(pool_y), dtype=np.int64)
    labelled = list(rng.choice(len(pool_y), size=min(config.initial, len(pool_y)), replace=False))
    synthetic_labels: list[int] = []
    vae = latents = oracle = None
    features = test_features = graph = blocks = None
    if config.learner == "simclr":
        from models.learner import PoolGraph
        from models.representation import feature_blocks

        features, test_features = representation_for(data, config, cache)
        graph = PoolGraph.build(features)
        blocks = data.given.blocks if data.given is not None else feature_blocks(_representation_setting(config))
    encoder = encoder_for(data, config, cache) if config.fine_tune and config.learner == "simclr" else None
    rows: list[dict[str, Any]] = []
    challenger = None
    for round_index in range(config.rounds + 1):
        is_last = round_index == config.rounds
        labelled_mask = np.zeros(len(pool_x), dtype=bool)
        labelled_mask[labelled] = True
        # Only real images are candidates; synthetic ones enter the pool already labelled.
        candidate_pos = np.flatnonzero(~labelled_mask[: len(data.pool_y)])
        labels = np.asarray(
            [pool_y[p] if p < len(data.pool_y) else synthetic_labels[p - len(data.pool_y)] for p in labelled]
        )
        # "snn@wide" runs strategy "snn" with the params given for "snn@wide": variants side by side.
        name = strategy.split("@")[0]
        needs_latents = _needs_vae(name, config)
        if needs_latents and vae is None:
            vae = _vae_for(data, seed, config, cache)
            latents = encode_means(vae, pool_x)
        started = time.monotonic()
        step = run_step(
            pool_x=pool_x,
            pool_ids=ids,
            labelled_pos=np.asarray(labelled, dtype=np.int64),
            labels=labels,
            candidate_pos=candidate_pos,
            eval_x=data.test_x,
            eval_y=data.test_y,
            n_classes=n_classes,
            strategy=name,
            params=config.params.get(strategy, {}),
            batch_size=0 if is_last else config.batch,
            seed=seed * 1000 + round_index,
            device=device,
            latents=latents,
            generative=(lambda extras={"vae": vae}: extras) if vae is not None else None,
            features=features,
            eval_features=test_features,
            graph=graph,
            challenger=challenger,
            feature_blocks=blocks,
        )
        rows.append(
            {
                "strategy": strategy,
                "seed": seed,
                "round": round_index,
                "labels": len(labelled),
                "accuracy": step.accuracy,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
        if on_round:
            on_round()
        if on_step:
            on_step(rows[-1], step)
        if is_last:
            break
        if step.learner is not None:
            from models.learner import fit_challenger

            # As in the service: the networks that challenge the head are fitted after a round's
            # batch is out, on that round's labels, and the next round uses them.
            challenger = fit_challenger(
                step.learner,
                pool_x=pool_x,
                pool_features=features,  # type: ignore[arg-type]
                labelled_pos=np.asarray(labelled, dtype=np.int64),
                labels=labels,
                n_classes=n_classes,
                graph=graph,
                seed=seed * 1000 + round_index,
                device=device,
                encoder=encoder,
            )
        labelled.extend(int(i) for i in step.selection.image_ids)
        if step.selection.synthetic:
            # Generated images have no ground truth: a teacher trained on the whole labelled pool
            # plays the oracle for them.
            if oracle is None:
                oracle = fit_classifier(data.pool_x, data.pool_y, n_classes, seed=seed, device=device)
            from models.training import predict_proba

            new_x = np.stack([item.pixels for item in step.selection.synthetic]).astype(np.float32)
            new_y = predict_proba(oracle, new_x).argmax(1)
            start = len(pool_x)
            pool_x = np.concatenate([pool_x, new_x])
            latents = np.concatenate([latents, encode_means(vae, new_x)]) if latents is not None else None
            ids = np.arange(len(pool_x), dtype=np.int64)
            synthetic_labels.extend(int(v) for v in new_y)
            labelled.extend(range(start, len(pool_x)))
    return rows


def full_pool_learner(data: SimulationData, pool: np.ndarray) -> Any:
    """The head on the pool's representation (`pool`, from representation_for) with every pool label,
    challenged by the CNN: the simclr learner's ceiling (a FeatureLearner)."""
    from models.head import fit_head
    from models.learner import FeatureLearner, challenge_with_cnn

    # The ceiling needs no choice of read-out: every label is used, with the head's usual C. It is
    # still challenged by the CNN on the pixels, as every round's head is, or curves that switch
    # to the CNN would end above their own ceiling.
    head = fit_head(pool, data.pool_y, len(data.classes), pool_features=pool, c_grid=(1.0,), temperature=1.0)
    return challenge_with_cnn(
        FeatureLearner(head, "supervised", {"mode": "supervised", "c": 1.0}),
        pool_x=data.pool_x,
        pool_features=pool,
        labelled_pos=np.arange(len(data.pool_y)),
        labels=data.pool_y,
        n_classes=len(data.classes),
    )


def full_pool_accuracy(
    data: SimulationData, seeds: Iterable[int], config: SimulationConfig | None = None, cache: Path | None = None
) -> list[float]:
    """Test accuracy with every pool label, under the configured learner (the curves' ceiling)."""
    from models.training import evaluate, fit_classifier, predict_proba

    out = []
    if config is not None and config.learner == "simclr":
        pool, test = representation_for(data, config, cache)
        learner = full_pool_learner(data, pool)
        probabilities = learner.predict_proba(test, data.test_x)
        accuracy = evaluate(probabilities, data.test_y, len(data.classes))["accuracy"]
        return [float(accuracy)]  # type: ignore[arg-type]
    for seed in seeds:
        model = fit_classifier(data.pool_x, data.pool_y, len(data.classes), seed=seed)
        out.append(float(evaluate(predict_proba(model, data.test_x), data.test_y, len(data.classes))["accuracy"]))
    return out


def _job(args: tuple[SimulationData, str, int, SimulationConfig, Path | None, int]) -> list[dict[str, Any]]:
    data, strategy, seed, config, cache, threads = args
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    # Parallel runs share the cores: every thread pool (torch, BLAS, faiss's OpenMP) gets its share,
    # or spinning OpenMP threads oversubscribe the machine and everything slows down.
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    with threadpool_limits(threads):
        return run_one(data, strategy, seed, config, cache)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def thread_caps_for_children(threads: int) -> Iterator[None]:
    """Processes started inside this block read `threads` as every thread pool's size when their
    libraries load; the parent's own pools, loaded already, are untouched."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_simulation(
    data: SimulationData,
    config: SimulationConfig,
    *,
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    skip: Collection[tuple[str, int]] = (),
) -> list[dict[str, Any]]:
    """All (strategy, seed) curves but those in `skip`; `progress(done, total)` is called after each
    finished round or run. Each curve depends only on its strategy and seed, so skipped curves can be
    taken from an earlier run of the same configuration."""
    jobs = [(strategy, seed) for seed in range(config.seeds) for strategy in config.strategies]
    skipped = set(skip)
    jobs = [job for job in jobs if job not in skipped]
    total = len(jobs) * (config.rounds + 1)
    rows: list[dict[str, Any]] = []
    done = 0
    if config.jobs <= 1:
        for strategy, seed in jobs:

            def tick() -> None:
                nonlocal done
                done += 1
                if progress:
                    progress(done, total)

            rows.extend(run_one(data, strategy, seed, config, cache, on_round=tick))
        return rows
    threads = max(1, usable_cores() // config.jobs)
    if config.learner == "simclr":
        # Once, before the workers race to train it.
        (encoder_for if config.fine_tune else representation_for)(data, config, cache)
    if cache is not None and any(_needs_vae(s.split("@")[0], config) for s, _ in jobs):
        # Train each seed's VAE once, before the workers race to train the same one.
        for seed in sorted({seed for _, seed in jobs}):
            _vae_for(data, seed, config, cache)
    # spawn, not fork: CUDA cannot be re-initialised in a forked child, and a fresh interpreter per
    # worker behaves the same on CPU and GPU machines. The thread caps go in the environment the
    # workers start with: an OpenMP or BLAS runtime loaded after _job's limits (scikit-learn's own
    # libgomp, for one) would otherwise start a thread per core in every worker. On a 16-core GPU
    # machine 8 workers so oversubscribed finished no curve in minutes.
    with (
        thread_caps_for_children(threads),
        ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        futures = [pool.submit(_job, (data, s, seed, config, cache, threads)) for s, seed in jobs]
        for future in as_completed(futures):
            rows.extend(future.result())
            done += config.rounds + 1
            if progress:
                progress(done, total)
    return sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["round"]))


def curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Per strategy: labels [R], accuracy per seed [S, R], mean [R]."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for strategy in sorted({r["strategy"] for r in rows}):
        mine = [r for r in rows if r["strategy"] == strategy]
        seeds = sorted({r["seed"] for r in mine})
        rounds = sorted({r["round"] for r in mine})
        acc = np.array(
            [[next(r["accuracy"] for r in mine if r["seed"] == s and r["round"] == k) for k in rounds] for s in seeds]
        )
        labels = np.array([np.mean([r["labels"] for r in mine if r["round"] == k]) for k in rounds])
        out[strategy] = {"labels": labels, "accuracy": acc, "mean": acc.mean(0)}
    return out


def labels_to_reach(labels: np.ndarray, mean: np.ndarray, target: float) -> float | None:
    """Labels at which the mean curve first reaches target (linear interpolation), None if never."""
    for i, value in enumerate(mean):
        if value >= target:
            if i == 0:
                return float(labels[0])
            prev = mean[i - 1]
            return float(labels[i - 1] + (labels[i] - labels[i - 1]) * (target - prev) / max(value - prev, 1e-12))
    return None


def summarise(rows: list[dict[str, Any]], full_accuracy: float) -> dict[str, Any]:
    out: dict[str, Any] = {"full_pool_accuracy": full_accuracy, "strategies": {}}
    for strategy, curve in curves(rows).items():
        labels, mean = curve["labels"], curve["mean"]
        span = labels[-1] - labels[0]
        area = float(np.trapezoid(mean, labels) / span) if span > 0 else float(mean[0])
        out["strategies"][strategy] = {
            "labels": labels.tolist(),
            "mean_accuracy": [round(float(v), 4) for v in mean],
            "std_accuracy": [round(float(v), 4) for v in curve["accuracy"].std(0)],
            # Half-width of the 95% interval of the mean over seeds (normal approximation).
            "ci95_accuracy": [
                round(float(1.96 * v / np.sqrt(len(curve["accuracy"]))), 4) for v in curve["accuracy"].std(0, ddof=1)
            ]
            if len(curve["accuracy"]) > 1
            else None,
            "labels_to_95pct_full": labels_to_reach(labels, mean, 0.95 * full_accuracy),
            "labels_to_98pct_full": labels_to_reach(labels, mean, 0.98 * full_accuracy),
            "area_under_curve": round(area, 4),
        }
    return out


def plot(rows: list[dict[str, Any]], out: Path, title: str, full_accuracy: float | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for strategy, curve in curves(rows).items():
        labels, acc = curve["labels"], curve["accuracy"]
        (line,) = ax.plot(labels, acc.mean(0), marker="o", markersize=3, label=strategy)
        if len(acc) > 1:
            ax.fill_between(labels, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.15, linewidth=0)
    if full_accuracy is not None:
        ax.axhline(full_accuracy, color="black", linestyle="--", linewidth=1, label="full pool")
        ax.axhline(0.98 * full_accuracy, color="grey", linestyle=":", linewidth=1, label="98% of full pool")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(title + "  (mean over seeds, band = min..max)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def write_results(
    rows: list[dict[str, Any]], out_dir: Path, title: str, full_accuracy: float | None
) -> dict[str, Path]:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["strategy", "seed", "round", "labels", "accuracy", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    png, svg = plot(rows, out_dir / "curve", title, full_accuracy)
    paths = {"csv": csv_path, "png": png, "svg": svg}
    if full_accuracy is not None:
        summary = out_dir / "summary.json"
        summary.write_text(json.dumps(summarise(rows, full_accuracy), indent=2))
        paths["summary"] = summary
    return paths


def main(args: Any) -> int:
    """Entry point of `suggestlab simulate` (arguments from models.simulate_args)."""
    from tqdm import tqdm

    from models.strategies.params import StrategyParamsError, check_simulated_params
    from models.strategies.registry import spec_for

    # Mistakes in the command line are answered with one line, before any data is read.
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        for name in strategies:
            spec_for(name.split("@")[0])
        params = json.loads(args.params) if args.params else {}
    except KeyError as exc:
        raise SystemExit(f"suggestlab simulate: {exc.args[0]}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"suggestlab simulate: --params is not JSON ({exc})") from None
    if not strategies:
        raise SystemExit("suggestlab simulate: --strategies names no strategy")
    if args.fine_tune and args.learner != "simclr":
        raise SystemExit("--fine-tune fine-tunes the representation's encoder: it needs --learner simclr")
    try:
        check_simulated_params(strategies, params)
    except StrategyParamsError as exc:
        raise SystemExit(str(exc)) from None
    try:
        data = load_simulation_data(args.dataset, test_fraction=args.test_fraction, image_size=args.image_size)
    except ValueError as exc:
        raise SystemExit(f"suggestlab simulate: {exc}") from None
    config = SimulationConfig(
        strategies=strategies,
        initial=args.initial,
        batch=args.batch,
        rounds=args.rounds,
        seeds=args.seeds,
        params=params,
        vae_epochs=args.vae_epochs,
        jobs=args.jobs,
        learner=args.learner,
        representation_epochs=args.representation_epochs,
        fine_tune=args.fine_tune,
    )
    out = Path(args.out)
    print(
        f"{data.name}: pool {len(data.pool_y)}, test {len(data.test_y)}, strategies {', '.join(config.strategies)}, "
        f"{config.seeds} seeds, {config.initial} + {config.rounds} x {config.batch} labels",
        flush=True,
    )
    full = None
    if not args.no_full_pool:
        full = float(np.mean(full_pool_accuracy(data, range(min(config.seeds, 3)), config, out / "cache")))
        print(f"full-pool accuracy: {full:.4f}", flush=True)
    bar = tqdm(total=len(config.strategies) * config.seeds * (config.rounds + 1), unit="round", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    rows = run_simulation(data, config, cache=out / "cache", progress=progress)
    bar.close()
    paths = write_results(rows, out, f"{data.name}: {config.initial} + {config.rounds} x {config.batch}", full)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if full is not None:
        summary = json.loads(paths["summary"].read_text())
        for name, s in summary["strategies"].items():
            print(
                f"  {name:<10} AUC {s['area_under_curve']:.4f}  final {s['mean_accuracy'][-1]:.4f}  "
                f"labels to 95%/98% of full: {_fmt(s['labels_to_95pct_full'])} / {_fmt(s['labels_to_98pct_full'])}"
            )
    return 0


def _fmt(value: float | None) -> str:
    return "not reached" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0f}"
