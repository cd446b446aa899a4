"""calibrate(): the documented rule of :mod:`toymodels.estimators.calibration`, step by step —
stability scan, relaxation, bias grid (in rounds), fit and choice; for MALA an acceptance target.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from toymodels.checks import as_choice, as_float, as_int
from toymodels.estimators.calibration.bias import choose_step_size, relative_bias
from toymodels.estimators.calibration.result import CalibrationChoice, CalibrationResult
from toymodels.estimators.calibration.runs import (
    check_starts,
    fit_rows,
    grid_run,
    group_row,
    stability_scan,
    tile,
    usable,
)
from toymodels.estimators.relaxation import relax
from toymodels.objectives import Posterior, check_localization, check_nbeta, make_posterior
from toymodels.sampling import SAMPLERS, SGLDHyperparameters, run_chains

__all__ = ["calibrate", "posterior_and_settings", "RULE", "SAMPLER_NAMES"]

SAMPLER_NAMES = tuple(SAMPLERS)

RULE = ("largest ε whose step-size bias, from the law λ̂(ε) = λ₀/(1 − sε) fitted to a grid of "
        "short batched runs, is within the tolerance with 95% confidence")


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
    max_seconds: float | None = None,
) -> CalibrationResult:
    """Choose the step size by the documented rule, from short batched runs.

    The rule is that of :mod:`toymodels.estimators.calibration` (its docstring).

    Args:
        target, init, data, loss_fn, batch_size, log_prior, restrict_to: as for
            :func:`toymodels.estimate_llc`: they build the posterior with
            :func:`toymodels.make_posterior`. ``target`` may also be an already built
            :class:`toymodels.Objective`, or a :class:`toymodels.Posterior` (then alone: its
            nβ and γ are the one setting calibrated).
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
        max_seconds: a wall-clock budget for the whole calibration: once it is spent, the bias
            grid runs no further round (it keeps the rounds it has; a slope that is then still
            imprecise shows in the table). ``estimate_llc(budget_seconds=B)`` gives ``0.75 B``.

    Returns:
        A :class:`CalibrationResult`; ``result.schedule(num_chains)`` gives the chain schedule
        for ``estimate_llc``, ``result.plot(path)`` the figure of λ̂ against ε.
    """
    start = time.perf_counter()
    checked = _checked_options(
        tolerance=tolerance, num_step_sizes=num_step_sizes, initial_step_size=initial_step_size,
        num_chains=num_chains, num_draws=num_draws, num_burnin_steps=num_burnin_steps,
        num_steps_bw_draws=num_steps_bw_draws, scan_chains=scan_chains, scan_steps=scan_steps,
        max_rounds=max_rounds, slope_precision=slope_precision, target_accept=target_accept,
        relax_chains=relax_chains, relax_max_steps=relax_max_steps,
        relax_max_seconds=relax_max_seconds, seed=seed, sampler=sampler, max_seconds=max_seconds)
    posterior, settings = posterior_and_settings(
        target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size, nbeta=nbeta,
        localization=localization, log_prior=log_prior, restrict_to=restrict_to)
    calibration = _Calibration(posterior, settings, check_starts(chain_init, posterior.objective),
                               sampler=sampler, sampler_options=sampler_options, progress=progress,
                               num_threads=num_threads, start=start, **checked)
    if sampler == "mala":
        return calibration.mala()
    return calibration.bias_rule(step_sizes)


def _checked_options(*, tolerance, num_step_sizes, initial_step_size, num_chains, num_draws,
                     num_burnin_steps, num_steps_bw_draws, scan_chains, scan_steps, max_rounds,
                     slope_precision, target_accept, relax_chains, relax_max_steps,
                     relax_max_seconds, seed, sampler, max_seconds=None) -> dict:
    """The numbers of :func:`calibrate`, checked (before anything runs)."""
    out = dict(
        tolerance=as_float("tolerance", tolerance, minimum=0, strict=True, maximum=0.999,
                           hint="0.01 means 1%"),
        num_step_sizes=as_int("num_step_sizes", num_step_sizes, 2),
        initial_step_size=as_float("initial_step_size", initial_step_size, minimum=0, strict=True),
        num_chains=as_int("num_chains", num_chains, 2, "the fit needs a spread over chains"),
        num_draws=as_int("num_draws", num_draws, 4),
        num_burnin_steps=as_int("num_burnin_steps", num_burnin_steps, 0),
        num_steps_bw_draws=as_int("num_steps_bw_draws", num_steps_bw_draws, 1),
        scan_chains=as_int("scan_chains", scan_chains, 1),
        scan_steps=as_int("scan_steps", scan_steps, 8),
        max_rounds=as_int("max_rounds", max_rounds, 1, "1 means a single round of the bias grid"),
        slope_precision=as_float("slope_precision", slope_precision, minimum=0, strict=True),
        target_accept=as_float("target_accept", target_accept, minimum=0, strict=True, maximum=0.999))
    out["relax_chains"] = as_int("relax_chains", out["num_chains"] if relax_chains is None
                                 else relax_chains, 1)
    out["relax_max_steps"] = as_int("relax_max_steps", relax_max_steps, 0)
    if relax_max_seconds is not None:
        relax_max_seconds = as_float("relax_max_seconds", relax_max_seconds, minimum=0, strict=True)
    out["relax_max_seconds"] = relax_max_seconds
    if max_seconds is not None:
        max_seconds = as_float("max_seconds", max_seconds, minimum=0, strict=True)
    out["max_seconds"] = max_seconds
    out["seed"] = as_int("seed", seed, 0)
    as_choice("sampler", sampler, SAMPLER_NAMES)
    return out


def posterior_and_settings(target, *, nbeta, localization, **physics) -> tuple[Posterior, list]:
    """The posterior to calibrate and its ``(nβ, γ)`` settings: every combination of ``nbeta``
    and ``localization`` (one value or lists; the posterior holds the first of each). A
    :class:`~toymodels.objectives.Posterior` target is the one setting, and is passed alone."""
    if isinstance(target, Posterior):
        posterior = make_posterior(target, nbeta=nbeta, localization=localization, **physics)
        return posterior, [(posterior.nbeta, posterior.localization)]
    nbetas = None if nbeta is None else _as_list(nbeta, "nbeta")
    gammas = _as_list(localization, "localization")
    posterior = make_posterior(target, nbeta=None if nbetas is None else nbetas[0],
                               localization=gammas[0], **physics)
    nbetas = [posterior.nbeta] + [check_nbeta(v) for v in (nbetas or [])[1:]]
    gammas = [posterior.localization] + [check_localization(v) for v in gammas[1:]]
    return posterior, [(b, g) for b in nbetas for g in gammas]


def _as_list(value, name) -> list:
    """One number (Python, numpy or a 0-d tensor) or a non-empty sequence of them, as a list."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str) and len(value) > 0:
        return list(value)
    if isinstance(value, (numbers.Real, torch.Tensor)) and not isinstance(value, bool):
        return [value]
    raise ValueError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")


