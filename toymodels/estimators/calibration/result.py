"""What a calibration found: :class:`CalibrationResult`, one :class:`CalibrationChoice` per
``(nβ, γ)``, and the chain :class:`Schedule` it gives for ``estimate_llc``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toymodels.checks import as_float, as_int, as_optional_int
from toymodels.estimators.calibration.bias import relative_bias

__all__ = ["CalibrationChoice", "CalibrationResult", "Schedule"]


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
        rows, reasons = _schedule_rows(self.table, c)
        time_scale = float(np.median([r["draws"] * r["steps_bw_draws"] * r["kept_chains"] / r["ess"]
                                      * r["step_size"] for r in rows]))
        tau = max(1.0, safety * time_scale / c.step_size)
        least_biased = min(rows, key=lambda r: r["step_size"])
        sd = least_biased["sd"]
        lam0 = c.llc_zero_step if math.isfinite(c.llc_zero_step) else least_biased["llc_mean"]
        target = rel_mcse * max(abs(lam0), 0.05)
        ess_needed = max((sd / target) ** 2, 1.0)
        steps_needed = ess_needed * tau / num_chains  # sampling steps after burn-in
        burnin, bw, draws = _schedule_lengths(
            tau, steps_needed, reasons, num_burnin_steps=num_burnin_steps, num_draws=num_draws,
            num_steps_bw_draws=num_steps_bw_draws, min_burnin=min_burnin,
            burnin_autocorrelations=burnin_autocorrelations, min_draws=min_draws,
            draws_reason=(f"an MCSE of {100 * rel_mcse:g}% of |λ₀| = {abs(lam0):.3g} "
                          f"(per-draw sd {sd:.3g}, ESS {ess_needed:.0f} needed)"))
        draws, short = _cut_to_budget(burnin, draws, bw, reasons, given_draws=num_draws,
                                      budget_steps=budget_steps, budget_seconds=budget_seconds,
                                      seconds_per_step=seconds_per_step)
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
        if axes is None:
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


def _schedule_rows(table: list[dict], c: CalibrationChoice) -> tuple[list[dict], dict]:
    """The grid points a schedule is scaled from (those used in the fit), and the reasons so far."""
    measured = [r for r in table if r["stage"] == "grid"
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
    return rows, reasons


def _schedule_lengths(tau, steps_needed, reasons, *, num_burnin_steps, num_draws,
                      num_steps_bw_draws, min_burnin, burnin_autocorrelations, min_draws,
                      draws_reason) -> tuple[int, int, int]:
    """``(burn-in, steps between draws, draws)`` by the rule of :meth:`CalibrationResult.schedule`
    (each value given is kept); the reason for each goes into ``reasons``."""
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
        reasons["num_draws"] = draws_reason
    else:
        draws = num_draws
        reasons["num_draws"] = "given"
    return burnin, bw, draws


def _cut_to_budget(burnin, draws, bw, reasons, *, given_draws, budget_steps, budget_seconds,
                   seconds_per_step) -> tuple[int, bool]:
    """The draws cut to fit ``budget_steps`` and ``budget_seconds / seconds_per_step`` (unless
    given), and whether they were cut."""
    limits = []
    if budget_steps is not None:
        limits.append((as_int("budget_steps", budget_steps, 1), f"budget_steps = {budget_steps}"))
    if budget_seconds is not None and seconds_per_step is not None and seconds_per_step > 0:
        limits.append((int(budget_seconds / seconds_per_step),
                       f"budget_seconds = {budget_seconds:g} at {1e3 * seconds_per_step:.2g} ms a step"))
    short = False
    for limit, why in limits:
        if burnin + draws * bw > limit and given_draws is None:
            draws = max(4, (limit - burnin) // bw)
            short = True
            reasons["num_draws"] = f"cut to fit {why}"
    return draws, short
