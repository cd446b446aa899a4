"""Choosing the step size: short batched runs over a grid of ε, and a documented rule.

**Why.** SGLD (and SGNHT, preconditioned SGLD) samples a law that differs from the target by O(ε):
for a Gaussian of curvature κ, SGLD's variance is ``1/(κ(1 − εκ/4))``, so ``λ̂`` is biased up by
about ``εκ/4`` (docs/error_budget.md). Too small a step wastes time (the chain needs ~``1/(εκ)``
steps to forget where it was); too large a step biases the estimate or diverges.

**The rule** (:func:`calibrate`):

1. *Stability scan* — a geometric grid ``ε₀·4^k`` around the starting guess, a few chains and a
   few hundred steps each, all as one batched run. ``ε_max`` is the largest step at which no chain
   diverged and, where the loss is exact (full batch), the mean MALA acceptance probability of
   the SGLD moves is at least 0.5 (a move that a Metropolis test would reject half the time is far
   outside the small-ε regime).
2. *Bias grid* — ``ε_max·2^{−j}``, ``j = 0 … num_step_sizes−1``, as one batched run; each point
   gives ``λ̂(ε) ± MCSE``.
3. *Fit* — the step-size bias is linear in ε to leading order (SGLD is a weak-order-one scheme:
   Mattingly, Stuart & Tretyakov, SIAM J. Numer. Anal. 48 (2010); Vollmer, Zygalakis & Teh,
   JMLR 17 (2016)): ``λ̂(ε) = λ₀ (1 + sε + O(ε²))``. The law ``λ̂(ε) = λ₀/(1 − sε)`` has that
   expansion and is *exact* for SGLD on a quadratic potential with one curvature, so it stays
   straight (as ``1/λ̂`` against ε) up to large biases; it is fitted by weighted least squares
   (weights from the MCSEs) to the mixed points (split R-hat ≤ 1.1, no divergence), dropping the
   largest ε while the fit is rejected (χ² p-value < 0.01). ``λ₀`` is the zero-step limit
   (:func:`fit_step_size_bias`; estimates near zero use ``λ₀(1 + sε)`` instead).
4. *Choice* — the largest ε whose bias, with 95 % confidence (slope ``|s| + 2σ_s``), is within
   ``tolerance`` (1 %) of ``λ₀``, capped at the largest ε used in the fit (beyond it the law is not
   trusted). Equivalently: the largest step whose estimate agrees with the zero-step limit to
   1 % — which the MCSE of a short run could never resolve directly; instead the slope is measured
   where the bias is large and well resolved, and extrapolated down.

Points whose chains escaped (more than 5 % of draws below ``L(w*)``) are reported; they do not
change the rule, which is about the step size only.

For MALA the step-size bias is zero and the rule is an acceptance target instead: ε is adapted by
dual averaging during burn-in to reach a mean acceptance of ``target_accept`` (0.8 by default:
higher than the d → ∞ optimum 0.57 because on singular potentials a large step leaves chains stuck
in stiff valleys).

The same grid can be crossed with several ``nbeta`` and ``localization`` values: every
combination is one group of chains in the same batched run, and each gets its own choice.
"""

from __future__ import annotations

import json
import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from toymodels.checks import as_choice, as_float, as_int, as_optional_int
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.objectives.objective import default_nbeta, make_objective, resolve_mask
from toymodels.estimators.relaxation import relax
from toymodels.sampling.kernels import SAMPLERS
from toymodels.sampling.driver import run_chains
from toymodels.sampling.sgld import SGLDHyperparameters

SAMPLER_NAMES = tuple(SAMPLERS)

__all__ = ["CalibrationResult", "CalibrationChoice", "Schedule", "calibrate", "fit_step_size_bias",
           "choose_step_size", "relative_bias"]

RULE = ("largest ε whose step-size bias, from the law λ̂(ε) = λ₀/(1 − sε) fitted to a grid of "
        "short batched runs, is within the tolerance with 95% confidence")


@dataclass
class CalibrationChoice:
    """The choice for one ``(nbeta, localization)``."""

    nbeta: float
    localization: float
    step_size: float
    reason: str
    llc_zero_step: float  #: λ₀, the fitted ε → 0 limit
    llc_zero_step_se: float
    model: str  #: the bias law fitted: "gaussian" λ₀/(1 − sε) or "linear" λ₀(1 + sε)
    rel_slope: float  #: s, the relative bias per unit step size
    rel_slope_se: float
    predicted_bias: float  #: the fitted relative bias at the choice
    bias_bound: float  #: its 95% upper bound (= tolerance unless capped)
    step_size_max: float  #: the largest stable step of the scan
    fit_points: list[float] = field(default_factory=list)  #: the ε values the fit used
    fraction_below_init: float = 0.0  #: over the bias grid's chains at the chosen or nearest ε
    localization_to_gradient: float = float("nan")  #: mean ||γ-term|| / ||nβ∇L-term||
    #: the relaxation before the bias grid (:meth:`toymodels.estimators.relaxation.Relaxation.summary`):
    #: its step size, steps, whether the chains stopped drifting, and its blocks
    relaxation: dict = field(default_factory=dict)


