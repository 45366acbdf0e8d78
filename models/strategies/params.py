"""Every strategy's parameters: default, accepted values, and one check shared by the API and the
worker.

Kept free of numpy and torch so the API can refuse a malformed `params` with a 422 when a round or a
simulation is requested, instead of queueing a round that the worker then fails. The strategy classes
read their defaults from here and run the same check when they are built, so a parameter cannot be
accepted by one and refused by the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A check returns what is wrong with a value, or None when it is acceptable.
Check = Callable[[Any], str | None]


class StrategyParamsError(ValueError):
    """Parameters a strategy does not accept; the message names each problem."""


@dataclass(frozen=True)
class Param:
    default: Any
    check: Check


def _is_number(value: Any) -> bool:
    # JSON true/false arrive as bool, which Python counts as an int; a flag is not a number here.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if whole and low <= value and (high is None or value <= high):
            return None
        return f"must be an integer from {low}" + (" up" if high is None else f" to {high}")

    return check


def number(low: float | None = None, high: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        if _is_number(value) and (low is None or value >= low) and (high is None or value <= high):
            return None
        bounds = [f"at least {low}" if low is not None else "", f"at most {high}" if high is not None else ""]
        return "must be a finite number" + "".join(f", {b}" for b in bounds if b)

    return check


def optional(inner: Check) -> Check:
    def check(value: Any) -> str | None:
        problem = None if value is None else inner(value)
        return None if problem is None else f"{problem}, or null"

    return check


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"

    return check


def _other_strategy(value: Any) -> str | None:
    from models.strategies.registry import SPECS

    if isinstance(value, str) and value in SPECS and value != "hybrid":
        return None
    return f"must name a strategy other than hybrid ({', '.join(sorted(set(SPECS) - {'hybrid'}))})"


def _share(value: Any) -> bool:
    return _is_number(value) and value >= 0


def _shares(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return "must be an object of {strategy: share of the batch}"
    problems = [f"{name!r}: {why}" for name, why in ((n, _other_strategy(n)) for n in value) if why]
    problems += [f"{name!r}: the share must be a number of at least 0" for name, v in value.items() if not _share(v)]
    if not problems and not any(v > 0 for v in value.values()):
        problems.append("at least one share must be above 0")
    return "; ".join(problems) or None


_LATENT_ASCENT = {
    # alpha is the step size of p' = p + alpha * grad_p L; a negative one would climb down the loss,
    # and a huge one overflows float32 codes into NaN distances.
    "alpha": Param(0.5, number(0.0, 1000.0)),
    "n_steps": Param(5, integer(1, 1000)),
    "n_sources": Param(None, optional(integer(1))),
}

_TYPICALITY = {
    "max_clusters": Param(500, integer(1)),
    "knn": Param(20, integer(1, 1000)),
    # Typicality in a cluster larger than max_members is measured among a seeded sample of that many
    # members: exact kNN within a cluster grows with its square (100 clusters of 10,000 in a
    # million-image pool took 10-20 s; sampled, under 2 s). Smaller clusters are unchanged.
    "max_members": Param(2000, integer(2)),
}

PARAMS: dict[str, dict[str, Param]] = {
    "auto": {
        "typical_per_class": Param(10, integer(0)),
        # Skill is (balanced accuracy - 1/K) / (1 - 1/K); a guard under 0 never fires (auto@noguard).
        "min_skill": Param(1 / 3, number(high=1.0)),
        "full_skill": Param(None, optional(number(high=1.0))),
        "then": Param("snn", one_of("snn", "margin")),
    },
    "random": {},
    "entropy": {},
    "margin": {},
    "coreset": {},
    "typiclust": _TYPICALITY,
    "coldstart": _TYPICALITY,
    "snn-plain": _LATENT_ASCENT,
    "si": _LATENT_ASCENT,
    "snn": {
        # alpha in units of the pool's median nearest-neighbour distance (models.strategies.latent).
        "alpha": Param(1.0, number(0.0, 1000.0)),
        "n_steps": Param(3, integer(1, 1000)),
        "n_sources": Param(500, optional(integer(1))),
        "neighbours": Param(30, integer(1, 10_000)),
        # The weight is an exponent on (1e-3 + margin): past 100 it underflows every weight to 0.
        "uncertainty_weight": Param(1.0, number(0.0, 100.0)),
        "explore_share": Param(0.5, number(0.0, 1.0)),
        "explore_until_per_class": Param(10, integer(0)),
    },
    "hybrid": {
        "parts": Param({"snn": 0.5, "coreset": 0.5}, _shares),
        "explore_until": Param(0, integer(0)),
        "explorer": Param("typiclust", _other_strategy),
    },
}


def _relations(strategy: str, params: dict[str, Any]) -> list[str]:
    """Problems that involve more than one parameter."""
    if strategy == "auto" and params["full_skill"] is not None and params["full_skill"] < params["min_skill"]:
        return ["full_skill: must not be under min_skill"]
    return []


def defaults_for(strategy: str) -> dict[str, Any]:
    return {name: param.default for name, param in PARAMS.get(strategy, {}).items()}


def _problems(strategy: str, params: dict[str, Any]) -> list[str]:
    """Every unknown parameter and unacceptable value; relations only once each value is acceptable."""
    declared = PARAMS.get(strategy, {})
    takes = f"it takes {', '.join(sorted(declared))}" if declared else "it takes none"
    problems = [f"unknown parameter {name!r} ({takes})" for name in params if name not in declared]
    for name, value in params.items():
        why = declared[name].check(value) if name in declared else None
        if why:
            problems.append(f"{name}: {why}")
    return problems or _relations(strategy, {**defaults_for(strategy), **params})


def check_params(strategy: str, params: Any, *, label: str | None = None) -> dict[str, Any]:
    """The strategy's full parameters (defaults filled in), or StrategyParamsError naming every
    unknown parameter and every unacceptable value; `label` names the strategy in the message (a
    simulation's variant, "snn@wide")."""
    label = label or strategy
    if not isinstance(params, dict):
        raise StrategyParamsError(f"{label}: params must be an object")
    problems = _problems(strategy, params)
    if problems:
        raise StrategyParamsError(f"{label}: " + "; ".join(problems))
    return {**defaults_for(strategy), **params}


# A round's params may also carry its seed, which the worker takes before building the strategy.
ROUND_SEED = Param(None, integer(0))


def check_round_params(strategy: str, params: Any) -> None:
    """A round's `params`: the strategy's, plus an optional `seed` (an integer from 0 up) that makes
    the round's picks repeatable. StrategyParamsError names every problem."""
    if not isinstance(params, dict):
        raise StrategyParamsError(f"{strategy}: params must be an object")
    problems = _problems(strategy, {name: value for name, value in params.items() if name != "seed"})
    seed_problem = ROUND_SEED.check(params["seed"]) if "seed" in params else None
    if seed_problem:
        problems.append(f"seed: {seed_problem}")
    if problems:
        raise StrategyParamsError(f"{strategy}: " + "; ".join(problems))


def check_simulated_params(strategies: list[str], params: Any) -> None:
    """A simulation's `params`, keyed by the strategies it runs: a name ("snn") or a variant
    ("snn@wide", strategy snn with its own params). StrategyParamsError names every problem, a key
    that is no strategy of the run included: it would otherwise be ignored without a word."""
    if not isinstance(params, dict):
        raise StrategyParamsError("params must be an object of {strategy: {parameter: value}}")
    problems = [f"params for {key!r}, which is not a strategy of the run" for key in params if key not in strategies]
    for name in strategies:
        try:
            check_params(name.split("@")[0], params.get(name, {}), label=name)
        except StrategyParamsError as exc:
            problems.append(str(exc))
    if problems:
        raise StrategyParamsError("; ".join(problems))
