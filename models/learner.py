"""The task model over a learned representation: a linear head, optionally taught by the whole pool.

Two ways to read labels out of pool features, and the one that does better on held-out labels wins:
  * `supervised`: the calibrated linear head of models.head on the labelled features alone;
  * `propagated`: labels spread over the pool's k-nearest-neighbour graph (Zhou et al., "Learning with
    Local and Global Consistency", NIPS 2003); the head is then fitted on the labels plus the most
    confident pseudo-labels. Strong while labels are few, because the unlabelled 95% of the pool
    shapes the decision boundary.
The choice is made on the labelled validation split when there is one, else by stratified k-fold over
the labels: one rule on every dataset, no per-dataset switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.head import LinearHead, _balanced_accuracy, _folds, fit_head, fit_temperature

PROPAGATION_C = 0.3
GRAPH_EF_SEARCH = 32
MAX_PSEUDO = 1000


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


@dataclass
class FeatureLearner:
    """Fits the task model on pool features; `head` is what predicts (and what snn climbs)."""

    head: LinearHead
    mode: str
    info: dict[str, object] = field(default_factory=dict)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.head.predict_proba(features)


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