@dataclass
class Schedule:
    """A chain schedule chosen by :meth:`CalibrationResult.schedule`, with the reason for each value."""

    num_burnin_steps: int
    num_draws: int
    num_steps_bw_draws: int
    step_size: float
    autocorrelation_steps: float  #: τ at the chosen step, in steps
    target_mcse: float  #: the MCSE asked for (``rel_mcse · |λ₀|``)
    predicted_mcse: float  #: the MCSE this schedule should reach
    short_of_target: bool  #: a budget cut the draws below what the target needs
    reasons: dict = field(default_factory=dict)  #: per value: "given" or how it was chosen

    def kwargs(self) -> dict:
        """``num_burnin_steps``, ``num_draws``, ``num_steps_bw_draws`` for ``estimate_llc``."""
        return dict(num_burnin_steps=self.num_burnin_steps, num_draws=self.num_draws,
                    num_steps_bw_draws=self.num_steps_bw_draws)

    # a mapping of those three, so that ``estimate_llc(**schedule)`` and ``schedule["num_draws"]``
    # work as they did when schedule() returned a dict
    def keys(self):
        return self.kwargs().keys()

    def __getitem__(self, key: str):
        return self.kwargs()[key]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` found; ``settings()`` feeds :func:`toymodels.estimate_llc`."""

    sampler: str
    rule: str
    tolerance: float
    choices: list[CalibrationChoice]
    table: list[dict]  #: one row per grid point (scan and bias grid)
    seconds: float
    sampler_options: dict = field(default_factory=dict)
    #: per ``(nβ, γ)``: the relaxed chain positions that started the bias grid (not serialised)
    warm_states: dict = field(default_factory=dict, repr=False)

    def choice(self, nbeta: float | None = None, localization: float | None = None) -> CalibrationChoice:
        """The choice for this ``(nbeta, localization)`` (the only one if there is one)."""
        if nbeta is None and localization is None:
            if len(self.choices) > 1:
                raise ValueError("calibrated for several (nbeta, localization): name one, e.g. "
                                 f"choice(nbeta={self.choices[0].nbeta}, "
                                 f"localization={self.choices[0].localization})")
            return self.choices[0]
        for c in self.choices:
            if (nbeta is None or math.isclose(c.nbeta, nbeta)) and (
                    localization is None or math.isclose(c.localization, localization)):
                return c
        raise ValueError(f"no calibration for nbeta={nbeta}, localization={localization}; have "
                         f"{[(c.nbeta, c.localization) for c in self.choices]}")

    @property
    def step_size(self) -> float:
        return self.choice().step_size

    def settings(self, nbeta: float | None = None, localization: float | None = None) -> dict:
        """``dict(step_size, nbeta, localization, sampler)`` for ``estimate_llc(**settings)``."""
        c = self.choice(nbeta, localization)
        return dict(step_size=c.step_size, nbeta=c.nbeta, localization=c.localization,
                    sampler=self.sampler)

    def schedule(self, num_chains: int, *, rel_mcse: float = 0.02, nbeta: float | None = None,
                 localization: float | None = None, num_burnin_steps: int | None = None,
                 num_draws: int | None = None, num_steps_bw_draws: int | None = None,
                 budget_steps: int | None = None, budget_seconds: float | None = None,
                 seconds_per_step: float | None = None, min_burnin: int = 200,
                 burnin_autocorrelations: float = 20.0, safety: float = 1.5,
                 min_draws: int = 100) -> Schedule:
        """The chain schedule at the chosen step size for an MCSE of ``rel_mcse·|λ₀|``.

        The rule (each value the caller passes is kept as given):

        * **autocorrelation** — the integrated autocorrelation time of the per-draw LLC, in
          steps, is measured at each mixed grid point (``steps × chains / ESS``); times ε it is
          nearly the same at every point (time in a Langevin chain is ε × steps), so the median
          of ``ε_j τ_j``, times ``safety``, divided by the chosen ε gives τ at the choice;
        * **burn-in** — the chains start from the calibration's relaxed positions (see
          :mod:`toymodels.estimators.relaxation`), so they only have to settle at the new step size:
          ``max(min_burnin, burnin_autocorrelations · τ)`` steps;
        * **draws** — enough that ``MCSE = sd / √ESS`` reaches ``rel_mcse·|λ₀|`` (the per-draw
          standard deviation from the least biased grid point; ``|λ₀|`` floored at 0.05, so an
          estimate near zero does not ask for unbounded precision), spaced about τ/2 steps
          apart, at least ``min_draws``;
        * **budget** — if ``burn-in + draws × spacing`` exceeds ``budget_steps`` (or
          ``budget_seconds / seconds_per_step``), the draws are cut to fit and the schedule says
          it is ``short_of_target``, with the MCSE it predicts.
        """
        c = self.choice(nbeta, localization)
        num_chains = as_int("num_chains", num_chains, 1)
        rel_mcse = as_float("rel_mcse", rel_mcse, minimum=0, strict=True, hint="0.02 means 2%")
        num_burnin_steps = as_optional_int("num_burnin_steps", num_burnin_steps, 0)
        num_draws = as_optional_int("num_draws", num_draws, 1)
        num_steps_bw_draws = as_optional_int("num_steps_bw_draws", num_steps_bw_draws, 1)
        measured = [r for r in self.table if r["stage"] == "grid"
                    and math.isfinite(r.get("ess", math.nan)) and r["ess"] > 0
                    and math.isclose(r["nbeta"], c.nbeta) and math.isclose(r["localization"], c.localization)]
        rows = [r for r in measured if r.get("used_in_fit")]
        reasons = {}
        if not rows and measured:
            # a token calibration (smoke runs) may mix no grid point: scale from what was
            # measured, and say so; the run's own R-hat and the diagnosis judge the result
            rows = measured
            reasons["autocorrelation"] = "scaled from unmixed grid points (no grid point mixed)"
        if not rows:
            raise ValueError("the calibration has no mixed grid point to scale a schedule from: "
                             "calibrate with more draws (num_draws, max_rounds), or pass "
                             "num_burnin_steps, num_draws and num_steps_bw_draws yourself")
        time_scale = float(np.median([r["draws"] * r["steps_bw_draws"] * r["kept_chains"] / r["ess"]
                                      * r["step_size"] for r in rows]))
        tau = max(1.0, safety * time_scale / c.step_size)
        least_biased = min(rows, key=lambda r: r["step_size"])
        sd = least_biased["sd"]
        lam0 = c.llc_zero_step if math.isfinite(c.llc_zero_step) else least_biased["llc_mean"]
        target = rel_mcse * max(abs(lam0), 0.05)
        ess_needed = max((sd / target) ** 2, 1.0)
        steps_needed = ess_needed * tau / num_chains  # sampling steps after burn-in
        if num_burnin_steps is None:
            burnin = max(min_burnin, int(math.ceil(burnin_autocorrelations * tau)))
            reasons["num_burnin_steps"] = (f"{burnin_autocorrelations:g} autocorrelation times "
                                           f"(τ = {tau:.0f} steps), at least {min_burnin}")
        else:
            burnin = num_burnin_steps
            reasons["num_burnin_steps"] = "given"
        if num_steps_bw_draws is not None:
            bw = num_steps_bw_draws
            reasons["num_steps_bw_draws"] = "given"
        elif num_draws is not None:
            bw = max(1, int(math.ceil(steps_needed / num_draws)))
            reasons["num_steps_bw_draws"] = "spread the given draws over the steps the target needs"
        else:
            bw = max(1, min(int(round(tau / 2)), int(steps_needed // min_draws)))
            reasons["num_steps_bw_draws"] = f"about τ/2 = {tau / 2:.0f} steps, at least {min_draws} draws"
        if num_draws is None:
            draws = max(min_draws, int(math.ceil(steps_needed / bw)))
            reasons["num_draws"] = (f"an MCSE of {100 * rel_mcse:g}% of |λ₀| = {abs(lam0):.3g} "
                                    f"(per-draw sd {sd:.3g}, ESS {ess_needed:.0f} needed)")
        else:
            draws = num_draws
            reasons["num_draws"] = "given"
        limits = []
        if budget_steps is not None:
            limits.append((as_int("budget_steps", budget_steps, 1), f"budget_steps = {budget_steps}"))
        if budget_seconds is not None and seconds_per_step is not None and seconds_per_step > 0:
            limits.append((int(budget_seconds / seconds_per_step),
                           f"budget_seconds = {budget_seconds:g} at {1e3 * seconds_per_step:.2g} ms a step"))
        short = False
        for limit, why in limits:
            if burnin + draws * bw > limit and num_draws is None:
                draws = max(4, (limit - burnin) // bw)
                short = True
                reasons["num_draws"] = f"cut to fit {why}"
        predicted = target * math.sqrt(steps_needed / max(draws * bw, 1))
        if num_draws is None and not short:
            predicted = min(predicted, target)
        return Schedule(num_burnin_steps=burnin, num_draws=draws, num_steps_bw_draws=bw,
                        step_size=c.step_size, autocorrelation_steps=tau, target_mcse=target,
                        predicted_mcse=predicted, short_of_target=short, reasons=reasons)

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationResult:
        """The result again from :meth:`to_dict` (e.g. ``LLCResult.calibration``), without the
        relaxed positions (a run from it relaxes its own chains)."""
        if not isinstance(data, dict) or "choices" not in data:
            raise TypeError("expected the dict of CalibrationResult.to_dict() (as stored in "
                            f"LLCResult.calibration), got {type(data).__name__}")
        names = {f for f in CalibrationChoice.__dataclass_fields__}
        choices = [CalibrationChoice(**{k: v for k, v in c.items() if k in names}) for c in data["choices"]]
        return cls(sampler=data["sampler"], rule=data["rule"], tolerance=data["tolerance"],
                   choices=choices, table=data["table"], seconds=data.get("seconds", 0.0),
                   sampler_options=data.get("sampler_options", {}))

    def to_dict(self) -> dict:
        return dict(sampler=self.sampler, rule=self.rule, tolerance=self.tolerance,
                    choices=[asdict(c) for c in self.choices], table=self.table,
                    seconds=self.seconds, sampler_options=self.sampler_options)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, default=float))

    def summary(self) -> str:
        lines = [f"calibration ({self.sampler}, {self.seconds:.1f} s): {self.rule}"]
        for c in self.choices:
            lines.append(
                f"  nβ = {c.nbeta:.4g}, γ = {c.localization:.4g}: ε = {c.step_size:.3g} "
                f"(predicted bias {100 * c.predicted_bias:+.2f}%, bound {100 * c.bias_bound:.2f}%; "
                f"λ₀ = {c.llc_zero_step:.4g} ± {c.llc_zero_step_se:.2g}); {c.reason}")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, axes=None):
        """λ̂ against ε for each ``(nβ, γ)``: points ± 2 MCSE, the fitted line, the tolerance band
        around λ₀ and the chosen ε marked. Returns the figure."""
        import matplotlib

        if axes is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            n = len(self.choices)
            fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8), squeeze=False)
            axes = axes[0]
        fig = axes[0].figure
        for ax, c in zip(axes, self.choices):
            rows = [r for r in self.table if r["stage"] == "grid" and math.isclose(r["nbeta"], c.nbeta)
                    and math.isclose(r["localization"], c.localization) and r["kept_chains"] > 1]
            eps = np.array([r["step_size"] for r in rows])
            est = np.array([r["llc_mean"] for r in rows])
            err = np.array([2 * r["mcse"] for r in rows])
            used = np.array([r["used_in_fit"] for r in rows], dtype=bool)
            if used.any():
                ax.errorbar(eps[used], est[used], yerr=err[used], fmt="o", ms=4, capsize=2,
                            label="λ̂(ε) ± 2 MCSE (fitted)")
            if (~used).any():
                ax.errorbar(eps[~used], est[~used], yerr=err[~used], fmt="o", ms=4, capsize=2,
                            mfc="none", color="gray", label="not used (unmixed or nonlinear)")
            if math.isfinite(c.rel_slope):
                grid = np.geomspace(min(eps.min(), c.step_size) / 1.5, eps.max() * 1.2, 100)
                fit = dict(model=c.model, rel_slope=c.rel_slope)
                curve = c.llc_zero_step * (1 + np.array([relative_bias(fit, e) for e in grid]))
                curve[grid * c.rel_slope >= 1] = np.nan
                law = "λ₀/(1 − sε)" if c.model == "gaussian" else "λ₀(1 + sε)"
                ax.plot(grid, curve, "k-", lw=1, label=f"fit {law}, λ₀ = {c.llc_zero_step:.4g}")
                band = self.tolerance * abs(c.llc_zero_step)
                ax.axhspan(c.llc_zero_step - band, c.llc_zero_step + band, color="g", alpha=0.12,
                           label=f"λ₀ ± {100 * self.tolerance:g}%")
            ax.axvline(c.step_size, color="r", ls="--", lw=1.2, label=f"chosen ε = {c.step_size:.3g}")
            ax.set_xscale("log")
            ax.set_xlabel("step size ε")
            ax.set_ylabel("λ̂")
            ax.set_title(f"nβ = {c.nbeta:.4g}, γ = {c.localization:.4g}", fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
        return fig


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
    return float(_round_down(eps_star)), (f"the fitted bias reaches {100 * tolerance:g}% (95% bound) "
                                          f"beyond this step")


def _round_down(x: float) -> float:
    """Round down to two significant digits (a step size people can write down)."""
    if x <= 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(x)) - 1
    return math.floor(x / 10 ** e) * 10 ** e


def _as_list(value, name) -> list:
    """One number (Python, numpy or a 0-d tensor) or a non-empty sequence of them, as a list."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str) and len(value) > 0:
        return list(value)
    if isinstance(value, (numbers.Real, torch.Tensor)) and not isinstance(value, bool):
        return [value]
    raise ValueError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")


def calibrate(
    target,
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    nbeta: float | Sequence[float] | None = None,
    localization: float | Sequence[float] = 0.0,
    step_sizes: Sequence[float] | None = None,
    initial_step_size: float = 1e-4,
    num_step_sizes: int = 7,
    sampler: str = "sgld",
    sampler_options: dict | None = None,
    tolerance: float = 0.01,
    num_chains: int = 32,
    num_draws: int = 400,
    num_burnin_steps: int = 400,
    num_steps_bw_draws: int = 1,
    scan_chains: int = 8,
    scan_steps: int = 300,
    max_rounds: int = 4,
    slope_precision: float = 0.35,
    batch_size: int | None = None,
    seed: int = 0,
    log_prior: Callable | None = None,
    restrict_to=None,
    target_accept: float = 0.8,
    progress: bool = False,
    num_threads: int | None = None,
    chain_init: torch.Tensor | None = None,
    relax_chains: int | None = None,
    relax_max_steps: int = 500_000,
    relax_max_seconds: float | None = None,
) -> CalibrationResult:
    """Choose the step size by the documented rule (module docstring), from short batched runs.

    Args:
        target, init, data, loss_fn, batch_size, log_prior, restrict_to: as for
            :func:`toymodels.estimate_llc` (``target`` may also be an already built
            :class:`toymodels.Objective`).
        nbeta, localization: one value, or lists: every ``(nβ, γ)`` combination gets its own
            choice (``result.choice(nbeta, localization)``).
        step_sizes: the bias grid to use; ``None`` (default) finds it with the stability scan,
            starting from ``initial_step_size``.
        num_step_sizes: points of the automatic bias grid, a factor 2 apart.
        tolerance: the relative step-size bias the choice allows (95 % bound).
        num_chains, num_draws, num_burnin_steps, num_steps_bw_draws: per grid point, first round.
        max_rounds, slope_precision: while fewer than 3 grid points are mixed (split R-hat ≤ 1.1,
            no divergence) or the fitted slope's standard error exceeds ``slope_precision`` times
            the slope (an imprecise slope forces a needlessly small step), the same chains
            continue for twice as many draws, at most ``max_rounds`` rounds in all.
        scan_chains, scan_steps: per point of the stability scan.
        target_accept: for ``sampler="mala"``: the acceptance rate the adaptation aims at.
        chain_init: optional ``(k, d)`` starting points (e.g. draws from an annealing ladder when
            the posterior is far from ``w*``); every run of the calibration starts its chains on
            them in turn (chain ``i`` at row ``i mod k``). Default: every chain at ``w*``.
        relax_chains: how many chains to relax (:func:`toymodels.estimators.relaxation.relax`) before the
            bias grid; their relaxed positions start the grid and are kept in
            ``result.warm_states`` (``estimate_llc`` relaxes its own chains here). Default
            ``num_chains``.
        relax_max_steps, relax_max_seconds: the relaxation's budget.

    Returns:
        A :class:`CalibrationResult`; ``result.schedule(num_chains)`` gives the chain schedule
        for ``estimate_llc``, ``result.plot(path)`` the figure of λ̂ against ε.
    """
    start = time.perf_counter()
    tolerance = as_float("tolerance", tolerance, minimum=0, strict=True, maximum=0.999,
                         hint="0.01 means 1%")
    num_step_sizes = as_int("num_step_sizes", num_step_sizes, 2)
    initial_step_size = as_float("initial_step_size", initial_step_size, minimum=0, strict=True)
    num_chains = as_int("num_chains", num_chains, 2, "the fit needs a spread over chains")
    num_draws = as_int("num_draws", num_draws, 4)
    num_burnin_steps = as_int("num_burnin_steps", num_burnin_steps, 0)
    num_steps_bw_draws = as_int("num_steps_bw_draws", num_steps_bw_draws, 1)
    scan_chains = as_int("scan_chains", scan_chains, 1)
    scan_steps = as_int("scan_steps", scan_steps, 8)
    max_rounds = as_int("max_rounds", max_rounds, 1, "1 means a single round of the bias grid")
    slope_precision = as_float("slope_precision", slope_precision, minimum=0, strict=True)
    target_accept = as_float("target_accept", target_accept, minimum=0, strict=True, maximum=0.999)
    relax_chains = as_int("relax_chains", num_chains if relax_chains is None else relax_chains, 1)
    relax_max_steps = as_int("relax_max_steps", relax_max_steps, 0)
    if relax_max_seconds is not None:
        relax_max_seconds = as_float("relax_max_seconds", relax_max_seconds, minimum=0, strict=True)
    seed = as_int("seed", seed, 0)
    as_choice("sampler", sampler, SAMPLER_NAMES)
    objective = make_objective(target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size)
    if nbeta is None:
        if objective.num_samples is None:
            raise ValueError("nbeta is required for a potential (there is no dataset size to default from)")
        nbeta = default_nbeta(objective.num_samples)
    nbetas = [as_float("nbeta", v, minimum=0, strict=True) for v in _as_list(nbeta, "nbeta")]
    gammas = [as_float("localization", v, minimum=0) for v in _as_list(localization, "localization")]
    mask = resolve_mask(objective, restrict_to)
    starts = _check_starts(chain_init, objective)
    settings = [(b, g) for b in nbetas for g in gammas]
    common = dict(seed=seed, log_prior=log_prior, mask=mask, progress=progress,
                  num_threads=num_threads)
    relax_options = dict(num_chains=relax_chains, sampler=sampler, sampler_options=sampler_options,
                         log_prior=log_prior, mask=mask, num_threads=num_threads,
                         max_steps=relax_max_steps, max_seconds=relax_max_seconds)
    if sampler == "mala":
        table: list[dict] = []
        # MALA has no step-size bias, but its adapted step can be small: the slow directions
        # are relaxed by SGLD at a quarter of its largest stable step, and MALA takes over
        eps_max = _stability_scan(objective, settings, starts, table, initial_step_size,
                                  scan_chains, scan_steps, "sgld", None, common)
        return _calibrate_mala(objective, settings, starts, common, relax_options, start, table,
                               eps_max, tolerance=tolerance, target_accept=target_accept,
                               num_chains=num_chains, num_draws=num_draws,
                               num_burnin_steps=num_burnin_steps,
                               num_steps_bw_draws=num_steps_bw_draws,
                               sampler_options=sampler_options)
    table: list[dict] = []

    # 1. stability scan (from the starts: it only has to find the scale of the step)
    if step_sizes is None:
        eps_max = _stability_scan(objective, settings, starts, table, initial_step_size,
                                  scan_chains, scan_steps, sampler, sampler_options, common)
    else:
        user = sorted(as_float("step_sizes", e, minimum=0, strict=True)
                      for e in _as_list(list(step_sizes), "step_sizes"))[::-1]
        eps_max = {s: max(user) for s in settings}

    # 2. relaxation, at a quarter of the largest stable step (lowered if chains diverge further
    # out): the grid's chains start relaxed, so the bias is measured where the posterior is
    relaxations = {}
    for i, s in enumerate(settings):
        relaxations[s] = relax(objective, hyper=SGLDHyperparameters(eps_max[s] / 4, *s),
                               chain_init=_tile(starts, relax_chains), seed=seed + 31 * i + 5,
                               **relax_options)
    if step_sizes is None:
        # the grid starts at the largest step the relaxed chains stood (at most ε_max)
        grids = {s: [min(eps_max[s], 4 * relaxations[s].step_size) * 2.0 ** -j
                     for j in range(num_step_sizes)] for s in settings}
    else:
        grids = {s: user for s in settings}

    # 3. bias grid as one batched run; if too few points are mixed, continue the same chains for
    # twice as many draws (the previous round becomes burn-in), up to max_rounds rounds
    points = [(e, s) for s in settings for e in grids[s]]
    total = len(points) * num_chains
    grid_starts = torch.cat([_tile(relaxations[s].states, num_chains) for _, s in points])
    ever_bad = np.zeros(total, dtype=bool)
    chain_init, burn, draws = grid_starts, num_burnin_steps, num_draws
    for round_ in range(max_rounds):
        trace = _grid_run(objective, points, num_chains, burn, draws, num_steps_bw_draws, sampler,
                          sampler_options, common, chain_init=chain_init, seed_offset=round_)
        group_of = np.repeat(np.arange(len(points)), num_chains)
        kept = np.zeros(total, dtype=bool)
        kept[trace.kept_chains] = True
        ever_bad |= ~kept
        kept_group = group_of[trace.kept_chains]
        rows_by = {}
        for s in settings:
            rows = []
            for e in grids[s]:
                g = points.index((e, s))
                row = _group_row(trace, kept_group == g, s[0], s[1], e, "grid", trace.full_batch)
                row.update(diverged_chains=int(ever_bad[group_of == g].sum()), round=round_ + 1,
                           started_relaxed=step_sizes is None,
                           steps=burn + draws * num_steps_bw_draws, draws=draws,
                           steps_bw_draws=num_steps_bw_draws)
                rows.append(row)
            rows_by[s] = rows
        fits = {s: _fit_rows(rows) for s, rows in rows_by.items()}
        enough = all(sum(_usable(r) for r in rows_by[s]) >= 3
                     and fits[s]["rel_slope_se"] <= slope_precision * abs(fits[s]["rel_slope"])
                     for s in settings)
        if enough or round_ == max_rounds - 1:
            break
        chain_init = grid_starts.clone()
        chain_init[trace.kept_chains] = trace.final_params.to(chain_init.dtype)
        burn = num_burnin_steps if sampler != "sgld" else 0
        draws = 2 * draws

    # 4. fit and choose, per (nβ, γ)
    choices, warm_states = [], {}
    for s in settings:
        rows = rows_by[s]
        usable = [r for r in rows if _usable(r)]
        fit = fits[s]
        for r in rows:
            r["used_in_fit"] = False
        for r, u in zip(usable, fit["used"]):
            r["used_in_fit"] = bool(u)
        table.extend(rows)
        eps_star, reason = choose_step_size(fit, [r["step_size"] for r in usable], tolerance=tolerance)
        if not usable:
            eps_star = min(grids[s]) / 2
        slope = fit["rel_slope"]
        pred = relative_bias(fit, eps_star) if math.isfinite(slope) else float("nan")
        bound = (abs(relative_bias(fit, eps_star, abs(slope) + 2 * fit["rel_slope_se"]))
                 if math.isfinite(slope) else float("nan"))
        nearest = min(rows, key=lambda r: abs(math.log(r["step_size"] / eps_star)))
        relaxation = relaxations[s]
        warm_states[s] = relaxation.states
        choices.append(CalibrationChoice(
            nbeta=s[0], localization=s[1], step_size=eps_star, reason=reason,
            llc_zero_step=fit["llc_zero_step"], llc_zero_step_se=fit["llc_zero_step_se"],
            model=fit["model"], rel_slope=slope, rel_slope_se=fit["rel_slope_se"],
            predicted_bias=pred, bias_bound=bound, step_size_max=eps_max[s],
            fit_points=[r["step_size"] for r in usable if r["used_in_fit"]],
            fraction_below_init=nearest["fraction_below_init"],
            localization_to_gradient=nearest["localization_to_gradient"],
            relaxation=relaxation.summary()))
    return CalibrationResult(sampler=sampler, rule=RULE, tolerance=tolerance, choices=choices,
                             table=table, seconds=time.perf_counter() - start,
                             sampler_options=dict(sampler_options or {}), warm_states=warm_states)


def _stability_scan(objective, settings, starts, table, initial_step_size, scan_chains, scan_steps,
                    sampler, sampler_options, common) -> dict:
    """``ε_max`` per setting: the largest step of a ``ε₀·4^k`` grid at which it and every smaller
    step are stable (moving the grid up or down, at most 4 times, until one is found)."""
    eps_max = {}
    pending = list(settings)
    centre = {s: initial_step_size for s in settings}
    for _ in range(4):
        if not pending:
            break
        points = [(centre[s] * 4.0 ** k, s) for s in pending for k in range(-4, 5)]
        trace = _grid_run(objective, points, scan_chains, scan_steps // 2, scan_steps // 2, 1,
                          sampler, sampler_options, common,
                          chain_init=_tile(starts, len(points) * scan_chains))
        kept_group = np.repeat(np.arange(len(points)), scan_chains)[trace.kept_chains]
        still = []
        for s in pending:
            rows = [_group_row(trace, kept_group == g, s[0], s[1], e, "scan", trace.full_batch,
                               requested=scan_chains)
                    for g, (e, s2) in enumerate(points) if s2 == s]
            table.extend(rows)
            good = []
            for r in sorted(rows, key=lambda r: r["step_size"]):
                if not _stable(r):
                    break
                good.append(r["step_size"])
            if not good:
                centre[s] = centre[s] / 4.0 ** 9  # everything diverged: look lower
                still.append(s)
            elif max(good) >= max(r["step_size"] for r in rows):
                centre[s] = centre[s] * 4.0 ** 8  # even the largest was fine: look higher
                eps_max[s] = max(good)
                still.append(s)
            else:
                eps_max[s] = max(good)
        pending = still
    for s in settings:
        if s not in eps_max:
            raise ValueError(f"no stable step size found for nbeta={s[0]}, localization={s[1]} "
                             f"between {initial_step_size * 4.0 ** -40:.2g} and "
                             f"{initial_step_size * 4.0 ** 4:.2g}: every chain diverged or "
                             "(full batch) a Metropolis test would reject most SGLD moves; check "
                             "that the loss is finite and smooth near w*")
    return eps_max


def _calibrate_mala(objective, settings, starts, common, relax_options, start, table, eps_max, *,
                    tolerance, target_accept, num_chains, num_draws, num_burnin_steps,
                    num_steps_bw_draws, sampler_options) -> CalibrationResult:
    """MALA: relaxation by SGLD at ``ε_max/4``, dual averaging to ``target_accept`` from the
    relaxed chains, then one measuring run at the adapted step (its autocorrelation time scales
    the schedule)."""
    choices, warm_states = [], {}
    for i, (b, g) in enumerate(settings):
        relaxation = relax(objective, hyper=SGLDHyperparameters(eps_max[(b, g)] / 4, b, g),
                           chain_init=_tile(starts, relax_options["num_chains"]),
                           seed=common["seed"] + 31 * i + 5,
                           **dict(relax_options, sampler="sgld", sampler_options=None))
        burn = max(num_burnin_steps, 100)
        adapt = run_chains(objective, hyper=SGLDHyperparameters(relaxation.step_size, b, g),
                           num_chains=num_chains, num_draws=4, num_burnin_steps=burn,
                           num_steps_bw_draws=1, sampler="mala",
                           sampler_options=dict(sampler_options or {}, adapt_steps=burn,
                                                target_accept=target_accept),
                           chain_init=_tile(relaxation.states, num_chains), **common)
        eps = adapt.final_step_size
        trace = run_chains(objective, hyper=SGLDHyperparameters(eps, b, g), num_chains=num_chains,
                           num_draws=num_draws, num_burnin_steps=0,
                           num_steps_bw_draws=num_steps_bw_draws, sampler="mala",
                           sampler_options=dict(sampler_options or {}, target_accept=target_accept),
                           chain_init=adapt.final_params, **common)
        row = _group_row(trace, np.ones(trace.num_chains, dtype=bool), b, g, eps, "grid",
                         trace.full_batch)
        row.update(used_in_fit=True, draws=num_draws, steps_bw_draws=num_steps_bw_draws,
                   steps=num_draws * num_steps_bw_draws, diverged_chains=len(trace.dropped_chains))
        table.append(row)
        warm_states[(b, g)] = relaxation.states
        choices.append(CalibrationChoice(
            nbeta=b, localization=g, step_size=eps,
            reason=f"dual averaging to mean acceptance {target_accept:g} (MALA has no step-size bias)",
            llc_zero_step=row["llc_mean"], llc_zero_step_se=row["mcse"], model="none",
            rel_slope=0.0, rel_slope_se=0.0, predicted_bias=0.0, bias_bound=0.0,
            step_size_max=float("nan"), fit_points=[eps],
            fraction_below_init=row["fraction_below_init"],
            localization_to_gradient=row["localization_to_gradient"],
            relaxation=relaxation.summary()))
    return CalibrationResult(sampler="mala", rule=f"MALA acceptance target {target_accept:g}",
                             tolerance=tolerance, choices=choices, table=table,
                             seconds=time.perf_counter() - start,
                             sampler_options=dict(sampler_options or {}, target_accept=target_accept),
                             warm_states=warm_states)


def _check_starts(chain_init, objective) -> torch.Tensor | None:
    if chain_init is None:
        return None
    starts = torch.as_tensor(chain_init, dtype=objective.center.dtype, device=objective.center.device)
    d = objective.center.numel()
    if starts.dim() != 2 or starts.shape[1] != d or starts.shape[0] < 1:
        raise ValueError(f"chain_init must have shape (k, d) with d = {d} (k starting points, used "
                         f"in turn), got {tuple(starts.shape)}")
    if not torch.isfinite(starts).all():
        raise ValueError("chain_init contains non-finite values")
    return starts


def _tile(starts: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``n`` starting points taken from the rows of ``starts`` in turn (None: every chain at w*)."""
    if starts is None:
        return None
    return starts[torch.arange(n, device=starts.device) % starts.shape[0]].clone()


def _grid_run(objective, points, chains, burnin, draws, bw, sampler, sampler_options, common,
              chain_init=None, seed_offset=0):
    """One batched run: ``chains`` chains for each ``(ε, (nβ, γ))`` point."""
    eps = torch.tensor([e for e, _ in points], dtype=torch.float64).repeat_interleave(chains)
    nb = torch.tensor([s[0] for _, s in points], dtype=torch.float64).repeat_interleave(chains)
    ga = torch.tensor([s[1] for _, s in points], dtype=torch.float64).repeat_interleave(chains)
    hyper = SGLDHyperparameters(points[0][0], points[0][1][0], points[0][1][1])
    options = dict(sampler_options or {})
    if sampler == "rmsprop_sgld" and burnin == 0:
        options.setdefault("adapt", "always")
    common = dict(common)
    common["seed"] = common["seed"] + 7919 * seed_offset  # a continued run draws fresh noise
    return run_chains(objective, hyper=hyper, num_chains=len(eps), num_draws=max(draws, 4),
                      num_burnin_steps=burnin, num_steps_bw_draws=bw, sampler=sampler,
                      sampler_options=options, on_divergence="drop", chain_init=chain_init,
                      chain_hyper={"step_size": eps, "nbeta": nb, "localization": ga}, **common)


def _fit_rows(rows: list[dict]) -> dict:
    usable = [r for r in rows if _usable(r)]
    return fit_step_size_bias([r["step_size"] for r in usable], [r["llc_mean"] for r in usable],
                              [r["mcse"] for r in usable])


#: a grid point whose chains mix slowly still enters the fit if its chains started relaxed and
#: its ESS (which counts the spread between chains, so its MCSE stays honest) is at least this
MIN_GRID_ESS = 50
#: ... and its split R-hat at most this: beyond it the chains sit where they started
MAX_GRID_RHAT_RELAXED = 1.3


def _usable(row: dict) -> bool:
    """A bias-grid point enters the fit: ≥ 2 chains, none ever diverged, and mixed — split
    R-hat ≤ 1.1, or, for chains that started from relaxed positions (the automatic grid),
    R-hat ≤ 1.3 with an ESS of at least 50.

    Why the second clause: the grid's small steps mix slowly (their autocorrelation time grows
    as 1/ε), and excluding them left the fit with the large, biased steps only — on a tanh MLP
    a single usable point at +25 % bias was chosen. Chains that start relaxed are near the
    stationary law, so their mean is not held back by the start, and arviz's multi-chain ESS
    turns their slow mixing into a larger MCSE, which the weighted fit respects.
    """
    if row["kept_chains"] < 2 or row["diverged_chains"] != 0:
        return False
    if row["rhat"] <= 1.1:
        return True
    return (bool(row.get("started_relaxed")) and row["rhat"] <= MAX_GRID_RHAT_RELAXED
            and row["ess"] >= MIN_GRID_ESS)


def _stable(row: dict) -> bool:
    if row["diverged_chains"] > 0 or row["kept_chains"] == 0 or not math.isfinite(row["llc_mean"]):
        return False
    acc = row["mala_acceptance"]
    if row.get("full_batch") and row.get("records_acceptance"):
        # full batch: the MALA acceptance of SGLD's moves is always measurable, so a NaN means
        # its terms overflowed — a chain running away, not yet non-finite — and counts as unstable
        return math.isfinite(acc) and acc >= 0.5
    return not (math.isfinite(acc) and acc < 0.5)


def _group_row(trace, sel, nbeta, gamma, eps, stage, full_batch, requested=None) -> dict:
    # The stability scan deliberately tries step sizes far too large: chains there can reach huge
    # but finite values whose squares overflow. Those rows come out non-finite and count as
    # unstable (_stable); numpy's overflow warnings about them are expected, not news.
    with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _group_row_unchecked(trace, sel, nbeta, gamma, eps, stage, full_batch, requested)


def _group_row_unchecked(trace, sel, nbeta, gamma, eps, stage, full_batch, requested=None) -> dict:
    kept = int(sel.sum())
    row = dict(stage=stage, step_size=float(eps), nbeta=float(nbeta), localization=float(gamma),
               kept_chains=kept, diverged_chains=(requested - kept) if requested else 0,
               llc_mean=float("nan"), mcse=float("nan"), rhat=float("nan"), ess=float("nan"),
               mala_acceptance=float("nan"), fraction_below_init=float("nan"),
               drift_noise_ratio2=float("nan"),
               localization_to_gradient=float("nan"), used_in_fit=False,
               full_batch=bool(full_batch))
    if kept == 0:
        return row
    llc = nbeta * (trace.loss[sel] - trace.init_loss)
    diag = chain_diagnostics(llc) if kept > 1 else {"mcse": float("nan"), "rhat": float("nan"),
                                                    "ess": float("nan")}
    row.update(llc_mean=float(llc.mean()), mcse=diag["mcse"], rhat=diag["rhat"], ess=diag["ess"],
               sd=float(llc.std()),
               fraction_below_init=float((trace.loss[sel] < trace.init_loss).mean()))
    noise2 = float((trace.noise_norm[sel] ** 2).mean())
    # drift-to-noise ratio squared: the Gaussian step-size bias x/(1 − x) (toymodels.estimators.diagnose)
    drift2 = float((trace.drift_norm[sel] ** 2).mean())
    row["drift_noise_ratio2"] = drift2 / noise2 if noise2 > 0 else float("nan")
    acc = trace.records.get("acceptance")
    row["records_acceptance"] = acc is not None  # SGLD and MALA do, SGNHT and pSGLD do not
    if acc is not None:
        a = acc[sel]
        a = a[np.isfinite(a)]
        if a.size:
            row["mala_acceptance"] = float(a.mean())
    g = trace.records.get("grad_term_norm")
    lterm = trace.records.get("localization_term_norm")
    if g is not None and lterm is not None:
        gm = float(g[sel].mean())
        row["localization_to_gradient"] = float(lterm[sel].mean()) / gm if gm > 0 else float("inf")
    return row
