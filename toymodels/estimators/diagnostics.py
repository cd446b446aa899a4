"""Convergence diagnostics of a ``(num_chains, num_draws)`` trace, via arviz-stats.

R-hat is the rank-normalised split R-hat and ESS the bulk effective sample size of Vehtari et al.
(2021, Bayesian Analysis 16(2)); the Monte-Carlo standard error of the mean is
``sd / sqrt(ESS_mean)``. With fewer than 4 draws per chain these are undefined and reported as
NaN; a constant trace has MCSE 0 and no ESS or R-hat (NaN).
"""

from __future__ import annotations

import warnings

import numpy as np
from arviz_stats.base import array_stats

__all__ = ["chain_diagnostics"]


def chain_diagnostics(trace: np.ndarray) -> dict[str, float]:
    """``{"ess", "rhat", "mcse"}`` of the mean of ``trace`` (chains × draws)."""
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 2:
        raise ValueError(f"trace must be (num_chains, num_draws), got shape {trace.shape}")
    if trace.shape[1] < 4 or not np.isfinite(trace).all():
        return {"ess": float("nan"), "rhat": float("nan"), "mcse": float("nan")}
    if np.ptp(trace) == 0:
        # a constant trace has no spread: its mean is exact (MCSE 0), but an ESS or R-hat would be
        # an artefact (chains that never moved look "perfectly mixed"); toymodels.estimators.diagnose tells
        # frozen chains from a loss that is truly constant
        return {"ess": float("nan"), "rhat": float("nan"), "mcse": 0.0}
    with warnings.catch_warnings():
        # arviz-stats warns on few chains or draws; the numbers it returns are still the ones we report
        warnings.simplefilter("ignore")
        ess = float(array_stats.ess(trace, chain_axis=0, draw_axis=1, method="mean"))
        rhat = float(array_stats.rhat(trace, chain_axis=0, draw_axis=1))
        mcse = float(array_stats.mcse(trace, chain_axis=0, draw_axis=1, method="mean"))
    return {"ess": ess, "rhat": rhat, "mcse": mcse}
