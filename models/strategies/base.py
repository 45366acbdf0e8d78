"""The strategy interface: arrays in, a ranked selection out. No sessions, no files.

Following baal's AbstractHeuristic, most strategies only implement `compute_score` (higher = more
worth labelling); the base class handles NaN, ties (broken by the seed) and the cut to a batch.
Strategies whose picks depend on each other (k-center, latent-space search) override `select`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.strategies.params import check_params, defaults_for

# Candidates above this many are read from the pool's features in place (PoolRows.of).
IN_PLACE_MIN_ROWS = 16_384


@dataclass(frozen=True)
class PoolRows:
    """Rows of a pool's feature array at sorted positions, read where they are.

    At a million images of 256 features, copying the candidates' rows out of the pool costs a
    gigabyte every round (benchmarks/results/step_memory.md). Indexing gives those rows as an array,
    and anything that needs the whole matrix gets a copy through `__array__`. The strategies that go
    over every candidate (k-center greedy, TypiClust's clustering, the mean) read the pool in blocks
    instead and never make that copy."""

    space: np.ndarray  # [P, D] the whole pool, float32, C-ordered
    positions: np.ndarray  # [N] sorted, distinct rows of `space`

    @staticmethod
    def of(space: np.ndarray, positions: np.ndarray) -> np.ndarray | PoolRows:
        """The rows in place when they are many and most of the pool (going over the whole pool then
        costs little more than over them); a copy otherwise, as before. Up to IN_PLACE_MIN_ROWS rows
        (every benchmark set) nothing changes."""
        in_place = (
            len(positions) > IN_PLACE_MIN_ROWS
            and 2 * len(positions) >= len(space)
            and space.dtype == np.float32
            and space.flags.c_contiguous
            and bool(np.all(np.diff(positions) > 0))
        )
        return PoolRows(space, np.asarray(positions, dtype=np.int64)) if in_place else space[positions]

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.positions), int(self.space.shape[1])

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.space[self.positions[index]]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        rows = self.space[self.positions]
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def mask(self) -> np.ndarray:
        """[P] True at the positions."""
        mask = np.zeros(len(self.space), dtype=bool)
        mask[self.positions] = True
        return mask

    def mean(self, axis: int = 0) -> np.ndarray:
        """The rows' mean over axis 0, a block at a time in float64."""
        if axis != 0:
            raise ValueError("PoolRows.mean is over rows only")
        total = np.zeros(self.space.shape[1], dtype=np.float64)
        for start in range(0, len(self.positions), 65_536):
            total += self[start : start + 65_536].sum(0, dtype=np.float64)
        return (total / max(len(self.positions), 1)).astype(self.space.dtype)


@dataclass
class SelectionContext:
    """Everything a strategy may look at. Optional fields are filled when the strategy's spec needs them.

    Attributes:
        candidate_ids: [N] ids of unlabelled, real (non-synthetic) pool images that may be chosen.
        labelled_ids: [L] ids of labelled images.
        labels: [L] class indices of the labelled images.
        n_classes: number of project classes.
        seed: makes every random choice repeatable.
        probabilities: [N, C] task-model probabilities on the candidates.
        candidate_features: [N, D] latent codes (or other features) of the candidates: an array, or
            for a large pool the pool's own rows read in place (`PoolRows`).
        labelled_features: [L, D] the same for the labelled images.
        held_out_accuracy: balanced accuracy of the task model on labels it was not fitted on
            (validation split or k-fold), when the learner measured one.
        extras: strategy-specific objects prepared by the caller (task model, VAE, images...).
    """

    candidate_ids: np.ndarray
    labelled_ids: np.ndarray
    labels: np.ndarray
    n_classes: int
    seed: int = 0
    probabilities: np.ndarray | None = None
    candidate_features: np.ndarray | PoolRows | None = None
    labelled_features: np.ndarray | None = None
    held_out_accuracy: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass
class SyntheticItem:
    """A generated image to be stored as a new pool item (the SI strategy)."""

    pixels: np.ndarray  # [C, H, W] floats in [0, 1]
    source_image_id: int
    score: float
    reason: dict[str, Any]


@dataclass
class Selection:
    image_ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    synthetic: list[SyntheticItem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_ids) + len(self.synthetic)


class Strategy:
    name: str = "base"

    def __init__(self, **params: Any) -> None:
        self.params = check_params(self.name, params)

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return defaults_for(cls.name)

    def compute_score(self, ctx: SelectionContext) -> np.ndarray:
        raise NotImplementedError

    def reason(self, ctx: SelectionContext, position: int, score: float) -> dict[str, Any]:
        return {"strategy": self.name}

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        n = len(ctx.candidate_ids)
        if n == 0 or batch_size <= 0:
            return Selection()
        scores = np.asarray(self.compute_score(ctx), dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"{self.name}: expected {n} scores, got shape {scores.shape}")
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        tiebreak = ctx.rng.random(n)
        order = np.lexsort((tiebreak, -ranked))[: min(batch_size, n)]
        return Selection(
            image_ids=[int(ctx.candidate_ids[i]) for i in order],
            scores=[float(scores[i]) for i in order],
            reasons=[self.reason(ctx, int(i), float(scores[i])) for i in order],
        )