class _Calibration:
    """One call of :func:`calibrate`: its posterior, settings, checked numbers and the table of
    grid points, with one method per step of the rule."""

    def __init__(self, posterior: Posterior, settings, starts, *, sampler, sampler_options,
                 progress, num_threads, start, **checked):
        self.objective = posterior.objective
        self.settings, self.starts, self.start = settings, starts, start
        self.sampler, self.sampler_options = sampler, sampler_options
        self.__dict__.update(checked)
        self.table: list[dict] = []
        self.common = dict(seed=self.seed, log_prior=posterior.log_prior, mask=posterior.mask,
                           progress=progress, num_threads=num_threads)
        self.relax_options = dict(num_chains=self.relax_chains, sampler=sampler,
                                  sampler_options=sampler_options, log_prior=posterior.log_prior,
                                  mask=posterior.mask, num_threads=num_threads,
                                  max_steps=self.relax_max_steps, max_seconds=self.relax_max_seconds)

    def scan(self, sampler, sampler_options) -> dict:
        """1. ``ε_max`` per setting (from the starts: it only has to find the scale of the step)."""
        return stability_scan(self.objective, self.settings, self.starts, self.table,
                              self.initial_step_size, self.scan_chains, self.scan_steps, sampler,
                              sampler_options, self.common)

    def bias_rule(self, step_sizes) -> CalibrationResult:
        """The rule for SGLD, SGNHT and preconditioned SGLD: scan, relax, bias grid, fit, choose."""
        if step_sizes is None:
            eps_max = self.scan(self.sampler, self.sampler_options)
        else:
            user = sorted(as_float("step_sizes", e, minimum=0, strict=True)
                          for e in _as_list(list(step_sizes), "step_sizes"))[::-1]
            eps_max = {s: max(user) for s in self.settings}
        # 2. relaxation, at a quarter of the largest stable step (lowered if chains diverge
        # further out): the grid's chains start relaxed, so the bias is measured where the
        # posterior is
        relaxations = {}
        for i, s in enumerate(self.settings):
            relaxations[s] = relax(self.objective, hyper=SGLDHyperparameters(eps_max[s] / 4, *s),
                                   chain_init=tile(self.starts, self.relax_chains),
                                   seed=self.seed + 31 * i + 5, **self.relax_options)
        if step_sizes is None:
            # the grid starts at the largest step the relaxed chains stood (at most ε_max)
            grids = {s: [min(eps_max[s], 4 * relaxations[s].step_size) * 2.0 ** -j
                         for j in range(self.num_step_sizes)] for s in self.settings}
        else:
            grids = {s: user for s in self.settings}
        rows_by, fits = self.bias_grid(grids, relaxations, started_relaxed=step_sizes is None)
        choices, warm_states = [], {}
        for s in self.settings:
            choices.append(self.choose(s, rows_by[s], fits[s], eps_max[s], min(grids[s]),
                                       relaxations[s]))
            warm_states[s] = relaxations[s].states
        return CalibrationResult(sampler=self.sampler, rule=RULE, tolerance=self.tolerance,
                                 choices=choices, table=self.table,
                                 seconds=time.perf_counter() - self.start,
                                 sampler_options=dict(self.sampler_options or {}),
                                 warm_states=warm_states)

    def bias_grid(self, grids, relaxations, *, started_relaxed) -> tuple[dict, dict]:
        """3. The bias grid as one batched run, from the relaxed chains; while too few points are
        mixed or the slope is imprecise, the same chains continue for twice as many draws (the
        previous round becomes burn-in), up to ``max_rounds`` rounds. Per setting: the rows of
        its grid points, and the fit."""
        points = [(e, s) for s in self.settings for e in grids[s]]
        total = len(points) * self.num_chains
        grid_starts = torch.cat([tile(relaxations[s].states, self.num_chains) for _, s in points])
        group_of = np.repeat(np.arange(len(points)), self.num_chains)
        ever_bad = np.zeros(total, dtype=bool)
        chain_init, burn, draws = grid_starts, self.num_burnin_steps, self.num_draws
        for round_ in range(self.max_rounds):
            trace = grid_run(self.objective, points, self.num_chains, burn, draws,
                             self.num_steps_bw_draws, self.sampler, self.sampler_options,
                             self.common, chain_init=chain_init, seed_offset=round_)
            kept = np.zeros(total, dtype=bool)
            kept[trace.kept_chains] = True
            ever_bad |= ~kept
            kept_group = group_of[trace.kept_chains]
            rows_by = {}
            for s in self.settings:
                rows = []
                for e in grids[s]:
                    g = points.index((e, s))
                    row = group_row(trace, kept_group == g, s[0], s[1], e, "grid", trace.full_batch)
                    row.update(diverged_chains=int(ever_bad[group_of == g].sum()), round=round_ + 1,
                               started_relaxed=started_relaxed,
                               steps=burn + draws * self.num_steps_bw_draws, draws=draws,
                               steps_bw_draws=self.num_steps_bw_draws)
                    rows.append(row)
                rows_by[s] = rows
            fits = {s: fit_rows(rows) for s, rows in rows_by.items()}
            out_of_time = (self.max_seconds is not None
                           and time.perf_counter() - self.start > self.max_seconds)
            if self._enough(rows_by, fits) or round_ == self.max_rounds - 1 or out_of_time:
                break
            chain_init = grid_starts.clone()
            chain_init[trace.kept_chains] = trace.final_params.to(chain_init.dtype)
            burn = self.num_burnin_steps if self.sampler != "sgld" else 0
            draws = 2 * draws
        return rows_by, fits

    def _enough(self, rows_by, fits) -> bool:
        """At least 3 usable points and a slope known to ``slope_precision``, for every setting."""
        return all(sum(usable(r) for r in rows_by[s]) >= 3
                   and fits[s]["rel_slope_se"] <= self.slope_precision * abs(fits[s]["rel_slope"])
                   for s in self.settings)

    def choose(self, s, rows, fit, eps_max, smallest, relaxation) -> CalibrationChoice:
        """4. Fit and choose for one ``(nβ, γ)``; its rows go into the table."""
        points = [r for r in rows if usable(r)]
        for r in rows:
            r["used_in_fit"] = False
        for r, u in zip(points, fit["used"]):
            r["used_in_fit"] = bool(u)
        self.table.extend(rows)
        eps_star, reason = choose_step_size(fit, [r["step_size"] for r in points],
                                            tolerance=self.tolerance)
        if not points:
            eps_star = smallest / 2
        slope = fit["rel_slope"]
        pred = relative_bias(fit, eps_star) if math.isfinite(slope) else float("nan")
        bound = (abs(relative_bias(fit, eps_star, abs(slope) + 2 * fit["rel_slope_se"]))
                 if math.isfinite(slope) else float("nan"))
        nearest = min(rows, key=lambda r: abs(math.log(r["step_size"] / eps_star)))
        return CalibrationChoice(
            nbeta=s[0], localization=s[1], step_size=eps_star, reason=reason,
            llc_zero_step=fit["llc_zero_step"], llc_zero_step_se=fit["llc_zero_step_se"],
            model=fit["model"], rel_slope=slope, rel_slope_se=fit["rel_slope_se"],
            predicted_bias=pred, bias_bound=bound, step_size_max=eps_max,
            fit_points=[r["step_size"] for r in points if r["used_in_fit"]],
            fraction_below_init=nearest["fraction_below_init"],
            localization_to_gradient=nearest["localization_to_gradient"],
            relaxation=relaxation.summary())

    def mala(self) -> CalibrationResult:
        """MALA has no step-size bias, but its adapted step can be small: the slow directions are
        relaxed by SGLD at a quarter of its largest stable step, then dual averaging adapts ε to
        ``target_accept`` from the relaxed chains, and one measuring run at the adapted step
        follows (its autocorrelation time scales the schedule)."""
        eps_max = self.scan("sgld", None)
        choices, warm_states = [], {}
        for i, (b, g) in enumerate(self.settings):
            relaxation = relax(self.objective, hyper=SGLDHyperparameters(eps_max[(b, g)] / 4, b, g),
                               chain_init=tile(self.starts, self.relax_chains),
                               seed=self.seed + 31 * i + 5,
                               **dict(self.relax_options, sampler="sgld", sampler_options=None))
            row, eps = self._mala_row(b, g, relaxation)
            warm_states[(b, g)] = relaxation.states
            choices.append(CalibrationChoice(
                nbeta=b, localization=g, step_size=eps,
                reason=f"dual averaging to mean acceptance {self.target_accept:g} (MALA has no "
                       "step-size bias)",
                llc_zero_step=row["llc_mean"], llc_zero_step_se=row["mcse"], model="none",
                rel_slope=0.0, rel_slope_se=0.0, predicted_bias=0.0, bias_bound=0.0,
                step_size_max=float("nan"), fit_points=[eps],
                fraction_below_init=row["fraction_below_init"],
                localization_to_gradient=row["localization_to_gradient"],
                relaxation=relaxation.summary()))
        return CalibrationResult(
            sampler="mala", rule=f"MALA acceptance target {self.target_accept:g}",
            tolerance=self.tolerance, choices=choices, table=self.table,
            seconds=time.perf_counter() - self.start,
            sampler_options=dict(self.sampler_options or {}, target_accept=self.target_accept),
            warm_states=warm_states)

    def _mala_row(self, b, g, relaxation) -> tuple[dict, float]:
        """Adapt MALA's step from the relaxed chains and measure at it: the row (it goes into the
        table) and the adapted step."""
        burn = max(self.num_burnin_steps, 100)
        options = dict(self.sampler_options or {})
        adapt = run_chains(self.objective, hyper=SGLDHyperparameters(relaxation.step_size, b, g),
                           num_chains=self.num_chains, num_draws=4, num_burnin_steps=burn,
                           num_steps_bw_draws=1, sampler="mala",
                           sampler_options=dict(options, adapt_steps=burn,
                                                target_accept=self.target_accept),
                           chain_init=tile(relaxation.states, self.num_chains), **self.common)
        eps = adapt.final_step_size
        trace = run_chains(self.objective, hyper=SGLDHyperparameters(eps, b, g),
                           num_chains=self.num_chains, num_draws=self.num_draws,
                           num_burnin_steps=0, num_steps_bw_draws=self.num_steps_bw_draws,
                           sampler="mala",
                           sampler_options=dict(options, target_accept=self.target_accept),
                           chain_init=adapt.final_params, **self.common)
        row = group_row(trace, np.ones(trace.num_chains, dtype=bool), b, g, eps, "grid",
                        trace.full_batch)
        row.update(used_in_fit=True, draws=self.num_draws, steps_bw_draws=self.num_steps_bw_draws,
                   steps=self.num_draws * self.num_steps_bw_draws,
                   diverged_chains=len(trace.dropped_chains))
        self.table.append(row)
        return row, eps
