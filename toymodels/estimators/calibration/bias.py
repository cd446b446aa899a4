"""The step-size bias law, its fit to ``λ̂(ε) ± MCSE``, and the choice of ε from the fit.

SGLD is a weak-order-one scheme (Mattingly, Stuart & Tretyakov, SIAM J. Numer. Anal. 48 (2010);
Vollmer, Zygalakis & Teh, JMLR 17 (2016)): ``λ̂(ε) = λ₀ (1 + sε + O(ε²))``. The law
``λ̂(ε) = λ₀/(1 − sε)`` has that expansion and is exact for SGLD on a quadratic potential with one
curvature (:func:`fit_step_size_bias`); :func:`choose_step_size` takes the largest ε whose bias,
with 95 % confidence, is within the tolerance (the rule of :mod:`toymodels.estimators.calibration`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["fit_step_size_bias", "relative_bias", "choose_step_size", "round_down"]


def fit_step_size_bias(step_sizes, estimates, mcses, *, model: str = "auto", min_points: int = 3,
                       p_threshold: float = 0.01) -> dict:
    """Fit the step-size bias law to ``λ̂(ε) ± MCSE``; return the zero-step value and the slope.

    Two laws, equal to first order in ε (``λ̂(ε) = λ₀ (1 + sε + O(ε²))``):

    * ``"gaussian"`` — ``λ̂(ε) = λ₀ / (1 − sε)``, i.e. ``1/λ̂`` linear in ε. It is *exact* for SGLD
      on any quadratic potential (each direction's variance is ``1/(κ(1 − εκ/4))``) with one
      curvature, and close for several, so it stays straight up to large biases;
    * ``"linear"`` — ``λ̂(ε) = λ₀ (1 + sε)``, for estimates near or below zero.

    ``"auto"`` takes the Gaussian law when every estimate is positive by 3 MCSE, else the linear.
    The straight line (in ``1/λ̂`` or ``λ̂``) is fitted by weighted least squares with weights from the
    MCSEs (propagated: ``σ(1/λ̂) = σ/λ̂²``). Starting from all points, while the χ² goodness-of-fit
    p-value is below ``p_threshold`` and more than ``min_points`` remain, the largest ε is dropped
    (higher orders in ε matter there first). If the last fit is still rejected its standard errors
    are inflated by ``√(χ²/dof)``.

    Returns ``{model, llc_zero_step, llc_zero_step_se, rel_slope (s), rel_slope_se, used (bool mask
    in input order), chi2, dof, p_value}``; with fewer than 2 usable points ``rel_slope`` is NaN.
    """
    eps = np.asarray(step_sizes, dtype=float)
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(mcses, dtype=float)
    ok = np.isfinite(eps) & np.isfinite(est) & np.isfinite(se) & (se > 0)
    order = [i for i in np.argsort(eps) if ok[i]]
    nan = float("nan")
    if model == "auto":
        model = "gaussian" if order and all(est[i] > 3 * se[i] for i in order) else "linear"
    if model not in ("gaussian", "linear"):
        raise ValueError(f"model must be 'auto', 'gaussian' or 'linear', got {model!r}")
    if len(order) < 2:
        used = np.zeros(eps.shape, dtype=bool)
        used[order] = True
        value = float(est[order[0]]) if order else nan
        err = float(se[order[0]]) if order else nan
        return dict(model=model, llc_zero_step=value, llc_zero_step_se=err, rel_slope=nan,
                    rel_slope_se=nan, used=used, chi2=nan, dof=0, p_value=nan)
    if model == "gaussian":
        y_all, sy_all = 1.0 / est, se / est ** 2
    else:
        y_all, sy_all = est, se
    while True:
        idx = np.array(order)
        x, y, w = eps[idx], y_all[idx], 1.0 / sy_all[idx] ** 2
        design = np.stack([np.ones_like(x), x], axis=1)
        cov = np.linalg.inv(design.T @ (design * w[:, None]))
        beta = cov @ (design.T @ (w * y))
        chi2 = float((w * (y - design @ beta) ** 2).sum())
        dof = len(idx) - 2
        p = float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
        if p >= p_threshold or len(order) <= min_points:
            break
        order = order[:-1]
    if dof > 0 and p < p_threshold:
        cov = cov * (chi2 / dof)
    b0, b1 = beta
    if model == "gaussian":  # 1/λ̂ = b0 + b1 ε = (1 − sε)/λ₀: λ₀ = 1/b0, s = −b1/b0
        lam0, lam0_se = 1.0 / b0, math.sqrt(cov[0, 0]) / b0 ** 2
        s, grad = -b1 / b0, np.array([b1 / b0 ** 2, -1.0 / b0])
    else:  # λ̂ = b0 + b1 ε = λ₀(1 + sε): λ₀ = b0, s = b1/b0
        lam0, lam0_se = b0, math.sqrt(cov[0, 0])
        s, grad = b1 / b0, np.array([-b1 / b0 ** 2, 1.0 / b0])
    s_se = float(math.sqrt(max(grad @ cov @ grad, 0.0)))
    used = np.zeros(eps.shape, dtype=bool)
    used[idx] = True
    return dict(model=model, llc_zero_step=float(lam0), llc_zero_step_se=float(lam0_se),
                rel_slope=float(s), rel_slope_se=s_se, used=used, chi2=chi2, dof=dof, p_value=p)


def relative_bias(fit: dict, step_size: float, slope: float | None = None) -> float:
    """The fitted law's relative bias ``λ̂(ε)/λ₀ − 1`` at ``step_size`` (with ``slope`` for s)."""
    s = fit["rel_slope"] if slope is None else slope
    if fit["model"] == "gaussian":
        return s * step_size / (1 - s * step_size)
    return s * step_size


def choose_step_size(fit: dict, step_sizes, *, tolerance: float) -> tuple[float, str]:
    """The rule's choice from a :func:`fit_step_size_bias` result: ``(ε*, reason)``.

    ``ε*`` is the largest step whose bias bound — the fitted law with the slope moved 2 standard
    errors away from zero — is at most ``tolerance``, capped at the largest ε the fit used.
    """
    eps = np.asarray(step_sizes, dtype=float)
    used = fit["used"]
    if not used.any():
        smallest = float(eps.min()) if eps.size else float("nan")
        return smallest, "no grid point was usable (all diverged or unmixed): the smallest step"
    largest_fitted = float(eps[used].max())
    if not math.isfinite(fit["rel_slope"]):
        # one point measures no slope: take the smallest step the grid stood, not the largest
        smallest_usable = float(eps[used].min())
        return smallest_usable, ("only one usable grid point: no bias could be measured; the "
                                 "smallest usable step, unverified")
    bound_slope = abs(fit["rel_slope"]) + 2 * fit["rel_slope_se"]
    if bound_slope <= 0:
        return largest_fitted, "no step-size dependence at all over the grid"
    if fit["model"] == "gaussian":
        eps_star = tolerance / ((1 + tolerance) * bound_slope)
    else:
        eps_star = tolerance / bound_slope
    if eps_star >= largest_fitted:
        return largest_fitted, (f"bias within {100 * tolerance:g}% up to the largest step the fit used; "
                                "capped there")
    return float(round_down(eps_star)), (f"the fitted bias reaches {100 * tolerance:g}% (95% bound) "
                                         f"beyond this step")


def round_down(x: float) -> float:
    """Round down to two significant digits (a step size people can write down)."""
    if x <= 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(x)) - 1
    return math.floor(x / 10 ** e) * 10 ** e

