"""The statistics of susceptibilities: recorded series stacked per quantity (:func:`stack_records`),
the mean with its ESS-based MCSE (:func:`mean_mcse_ess`), and the covariance matrix of observables
and perturbations with the MCSE of every entry (:func:`covariances`).

``χ̂ = −(1/(CT)) Σ_{c,t} (φ_ct − φ̄)(ΔL_ct − ΔL̄)``; its MCSE is the ESS-based MCSE of the mean of
the centred product series (arviz's ``mcse(method="mean")``; Vehtari et al. 2021, Bayesian
Analysis 16(2)), see :mod:`toymodels.estimators.susceptibility`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from arviz_stats.base import array_stats

__all__ = ["stack_records", "mean_mcse_ess", "covariances"]


def stack_records(recorded: Mapping[str, np.ndarray], keys: Sequence[str], prefix: str,
                  discard: int) -> tuple[np.ndarray, list[str]]:
    """``(quantities, chains, draws)`` from recorded arrays of shape ``(chains, draws, ...)``."""
    series, names = [], []
    for key in keys:
        arr = np.asarray(recorded[key], dtype=np.float64)[:, discard:]
        if arr.ndim < 2:
            raise ValueError(f"{key!r} is not a (chains, draws, ...) record")
        label = key[len(prefix):] if key.startswith(prefix) else key
        extra = arr.shape[2:]
        flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
        if flat.shape[2] == 0:
            raise ValueError(f"{label!r} returned an empty tensor")
        for j in range(flat.shape[2]):
            series.append(flat[:, :, j])
            if int(np.prod(extra)) == 1 and len(extra) <= 1:
                names.append(label)
            else:
                idx = np.unravel_index(j, extra)
                names.append(f"{label}[{','.join(str(int(i)) for i in idx)}]")
    return np.stack(series), names


def mean_mcse_ess(series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, ESS-based MCSE and ESS of the mean of each ``(chains, draws)`` series in a
    ``(k, chains, draws)`` stack. The ESS is arviz-stats' ``ess(method="mean")`` (split chains,
    Geyer's initial monotone sequence) and the MCSE ``sd / sqrt(ESS)`` with ``sd`` at ddof = 1,
    which is what arviz's ``mcse(method="mean")`` computes (one ESS evaluation instead of two).
    As :func:`toymodels.chain_diagnostics`: a constant series has MCSE 0, fewer than 4 draws NaN.
    """
    mean = series.mean(axis=(1, 2))
    k, _, draws = series.shape
    mcse = np.full(k, np.nan)
    ess = np.full(k, np.nan)
    if draws < 4:
        return mean, mcse, ess
    finite = np.isfinite(series).all(axis=(1, 2))
    constant = finite & (np.ptp(series.reshape(k, -1), axis=1) == 0)
    mcse[constant], ess[constant] = 0.0, float(series[0].size)
    varying = finite & ~constant
    if varying.any():
        with warnings.catch_warnings():
            # arviz-stats warns on few chains; the numbers are still the ones we report
            warnings.simplefilter("ignore")
            sub = series[varying]
            ess[varying] = array_stats.ess(sub, chain_axis=-2, draw_axis=-1, method="mean")
            sd = sub.reshape(sub.shape[0], -1).std(axis=1, ddof=1)
            mcse[varying] = sd / np.sqrt(ess[varying])
    return mean, mcse, ess


# products of (observable, perturbation) series are formed this many numbers at a time, so that a
# large response matrix (or per-sample influence over many samples) never holds all P·Q product
# series in memory at once
_PRODUCT_CHUNK = 2**22


def covariances(obs: np.ndarray, pert: np.ndarray):
    """``(obs_mean, pert_mean, cov, mcse, ess)`` of ``(quantities, chains, draws)`` stacks:
    ``cov[a, b]`` is the mean of the centred product series ``(φ_a − φ̄_a)(ΔL_b − ΔL̄_b)`` over
    chains × draws, with its MCSE and ESS.

    An observable that returned inf/NaN gives NaN entries (reported by
    ``SusceptibilityResult.diagnose()``); numpy's warnings about them are expected, not news.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        num_obs, chains, draws = obs.shape
        num_pert = pert.shape[0]
        obs_mean = obs.mean(axis=(1, 2))
        pert_mean = pert.mean(axis=(1, 2))
        obs_c = obs - obs_mean[:, None, None]
        pert_c = pert - pert_mean[:, None, None]
        cov = np.empty((num_obs, num_pert))
        mcse = np.empty((num_obs, num_pert))
        ess = np.empty((num_obs, num_pert))
        cols = max(1, _PRODUCT_CHUNK // (chains * draws))
        for a in range(num_obs):
            for lo in range(0, num_pert, cols):
                hi = min(num_pert, lo + cols)
                # the centred product series (φ_a − φ̄_a)(ΔL_b − ΔL̄_b), b in [lo, hi)
                products = obs_c[a][None] * pert_c[lo:hi]
                cov[a, lo:hi], mcse[a, lo:hi], ess[a, lo:hi] = mean_mcse_ess(products)
    return obs_mean, pert_mean, cov, mcse, ess
