"""Strategy names -> implementations, importable without torch.

The API validates names against this table; the worker imports the implementation lazily, so a
strategy's heavy imports are paid only where it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.strategies.base import Strategy

# What a strategy needs the worker to prepare for it.
NEEDS_PROBABILITIES = "probabilities"  # task-model class probabilities on the candidates
NEEDS_LATENTS = "latents"  # VAE latent codes of candidates and labelled images
NEEDS_GENERATIVE = "generative"  # the task model and VAE themselves (gradients through the decoder)


@dataclass(frozen=True)
class StrategySpec:
    name: str
    target: str
    needs: frozenset[str]
    description: str

    @property
    def needs_labels(self) -> bool:
        return bool(self.needs & {NEEDS_PROBABILITIES, NEEDS_GENERATIVE})


SPECS: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "auto",
            "models.strategies.auto:AutoStrategy",
            frozenset({NEEDS_LATENTS, NEEDS_PROBABILITIES}),
            "the default: random while the model is near chance on held-out labels, else typicality "
            "while labels are under 10 per class, then snn in feature space (margin without a learned head)",
        ),
        StrategySpec("random", "models.strategies.simple:RandomStrategy", frozenset(), "uniform random sample"),
        StrategySpec(
            "entropy",
            "models.strategies.simple:EntropyStrategy",
            frozenset({NEEDS_PROBABILITIES}),
            "highest predictive entropy",
        ),
        StrategySpec(
            "margin",
            "models.strategies.simple:MarginStrategy",
            frozenset({NEEDS_PROBABILITIES}),
            "smallest gap between the two most likely classes",
        ),
        StrategySpec(
            "coldstart",
            "models.strategies.coreset:ColdStartStrategy",
            frozenset({NEEDS_LATENTS}),
            "typical images of distinct latent clusters, for rounds with no labels",
        ),
        StrategySpec(
            "typiclust",
            "models.strategies.coreset:TypicalityStrategy",
            frozenset({NEEDS_LATENTS}),
            "most typical image of each uncovered latent cluster (TypiClust)",
        ),
        StrategySpec(
            "coreset",
            "models.strategies.coreset:CoresetStrategy",
            frozenset({NEEDS_LATENTS}),
            "k-center greedy on latents, seeded by the labelled set",
        ),
        StrategySpec(
            "snn",
            "models.strategies.latent:SNNStrategy",
            frozenset({NEEDS_LATENTS, NEEDS_GENERATIVE, NEEDS_PROBABILITIES}),
            "latent ascent from labelled codes, then uncertainty-weighted k-center among their neighbours",
        ),
        StrategySpec(
            "snn-plain",
            "models.strategies.latent:PlainSNNStrategy",
            frozenset({NEEDS_LATENTS, NEEDS_GENERATIVE}),
            "the seed SNN: nearest unlabelled image to each moved code, ranked by loss",
        ),
        StrategySpec(
            "si",
            "models.strategies.latent:SIStrategy",
            frozenset({NEEDS_LATENTS, NEEDS_GENERATIVE}),
            "decoded moved codes become synthetic images to label",
        ),
        StrategySpec(
            "hybrid",
            "models.strategies.hybrid:HybridStrategy",
            frozenset({NEEDS_LATENTS, NEEDS_GENERATIVE, NEEDS_PROBABILITIES}),
            "a mix of strategies sharing one batch (default half snn, half coreset)",
        ),
    )
}

COLD_START = "coldstart"
DEFAULT_STRATEGY = "auto"


def strategy_names() -> list[str]:
    return sorted(SPECS)


def spec_for(name: str) -> StrategySpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}") from None


def get_strategy(name: str, **params: Any) -> Strategy:
    module_name, _, class_name = spec_for(name).target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**params)
