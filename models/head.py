"""The task model on frozen features: a class-balanced linear head, chosen on validation, calibrated.

A linear (softmax) head is the standard read-out of a self-supervised representation (linear
evaluation, Chen et al. 2020). Its inverse regularisation strength C is chosen on the labelled
validation split when there is one, else by stratified cross-validation on the labels; probabilities
are then calibrated by one temperature fitted on the same held-out predictions (Guo et al., "On
Calibration of Modern Neural Networks", ICML 2017), so entropy and margin compare like with like.
Everything here is deterministic: lbfgs on fixed data, folds from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DEFAULT_C = 0.1
# Rows standardised at a time. A whole pool at once is float64 temporaries of 8 bytes per feature:
# at a million images of 256 features, 4.9 GB above the features themselves (benchmarks/step_memory.py).
LOGIT_ROWS = 65_536


@dataclass
class LinearHead:
    """Standardisation + linear layer over features [N, D]; logits = ((f - mean) / scale) @ W.T + b.

    Attributes:
        weight: [K, D]; bias: [K]; mean, scale: [D] (from the whole pool); temperature: > 0.
        classes_seen: the class indices present in training (others get zero probability mass
            only through the softmax: their logits are set very low).
    """

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    temperature: float = 1.0
    c: float = DEFAULT_C
    info: dict[str, object] = field(default_factory=dict)

    def logits(self, features: np.ndarray, *, rows: int = LOGIT_ROWS) -> np.ndarray:
        """[N, D] -> [N, K] logits, standardising `rows` rows at a time."""
        out = np.empty((len(features), len(self.bias)), dtype=np.float64)
        for start in range(0, len(features), rows):
            z = (np.asarray(features[start : start + rows], dtype=np.float64) - self.mean) / self.scale
            out[start : start + rows] = z @ self.weight.T + self.bias
        return out

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, K] calibrated probabilities."""
        return _softmax(self.logits(features) / self.temperature).astype(np.float32)

    def torch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The same map as `logits`, differentiable in the features (for latent ascent)."""
        dtype, device = features.dtype, features.device
        mean = torch.as_tensor(self.mean, dtype=dtype, device=device)
        scale = torch.as_tensor(self.scale, dtype=dtype, device=device)
        w = torch.as_tensor(self.weight, dtype=dtype, device=device)
        b = torch.as_tensor(self.bias, dtype=dtype, device=device)
        return (((features - mean) / scale) @ w.T + b) / self.temperature


def column_statistics(x: np.ndarray, *, rows: int = LOGIT_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """x.mean(0) and x.std(0), bit for bit, reading `rows` rows at a time. numpy's std holds x - mean
    for every row at once: a second copy of a million-image pool's features (1 GB at 256 floats).
    An axis-0 sum of a C-ordered array adds the rows in order, so carrying the running sum in as the
    first row of each block adds them in the same order; the divisions are numpy's own. (One column,
    or columns closer in memory than rows, numpy sums pairwise instead: those are left to numpy.)"""
    row_major = x.ndim == 2 and x.shape[1] > 1 and abs(x.strides[0]) > abs(x.strides[1])
    # float16 is summed in float32 by numpy's mean; only float32 and float64 are summed as they are.
    if x.dtype.type not in (np.float32, np.float64) or not row_major or len(x) <= rows:
        return x.mean(0), x.std(0)
    count = np.intp(len(x))

    def total(block_of: Any) -> np.ndarray:
        running = np.zeros(x.shape[1], dtype=x.dtype)
        for start in range(0, len(x), rows):
            running = np.add.reduce(np.concatenate([running[None], block_of(x[start : start + rows])]), axis=0)
        return np.true_divide(running, count, out=running, casting="unsafe")

    mean = total(lambda block: block)
    return mean, np.sqrt(total(lambda block: np.square(block - mean)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


_BLAS: Any = None


def _one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread. The OpenBLAS of numpy 2.4.6 / scipy 1.17.1 gives
    these float32 products other last bits on two threads than on one; the fitted head then differs in
    its last bits, margin picks other images, and a simulation's serial and parallel curves parted
    (tests/models/test_simulate.py). At round sizes one thread costs nothing."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _fit_linear(z: np.ndarray, y: np.ndarray, n_classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced, L2 penalty 1/C (sklearn's scaling), by
    full-batch L-BFGS on numpy arrays on one BLAS thread: the same bits on every machine and thread
    count, milliseconds at round sizes."""
    with _one_blas_thread():
        return _fit_linear_lbfgs(z, y, n_classes, c)


