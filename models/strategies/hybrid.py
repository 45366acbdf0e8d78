"""Mixtures and schedules of other strategies."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.strategies.base import Selection, SelectionContext, Strategy


class HybridStrategy(Strategy):
    """Splits the batch between strategies (e.g. half snn, half coreset), in order, without repeats.

    params:
        parts: {strategy name: share of the batch}; shares are normalised.
        explore_until: while fewer labels than this exist, the whole batch goes to `explorer`
            (typicality), because a task model trained on a handful of labels is not worth following.
    """

    name = "hybrid"

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        from models.strategies.registry import get_strategy

        if len(ctx.labelled_ids) < self.params["explore_until"]:
            return get_strategy(self.params["explorer"]).select(ctx, batch_size)
        # The shares were checked when the strategy was built (models.strategies.params).
        parts = {k: float(v) for k, v in self.params["parts"].items() if float(v) > 0}
        total = sum(parts.values())
        quotas = {k: round(batch_size * v / total) for k, v in parts.items()}
        first = next(iter(quotas))
        quotas[first] += batch_size - sum(quotas.values())
        result = Selection()
        chosen: set[int] = set()
        for name, quota in quotas.items():
            if quota <= 0:
                continue
            keep = np.array([int(i) not in chosen for i in ctx.candidate_ids], dtype=bool)
            sub = replace(
                ctx,
                candidate_ids=ctx.candidate_ids[keep],
                probabilities=None if ctx.probabilities is None else ctx.probabilities[keep],
                candidate_features=None if ctx.candidate_features is None else ctx.candidate_features[keep],
                extras={k: v for k, v in ctx.extras.items() if k != "candidate_index"},
            )
            part = get_strategy(name).select(sub, quota)
            for image_id, score, reason in zip(part.image_ids, part.scores, part.reasons, strict=True):
                chosen.add(image_id)
                result.image_ids.append(image_id)
                result.scores.append(score)
                result.reasons.append({**reason, "part_of": self.name})
            result.synthetic.extend(part.synthetic)
        return result
