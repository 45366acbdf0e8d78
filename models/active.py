"""One active-learning step on arrays: train on the labels, evaluate, select the next batch.

Real rounds (worker.pipeline) and simulations (models.simulate) both call `run_step`, so a
simulated learning curve is produced by exactly the code that serves real projects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from models.pixels import Pixels, subset
from models.strategies.base import PoolRows, Selection, SelectionContext
from models.strategies.registry import (
    COLD_START,
    NEEDS_GENERATIVE,
    NEEDS_LATENTS,
    NEEDS_PROBABILITIES,
    get_strategy,
    spec_for,
)
from models.training import evaluate, fit_classifier, predict_proba

if TYPE_CHECKING:
    from models.learner import Challenger

Report = Callable[[str, float], None]


@dataclass
class StepResult:
    selection: Selection
    effective_strategy: str
    accuracy: float | None
    per_class: list[float | None] | None
    timings: dict[str, float] = field(default_factory=dict)
    model: torch.nn.Module | None = None
    learner: Any = None
    confusion: list[list[int]] | None = None
    # [M, K] the task model's class probabilities for the candidates (None before any label).
    candidate_probabilities: np.ndarray | None = None


def pca_features(x: Pixels, dim: int = 32) -> np.ndarray:
    """Flattened pixels projected on their top principal components, for when no VAE is available."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    flat = flat - flat.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(flat[:: max(1, len(flat) // 2000)], full_matrices=False)
    return flat @ vt[: min(dim, vt.shape[0])].T