def _fit_linear_lbfgs(z: np.ndarray, y: np.ndarray, n_classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    present = np.unique(y)
    weight = np.zeros((n_classes, z.shape[1]))
    bias = np.full(n_classes, -30.0)  # classes never labelled stay (almost) impossible
    if len(present) == 1:
        bias[present[0]] = 0.0
        return weight, bias
    from scipy.optimize import minimize

    remap = np.searchsorted(present, y)
    z = np.ascontiguousarray(z, dtype=np.float32)  # float32 matrix products: half the time
    k, d = len(present), z.shape[1]
    counts = np.bincount(remap, minlength=k)
    sample_weight = (len(y) / (k * counts))[remap]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(k)[remap]
    penalty = 0.5 / (c * len(y))

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        logits = (z @ w.T.astype(np.float32)).astype(np.float64) + b
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(sample_weight * (onehot * log_p).sum(1)).sum() + penalty * (w * w).sum()
        residual = (np.exp(log_p) - onehot) * sample_weight[:, None]
        grad_w = (residual.T.astype(np.float32) @ z).astype(np.float64) + 2 * penalty * w
        return float(loss), np.concatenate([grad_w.ravel(), residual.sum(0)])

    # A softmax read-out's accuracy settles long before the optimiser's default tolerances do.
    result = minimize(
        loss_and_grad,
        np.zeros(k * d + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 200, "ftol": 1e-7, "gtol": 1e-5},
    )
    weight[present] = result.x[: k * d].reshape(k, d)
    bias[present] = result.x[k * d :]
    return weight, bias


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out logits (golden-section in log T)."""
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        p = _softmax(logits / np.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def _folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Stratified fold index arrays (positions into y)."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        assignment[members] = (np.arange(len(members)) + rng.integers(k)) % k
    return [np.flatnonzero(assignment == f) for f in range(k)]


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    pool_features: np.ndarray | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    c_grid: tuple[float, ...] = C_GRID,
    temperature: float | None = None,
    block: slice | None = None,
    pool_statistics: tuple[np.ndarray, np.ndarray] | None = None,
) -> LinearHead:
    """Fits the head on labelled features.

    Args:
        features: [L, D] features of the labelled images; labels: [L] class indices.
        pool_features: [N, D] every pool image's features; standardisation uses their statistics,
            so the head sees the same scale whatever was labelled.
        validation: ([V, D], [V]) labelled validation features; chooses C and the temperature.
            Without it (or with under 2 images per class on average) both come from out-of-fold
            predictions of a stratified k-fold over the labels.
        c_grid: the candidate values of C; with one value and a given `temperature` nothing is held out.
        temperature: use this temperature instead of fitting one.
        block: read only these feature columns (one block of a joint representation); the head
            still maps all D features, with zero weight outside the block.
        pool_statistics: `column_statistics` of the pool features the head reads (of the block's
            columns, when `block` is given), when the caller already has them: a learner fits many
            heads on one pool, and each pass over a million images' features is most of a second.
    """
    if block is not None:
        head = fit_head(
            features[:, block],
            labels,
            n_classes,
            pool_features=None if pool_features is None else pool_features[:, block],
            validation=None if validation is None else (validation[0][:, block], validation[1]),
            seed=seed,
            c_grid=c_grid,
            temperature=temperature,
            pool_statistics=pool_statistics,
        )
        # Outside the block: zero weight, and a mean and scale that leave those features finite.
        weight = np.zeros((n_classes, features.shape[1]))
        mean, scale = np.zeros(features.shape[1]), np.ones(features.shape[1])
        weight[:, block], mean[block], scale[block] = head.weight, head.mean, head.scale
        head.weight, head.mean, head.scale = weight, mean, scale
        head.info["block"] = [block.start, block.stop]
        return head
    if pool_statistics is None:
        pool_statistics = column_statistics(
            pool_features if pool_features is not None and len(pool_features) else features
        )
    mean, scale = pool_statistics
    mean, scale = mean.astype(np.float64), scale.astype(np.float64) + 1e-6
    z = (features - mean) / scale
    labels = np.asarray(labels, dtype=np.int64)
    held: tuple[np.ndarray, np.ndarray] | None = None
    chosen, how = (c_grid[0], "given") if len(c_grid) == 1 else (DEFAULT_C, "default")
    if temperature is not None and len(c_grid) == 1:
        weight, bias = _fit_linear(z, labels, n_classes, chosen)
        info = {"c": chosen, "chosen_by": "given", "temperature": round(temperature, 4)}
        return LinearHead(weight, bias, mean, scale, temperature, chosen, info)
    if validation is not None and len(validation[1]) >= 2 * n_classes:
        zv = (validation[0] - mean) / scale
        yv = np.asarray(validation[1], dtype=np.int64)
        scores = []
        fitted = {}
        for c in c_grid:
            w, b = _fit_linear(z, labels, n_classes, c)
            logits = zv @ w.T + b
            fitted[c] = logits
            scores.append((_balanced_accuracy(logits, yv, n_classes), -c))
        chosen = c_grid[int(np.argmax([s[0] + 1e-9 * s[1] for s in scores]))]
        held, how = (fitted[chosen], yv), "validation"
    else:
        counts = np.bincount(labels, minlength=n_classes)
        k = int(min(5, counts[counts > 0].min())) if len(labels) else 0
        if k >= 2 and len(np.unique(labels)) > 1:
            folds = _folds(labels, k, seed)
            oof = {c: np.zeros((len(labels), n_classes)) for c in c_grid}
            for fold in folds:
                train = np.setdiff1d(np.arange(len(labels)), fold)
                for c in c_grid:
                    w, b = _fit_linear(z[train], labels[train], n_classes, c)
                    oof[c][fold] = z[fold] @ w.T + b
            scores = [_balanced_accuracy(oof[c], labels, n_classes) for c in c_grid]
            chosen = c_grid[int(np.argmax(scores))]
            held, how = (oof[chosen], labels), f"{k}-fold cross-validation"
    weight, bias = _fit_linear(z, labels, n_classes, chosen)
    temperature = fit_temperature(*held) if held is not None else 1.0
    return LinearHead(
        weight=weight,
        bias=bias,
        mean=mean,
        scale=scale,
        temperature=temperature,
        c=chosen,
        info={"c": chosen, "chosen_by": how, "temperature": round(temperature, 4)},
    )


def balanced_log_loss(logits: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """Mean over classes of the held-out negative log-likelihood, after the temperature that fits
    these logits best (so a read-out is not judged on its scale, which calibration fixes anyway)."""
    p = _softmax(logits / fit_temperature(logits, y))
    nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))
    per_class = [float(nll[y == c].mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(per_class)) if per_class else 0.0


def _balanced_accuracy(logits: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    predicted = logits.argmax(1)
    per_class = [float((predicted[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(per_class)) if per_class else 0.0
