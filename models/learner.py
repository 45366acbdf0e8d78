"""The task model over a learned representation: a linear head, optionally taught by the whole pool.

Two ways to read labels out of pool features, and the one that does better on held-out labels wins:
  * `supervised`: the calibrated linear head of models.head on the labelled features alone;
  * `propagated`: labels spread over the pool's k-nearest-neighbour graph (Zhou et al., "Learning with
    Local and Global Consistency", NIPS 2003); the head is then fitted on the labels plus the most
    confident pseudo-labels. Strong while labels are few, because the unlabelled 95% of the pool
    shapes the decision boundary.
The choice is made on the labelled validation split when there is one, else by stratified k-fold over
the labels: one rule on every dataset, no per-dataset switch.

Once labels are plentiful the head is challenged by a CNN trained from scratch on the pixels (the
earlier learner) and by the even mix of the two (`challenge_with_cnn`), judged on held-out labels the
same way. A representation that does not fit the data (cluttered colour images on the CPU setting:
benchmarks/results/learner-cpuv2.md) then costs nothing against the earlier learner, instead of up to
18 points at 2,000 labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.head import LinearHead, _balanced_accuracy, _folds, _softmax, fit_head, fit_temperature
from models.pixels import Pixels

PROPAGATION_C = 0.3
GRAPH_EF_SEARCH = 32
MAX_PSEUDO = 1000
# The CNN is trained (once or twice a round, seconds each on a CPU) only from this many labels per
# class on average: below it a CNN from scratch trailed the head on every set measured, by 0 to 44
# points (benchmarks/results/learner*.md).
CNN_CHALLENGE_PER_CLASS = 30
# (name, the CNN's share of the predicted probabilities); ties go to the earlier entry.
CHALLENGERS = (("head", 0.0), ("mix", 0.5), ("cnn", 1.0))
# Fine-tuning moves a pre-trained encoder: a tenth of the from-scratch learning rate keeps the few
# labels from wiping out what the pool taught it.
FINE_TUNE_LR = 3e-4


@dataclass
class PoolGraph:
    """Symmetric, normalised kNN graph of the pool in a representation (cosine similarity)."""

    neighbours: np.ndarray  # [N, k] positions
    weights: object  # scipy.sparse matrix [N, N], D^-1/2 W D^-1/2

    @classmethod
    def build(cls, features: np.ndarray, k: int = 10, *, exact_max: int = 50_000) -> PoolGraph:
        """Exact neighbours up to `exact_max` images; above that the latent index's HNSW graph, since
        exact all-pairs search grows with the square of the pool (about 35 minutes for a million on
        2 cores; its cost and the HNSW graph's recall: benchmarks/results/knn_scale.md)."""
        import faiss
        import scipy.sparse as sp

        from models.latent_index import LatentIndex

        z = features - features.mean(0)
        z = np.ascontiguousarray(z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12), dtype=np.float32)
        n = len(z)
        k = min(k, n - 1)
        if n > exact_max:
            # On unit vectors the L2 order is the cosine order: cos = 1 - d^2 / 2. efSearch 32, not
            # the index's 128: a graph queries every image, and at 32 recall@10 is still 0.996
            # (knn_scale.md) where 128 costs four times as long.
            index = LatentIndex(exact_max=exact_max, ef_search=GRAPH_EF_SEARCH).fit(z, np.arange(n))
            distance, pos = index.kneighbors(z, k + 1)
            sim = 1 - distance**2 / 2
        else:
            index = faiss.IndexFlatIP(z.shape[1])
            index.add(z)
            sim, pos = index.search(z, k + 1)
        # Drop each image itself (not blindly the first column: an exact duplicate may come first, and
        # an approximate search may miss the image itself); a missing neighbour (-1) gets no weight.
        rows = np.arange(n)[:, None]
        order = np.argsort(pos == rows, axis=1, kind="stable")
        pos, sim = np.take_along_axis(pos, order, 1)[:, :k], np.take_along_axis(sim, order, 1)[:, :k]
        missing = (pos < 0) | (pos == rows)
        pos = np.where(missing, rows, pos)
        sim = np.where(missing, 0.0, np.maximum(sim, 0) ** 3)
        w = sp.csr_matrix((sim.ravel(), (np.repeat(np.arange(n), k), pos.ravel())), shape=(n, n))
        w = w + w.T
        degree = np.asarray(w.sum(1)).ravel() + 1e-12
        d = sp.diags(1 / np.sqrt(degree))
        return cls(neighbours=pos, weights=(d @ w @ d).tocsr())

    def propagate(
        self, positions: np.ndarray, labels: np.ndarray, n_classes: int, *, alpha: float = 0.99
    ) -> np.ndarray:
        """[N, K] class scores after spreading the given labels; rows sum to 1 (uniform if unreached)."""
        n = self.weights.shape[0]  # type: ignore[attr-defined]
        seed = np.zeros((n, n_classes))
        seed[positions, labels] = 1.0
        scores = seed.copy()
        for _ in range(20):
            scores = alpha * (self.weights @ scores) + seed  # type: ignore[operator]
        total = scores.sum(1, keepdims=True)
        return np.where(total > 0, scores / np.maximum(total, 1e-12), 1.0 / n_classes)


