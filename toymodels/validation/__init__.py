"""The registry of exact cases behind ``toymodels validate``: each estimate against its exact value.

Each case runs :func:`toymodels.estimate_llc` on a model whose answer ``theory/`` knows exactly and
compares the estimate with the exact finite-temperature value for the sampler's own posterior
(same nβ, same localization), printing the asymptotic λ beside it. A case passes when its
relative error is within its tolerance *and* its z-score ``(estimate − target) / MCSE`` is within
``z_tol``: the first says the estimate is useful, the second that the reported Monte-Carlo error
is honest.

This package is the one place in the library that imports both ``theory`` (ground truth) and the
estimators. Modules:

* :mod:`~toymodels.validation.case` — :class:`ValidationCase` and :func:`calibrated_run`;
* :mod:`~toymodels.validation.normal_crossing` — normal crossings and the localized quadratic;
* :mod:`~toymodels.validation.dln` — deep linear networks against Aoyagi's coefficients;
* :mod:`~toymodels.validation.tms` — TMS k-gons against their exact local coefficients;
* :mod:`~toymodels.validation.turing` — one-step noisy Turing machines against exact oracles;
* :mod:`~toymodels.validation.gridworld` — the regret of tabular gridworld policies at an optimum;
* :mod:`~toymodels.validation.runner` — the run, table, JSON and figure.
"""

from __future__ import annotations

from collections.abc import Callable

from toymodels.validation import dln, gridworld, normal_crossing, tms, turing
from toymodels.validation.case import ValidationCase
from toymodels.validation.runner import run_validation

__all__ = ["ValidationCase", "CASE_GROUPS", "DEFAULT_GROUPS", "validation_cases", "run_validation"]

#: name -> function(scale) returning cases; a new topic adds its group here.
CASE_GROUPS: dict[str, Callable[[float], list[ValidationCase]]] = {
    "calibrated": normal_crossing.calibrated_cases,
    "dln": dln.cases,
    "tms": tms.cases,
    "turing": turing.cases,
    "gridworld": gridworld.cases,
    "foundation-manual": normal_crossing.manual_cases,
}
#: what `toymodels validate` runs without --group: every exact case once (the hand-tuned
#: foundation settings repeat the calibrated group's cases, so they run only when asked for)
DEFAULT_GROUPS = ["calibrated", "dln", "tms", "turing", "gridworld"]


def validation_cases(groups: list[str] | None = None, scale: float = 1.0) -> list[ValidationCase]:
    """All registered cases (or those of the named groups); ``scale`` shrinks chains and draws."""
    names = DEFAULT_GROUPS if not groups else groups
    unknown = [g for g in names if g not in CASE_GROUPS]
    if unknown:
        raise ValueError(f"unknown validation groups {unknown}; known: {sorted(CASE_GROUPS)}")
    return [case for g in names for case in CASE_GROUPS[g](scale)]
