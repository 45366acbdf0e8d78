"""Baselines that rank candidates one by one: random, predictive entropy, margin."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.strategies.base import SelectionContext, Strategy


def _probabilities(ctx: SelectionContext) -> np.ndarray:
    if ctx.probabilities is None:
        raise ValueError("this strategy needs task-model probabilities")
    return np.clip(ctx.probabilities, 1e-12, 1.0)


class RandomStrategy(Strategy):
    name = "random"

    def compute_score(self, ctx: SelectionContext) -> np.ndarray:
        return ctx.rng.random(len(ctx.candidate_ids))


class EntropyStrategy(Strategy):
    """Shannon entropy of the predicted class distribution (Settles, Active Learning Literature Survey)."""

    name = "entropy"

    def compute_score(self, ctx: SelectionContext) -> np.ndarray:
        p = _probabilities(ctx)
        return -(p * np.log(p)).sum(axis=1)

    def reason(self, ctx: SelectionContext, position: int, score: float) -> dict[str, Any]:
        assert ctx.probabilities is not None
        return {
            "strategy": self.name,
            "entropy": round(score, 4),
            "predicted": int(ctx.probabilities[position].argmax()),
        }


class MarginStrategy(Strategy):
    """1 - (p_top1 - p_top2): small margins between the two best classes rank first."""

    name = "margin"

    def compute_score(self, ctx: SelectionContext) -> np.ndarray:
        p = np.sort(_probabilities(ctx), axis=1)
        return 1.0 - (p[:, -1] - p[:, -2])

    def reason(self, ctx: SelectionContext, position: int, score: float) -> dict[str, Any]:
        assert ctx.probabilities is not None
        return {
            "strategy": self.name,
            "margin": round(1 - score, 4),
            "predicted": int(ctx.probabilities[position].argmax()),
        }