def fine_tunable(encoder: Any, head: LinearHead) -> Any:
    """A copy of the representation's encoder followed by the head (its standardisation folded in), as
    one network from pixels to logits that starts out predicting exactly what the head predicts."""
    from models.nets.fine_tuned import FineTuned

    return FineTuned(encoder, head.weight, head.bias, head.mean, head.scale)


@dataclass
class PixelModel:
    """A CNN on the pixels and its share of the task model's probabilities."""

    model: Any  # torch.nn.Module
    temperature: float
    share: float


@dataclass
class FeatureLearner:
    """The task model on pool features: `head` predicts (and is what snn climbs), mixed with a CNN on
    the pixels when that won on held-out labels (`pixel`)."""

    head: LinearHead
    mode: str
    info: dict[str, object] = field(default_factory=dict)
    pixel: PixelModel | None = None

    @property
    def uses_pixels(self) -> bool:
        return self.pixel is not None

    def predict_proba(self, features: np.ndarray, pixels: Pixels | None = None) -> np.ndarray:
        """[N, D] features (and, when `uses_pixels`, the same N images) -> [N, K] probabilities."""
        p = self.head.predict_proba(features)
        if self.pixel is None:
            return p
        if pixels is None:
            raise ValueError("this task model reads the images' pixels as well as their features")
        from models.training import predict_proba

        q = predict_proba(self.pixel.model, pixels, temperature=self.pixel.temperature)
        return ((1 - self.pixel.share) * p + self.pixel.share * q).astype(np.float32)

    def held_out_accuracy(self) -> float | None:
        """The chosen task model's balanced accuracy on labels it was not fitted on, when known."""
        challenge = self.info.get("challenge")
        if isinstance(challenge, dict) and "scores" in challenge:
            return float(challenge["scores"][challenge["chosen"]])
        scores = self.info.get("scores")
        return float(max(scores.values())) if isinstance(scores, dict) and scores else None


