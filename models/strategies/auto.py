"""`auto`, the default strategy: one switch rule for every dataset.

While the project has fewer than `typical_per_class` labels per class, the batch goes to TypiClust
(typical images of uncovered clusters of the representation): a model trained on a handful of labels
is not worth following, and typicality is what wins that regime (Hacohen et al., ICML 2022). From then
on it goes to margin sampling on the calibrated task model, which led every later budget of the
benchmark suite. The rule reads only the label count and the class count, never the dataset.
"""

from __future__ import annotations

from typing import Any

from models.strategies.base import Selection, SelectionContext, Strategy


class AutoStrategy(Strategy):
    name = "auto"

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {"typical_per_class": 10}

    def choice(self, ctx: SelectionContext) -> str:
        few = len(ctx.labelled_ids) < self.params["typical_per_class"] * ctx.n_classes
        return "typiclust" if few or ctx.probabilities is None else "margin"

    def select(self, ctx: SelectionContext, batch_size: int) -> Selection:
        from models.strategies.registry import get_strategy

        chosen = self.choice(ctx)
        selection = get_strategy(chosen).select(ctx, batch_size)
        why = (
            f"fewer than {self.params['typical_per_class']} labels per class"
            if chosen == "typiclust"
            else f"at least {self.params['typical_per_class']} labels per class"
        )
        selection.reasons = [{**r, "part_of": self.name, "auto_rule": why} for r in selection.reasons]
        return selection