def run_step(
    *,
    pool_x: Pixels,
    pool_ids: np.ndarray,
    labelled_pos: np.ndarray,
    labels: np.ndarray,
    candidate_pos: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    n_classes: int,
    strategy: str,
    params: dict[str, Any],
    batch_size: int,
    seed: int,
    device: torch.device,
    latents: np.ndarray | Callable[[], np.ndarray] | None = None,
    generative: Callable[[], dict[str, Any]] | None = None,
    report: Report | None = None,
    features: np.ndarray | None = None,
    eval_features: np.ndarray | None = None,
    head_validation: bool = False,
    graph: Any = None,
    encoder: Any = None,
    challenger: Challenger | Literal["now"] | None = "now",
    feature_blocks: Sequence[int] | None = None,
) -> StepResult:
    """Trains the task model on the labelled pool rows, evaluates it and runs the strategy.

    Args:
        pool_x: [N, C, S, S] every pool image.
        pool_ids: [N] their ids (what a selection returns).
        labelled_pos: [L] positions in the pool with a label; labels: [L] their class indices.
        candidate_pos: [M] positions that may be selected (unlabelled, real images).
        eval_x, eval_y: the evaluation split ([V, C, S, S], [V]); may be empty.
        strategy, params: registry name and its parameters; a strategy that needs a trained model
            falls back to the cold-start strategy while there are no labels.
        latents: [N, D] features of the pool (or a function computing them on demand);
            PCA of the pixels is used when a latent-space strategy runs without it.
        generative: returns extras (the VAE, ...) for strategies that move through latent space.
        report: called with (phase, fraction) as the step advances.
        features: [N, D] the pool in a learned representation (SimCLR). When given, the task model is
            a calibrated head on these features (models.learner) instead of a CNN on pixels, and every
            latent-space strategy selects in this space.
        eval_features: [V, D] the evaluation split in the same representation.
        head_validation: the evaluation split may also choose the head (true for a project's
            validation split; false in simulations, where it is the test set).
        graph: the pool's kNN graph in `features` (built when not given).
        encoder: the network that made `features`; given, a fine-tuned copy of it competes for the
            task model (models.learner.challenge_with_cnn).
        challenger: "now" fits the networks that challenge the head on these labels, inside the
            step (models.learner.challenge_with_cnn); else a models.learner.Challenger fitted
            earlier (on fewer labels: the round pipeline fits the next one after its batch is
            out), or None for the head alone.
        feature_blocks: the sizes of the blocks `features` joins (models.representation.
            feature_blocks); the head may then read one block alone (models.learner.fit_learner).
    """
    report = report or (lambda phase, fraction: None)
    timings: dict[str, float] = {}
    spec = spec_for(strategy)
    effective = strategy
    if spec.needs_labels and len(labels) == 0:
        effective = COLD_START
        spec = spec_for(effective)

    model = None
    accuracy: float | None = None
    per_class: list[float | None] | None = None
    confusion: list[list[int]] | None = None
    t = time.monotonic()
    learner = None
    if features is not None and len(labels):
        from models.learner import apply_challenger, challenge_with_cnn, fit_learner

        report("training task model", 0.05)
        has_eval = eval_features is not None and len(eval_y) > 0
        validate = has_eval and head_validation
        learner = fit_learner(
            features,
            labelled_pos,
            labels,
            n_classes,
            validation=(eval_features, eval_y) if validate else None,
            graph=graph,
            seed=seed,
            blocks=feature_blocks,
        )
        judged_on = (eval_features, eval_x, eval_y) if validate else None
        if challenger == "now":
            learner = challenge_with_cnn(
                learner,
                pool_x=pool_x,
                pool_features=features,
                labelled_pos=labelled_pos,
                labels=labels,
                n_classes=n_classes,
                graph=graph,
                validation=judged_on,  # type: ignore[arg-type]
                seed=seed,
                device=device,
                progress=lambda f: report("training task model", 0.1 + 0.55 * f),
                encoder=encoder,
            )
        else:
            learner = apply_challenger(learner, challenger, validation=judged_on)
        if has_eval:
            report("evaluating", 0.7)
            result = evaluate(learner.predict_proba(eval_features, eval_x), eval_y, n_classes)  # type: ignore[arg-type]
            accuracy = result["accuracy"]  # type: ignore[assignment]
            per_class = result["per_class"]  # type: ignore[assignment]
            confusion = result["confusion"]  # type: ignore[assignment]
    elif len(labels):
        report("training task model", 0.05)
        model = fit_classifier(
            pool_x[labelled_pos],
            labels,
            n_classes,
            seed=seed,
            device=device,
            progress=lambda f: report("training task model", 0.05 + 0.6 * f),
        )
        if len(eval_y):
            report("evaluating", 0.7)
            result = evaluate(predict_proba(model, eval_x), eval_y, n_classes)
            accuracy = result["accuracy"]  # type: ignore[assignment]
            per_class = result["per_class"]  # type: ignore[assignment]
            confusion = result["confusion"]  # type: ignore[assignment]
    timings["train_s"] = time.monotonic() - t

    if batch_size <= 0:
        return StepResult(Selection(), effective, accuracy, per_class, timings, model, learner, confusion)
    t = time.monotonic()
    report("selecting", 0.75)
    probabilities = None
    if model is not None and len(candidate_pos):
        probabilities = predict_proba(model, subset(pool_x, candidate_pos))
    if learner is not None and len(candidate_pos):
        assert features is not None
        probabilities = learner.predict_rows(features, candidate_pos, pool_x)
    if features is not None:
        latents = features
    ctx = SelectionContext(
        candidate_ids=pool_ids[candidate_pos],
        labelled_ids=pool_ids[labelled_pos],
        labels=labels,
        n_classes=n_classes,
        seed=seed,
        probabilities=probabilities if NEEDS_PROBABILITIES in spec.needs else None,
        held_out_accuracy=learner.held_out_accuracy() if learner is not None else None,
    )
    if spec.needs & {NEEDS_LATENTS, NEEDS_GENERATIVE}:
        feats = latents() if callable(latents) else latents
        if feats is None:
            feats = pca_features(pool_x)
        ctx.candidate_features = PoolRows.of(feats, candidate_pos)
        ctx.labelled_features = feats[labelled_pos]
    if NEEDS_GENERATIVE in spec.needs:
        ctx.extras.update(generative() if generative else {})
        ctx.extras.update(task_model=model)
        if learner is not None and effective in ("snn", "hybrid"):
            # snn climbs the head in feature space; the VAE stays for si and snn-plain.
            ctx.extras["head"] = learner.head
    if learner is not None and effective == "auto":
        # auto may hand its batch to snn, which climbs the head in feature space.
        ctx.extras["head"] = learner.head
    selection = get_strategy(effective, **(params if effective == strategy else {})).select(ctx, batch_size)
    if probabilities is not None:
        # Only the picked rows: a dict over every candidate is a million entries at 1M images.
        picked = np.flatnonzero(np.isin(ctx.candidate_ids, np.asarray(selection.image_ids)))
        guesses = dict(zip(ctx.candidate_ids[picked].tolist(), probabilities[picked].argmax(1).tolist(), strict=True))
        for image_id, reason in zip(selection.image_ids, selection.reasons, strict=True):
            if image_id in guesses:
                reason["predicted_index"] = guesses[image_id]
    timings["select_s"] = time.monotonic() - t
    return StepResult(
        selection=selection,
        effective_strategy=effective,
        accuracy=accuracy,
        per_class=per_class,
        timings=timings,
        model=model,
        learner=learner,
        confusion=confusion,
        candidate_probabilities=probabilities,
    )