def _pseudo_set(
    scores: np.ndarray, labelled_pos: np.ndarray, labels: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled positions plus the most confident propagated ones, class-balanced, at most MAX_PSEUDO."""
    taken = np.zeros(len(scores), dtype=bool)
    taken[labelled_pos] = True
    guess, confidence = scores.argmax(1), scores.max(1)
    per_class = MAX_PSEUDO // n_classes
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero((guess == c) & ~taken & (confidence > 1.5 / n_classes))
        chosen.append(members[np.argsort(-confidence[members], kind="stable")[:per_class]])
    extra = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return np.concatenate([labelled_pos, extra]), np.concatenate([labels, guess[extra]])


def _propagated_set(
    graph: PoolGraph, labelled_pos: np.ndarray, labels: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = graph.propagate(labelled_pos, labels, n_classes)
    return _pseudo_set(scores, labelled_pos, labels, n_classes)


# Candidate read-outs: (mode, C). One held-out comparison picks mode and C together.
CANDIDATES = (("supervised", 0.3), ("supervised", 3.0), ("propagated", PROPAGATION_C))


def _fit(
    mode: str,
    c: float,
    pool_features: np.ndarray,
    graph: PoolGraph,
    labelled_pos: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    temperature: float = 1.0,
) -> LinearHead:
    if mode == "propagated":
        positions, targets = _propagated_set(graph, labelled_pos, labels, n_classes)
    else:
        positions, targets = labelled_pos, labels
    return fit_head(
        pool_features[positions],
        targets,
        n_classes,
        pool_features=pool_features,
        c_grid=(c,),
        temperature=temperature,
    )


def fit_learner(
    pool_features: np.ndarray,
    labelled_pos: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    graph: PoolGraph | None = None,
    seed: int = 0,
    folds: int = 3,
) -> FeatureLearner:
    """Fits every candidate read-out, keeps the one with the best held-out balanced accuracy, and
    calibrates its temperature on the same held-out logits.

    Args:
        pool_features: [N, D] every pool image in the representation.
        labelled_pos: [L] positions with labels; labels: [L] class indices.
        validation: ([V, D], [V]) labelled validation features, when the project has them; else a
            stratified k-fold over the labels is the held-out set.
        graph: the pool's kNN graph (built here when not given; cache it across rounds).
    """
    labels = np.asarray(labels, dtype=np.int64)
    labelled_pos = np.asarray(labelled_pos, dtype=np.int64)
    if len(np.unique(labels)) < 2 or len(pool_features) < 20:
        head = fit_head(pool_features[labelled_pos], labels, n_classes, pool_features=pool_features, c_grid=(0.3,))
        return FeatureLearner(head, "supervised", {"mode": "supervised", "head": head.info})
    graph = graph or PoolGraph.build(pool_features)
    held: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    # Heads fitted on every label (validation is held out): the winner is the final head as it is.
    on_all_labels: dict[tuple[str, float], LinearHead] = {}
    if validation is not None and len(validation[1]) >= 2 * n_classes:
        yv = np.asarray(validation[1], dtype=np.int64)
        for mode, c in CANDIDATES:
            head = _fit(mode, c, pool_features, graph, labelled_pos, labels, n_classes)
            held[(mode, c)] = (head.logits(validation[0]), yv)
            on_all_labels[(mode, c)] = head
        how = "validation"
    else:
        counts = np.bincount(labels, minlength=n_classes)
        k = int(min(folds, counts[counts > 0].min()))
        if k < 2:
            # Under two labels in some class nothing can be held out; lean on the pool graph.
            head = _fit("propagated", PROPAGATION_C, pool_features, graph, labelled_pos, labels, n_classes)
            info = {"mode": "propagated", "held_out": "too few labels to hold any out", "head": head.info}
            return FeatureLearner(head, "propagated", info)
        parts = _folds(labels, k, seed)
        order = np.concatenate(parts)
        for mode, c in CANDIDATES:
            logits = []
            for fold in parts:
                train = np.setdiff1d(np.arange(len(labels)), fold)
                head = _fit(mode, c, pool_features, graph, labelled_pos[train], labels[train], n_classes)
                logits.append(head.logits(pool_features[labelled_pos[fold]]))
            held[(mode, c)] = (np.concatenate(logits), labels[order])
        how = f"{k}-fold cross-validation"
    scores = {f"{m}@C={c}": _balanced_accuracy(lg, y, n_classes) for (m, c), (lg, y) in held.items()}
    # Ties go to the pool-graph read-out (listed last), then to stronger regularisation.
    best = max(range(len(CANDIDATES)), key=lambda i: (scores[f"{CANDIDATES[i][0]}@C={CANDIDATES[i][1]}"], i))
    mode, c = CANDIDATES[best]
    temperature = fit_temperature(*held[(mode, c)])
    if (mode, c) in on_all_labels:
        head = on_all_labels[(mode, c)]
        head.temperature = temperature
        head.info["temperature"] = round(temperature, 4)
    else:
        head = _fit(mode, c, pool_features, graph, labelled_pos, labels, n_classes, temperature)
    info = {"mode": mode, "c": c, "temperature": round(temperature, 4), "held_out": how, "scores": scores}
    return FeatureLearner(head, mode, info)


def challenge_with_cnn(
    learner: FeatureLearner,
    *,
    pool_x: Pixels,
    pool_features: np.ndarray,
    labelled_pos: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    graph: PoolGraph | None = None,
    validation: tuple[np.ndarray, Pixels, np.ndarray] | None = None,
    seed: int = 0,
    device: Any = None,
    progress: Callable[[float], None] | None = None,
    encoder: Any = None,
) -> FeatureLearner:
    """Keeps the head, or mixes in a CNN trained from scratch on the labelled pixels, whichever of
    head / even mix / CNN alone has the best balanced accuracy on held-out labels (ties: the head).
    Given the representation's `encoder` (a project's `fine_tune` setting), the encoder fine-tuned
    with the head on the labelled pixels (`fine_tunable`) competes too, as `fine-tuned`.

    Held out: the validation split ([V, D] features, [V] pixels, [V] labels) when given, else one
    stratified third of the labels; in the latter case the head's read-out (mode and C as chosen) is
    refitted without that third and a winning CNN is trained again on every label. Each part's
    temperature is fitted on the held-out predictions, so the mix averages calibrated probabilities.
    Does nothing under CNN_CHALLENGE_PER_CLASS labels per class, or when the read-out is not a fitted
    choice (too few labels to hold any out).
    """
    from models.training import fit_classifier, predict_proba

    labels = np.asarray(labels, dtype=np.int64)
    labelled_pos = np.asarray(labelled_pos, dtype=np.int64)
    if len(labels) < CNN_CHALLENGE_PER_CLASS * n_classes or "c" not in learner.info:
        return learner
    report = progress or (lambda fraction: None)

    def fit_cnn(positions: np.ndarray, y: np.ndarray, start: float, span: float, head: Any = None) -> Any:
        tuned = {} if head is None else {"model": fine_tunable(encoder, head), "lr": FINE_TUNE_LR}
        return fit_classifier(
            np.asarray(pool_x[positions], dtype=np.float32),
            y,
            n_classes,
            seed=seed,
            device=device,
            progress=lambda f: report(start + span * f),
            **tuned,
        )

    def log_proba(model: Any, pixels: Pixels) -> np.ndarray:
        return np.log(np.clip(predict_proba(model, pixels), 1e-12, 1))

    if validation is not None and len(validation[2]) >= 2 * n_classes:
        # The contenders are fitted on every label and judged on the validation split.
        train = np.arange(len(labels))
        head, head_logits = learner.head, learner.head.logits(validation[0])
        held_pixels, y_held = validation[1], np.asarray(validation[2], dtype=np.int64)
        how = "validation"
    else:
        held = _folds(labels, 3, seed)[0]
        train = np.setdiff1d(np.arange(len(labels)), held)
        if len(np.unique(labels[train])) < 2 or len(held) == 0:
            return learner
        graph = graph or PoolGraph.build(pool_features)
        c = float(learner.info["c"])  # type: ignore[arg-type]
        head = _fit(learner.mode, c, pool_features, graph, labelled_pos[train], labels[train], n_classes)
        head_logits = head.logits(pool_features[labelled_pos[held]])
        held_pixels, y_held = pool_x[labelled_pos[held]], labels[held]
        how = "one third of the labels held out"
    # Progress: the held-out fits take the first half when the winner is fitted again on every label.
    refit = how != "validation"
    fits = 1 + (encoder is not None)
    share_of_fit = (0.5 if refit else 1.0) / fits
    cnn = fit_cnn(labelled_pos[train], labels[train], 0.0, share_of_fit)
    cnn_logits = log_proba(cnn, held_pixels)
    tuned_logits: np.ndarray | None = None
    if encoder is not None:
        tuned = fit_cnn(labelled_pos[train], labels[train], share_of_fit, share_of_fit, head)
        tuned_logits = log_proba(tuned, held_pixels)
    head_t, cnn_t = fit_temperature(head_logits, y_held), fit_temperature(cnn_logits, y_held)
    p_head, p_cnn = _softmax(head_logits / head_t), _softmax(cnn_logits / cnn_t)
    scores = {
        name: round(_balanced_accuracy((1 - share) * p_head + share * p_cnn, y_held, n_classes), 4)
        for name, share in CHALLENGERS
    }
    chosen, share = max(CHALLENGERS, key=lambda entry: (scores[entry[0]], -entry[1]))
    if tuned_logits is not None:
        tuned_t = fit_temperature(tuned_logits, y_held)
        scores["fine-tuned"] = round(_balanced_accuracy(tuned_logits, y_held, n_classes), 4)
        if scores["fine-tuned"] > scores[chosen]:
            chosen = "fine-tuned"
    learner.info["challenge"] = {"held_out": how, "scores": scores, "chosen": chosen}
    if chosen == "head":
        return learner
    # `mode` stays the head's read-out (snn still climbs the head); info says what predicts.
    if chosen == "fine-tuned":
        if refit:
            tuned = fit_cnn(labelled_pos, labels, 0.5, 0.5, learner.head)
        learner.pixel = PixelModel(tuned, tuned_t, 1.0)
        learner.info["mode"] = "fine-tuned encoder"
        return learner
    if refit:
        cnn = fit_cnn(labelled_pos, labels, 0.5, 0.5)
    learner.pixel = PixelModel(cnn, cnn_t, share)
    learner.info["mode"] = "cnn" if share == 1.0 else f"{learner.mode} + cnn"
    return learner
