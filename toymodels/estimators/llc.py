"""The local learning coefficient (LLC) estimator: one entry point for potentials and networks.

Estimator (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8 and Definition 3)::

    λ̂(w*) = nβ ( E_p[L(w)] − L(w*) ),   p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)

with the expectation over sampler draws after burn-in, averaged over chains. The sampler is SGLD
by default; SGNHT, RMSProp-preconditioned SGLD and MALA share the same driver
(:mod:`toymodels.sampling.kernels`), ``step_size="auto"`` chooses ε by :func:`toymodels.calibrate`, and
``result.diagnose()`` reads the run's diagnostics (:mod:`toymodels.estimators.diagnose`). For a potential ``K``
with ``K(w*) = 0`` this is ``nβ·E[K]``, which for an exact sampler equals the finite-temperature
value that ``theory`` computes (e.g. :func:`theory.normal_crossing.finite_temperature_llc`), and
tends to the learning coefficient λ as ``nβ → ∞``, ``γ → 0``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toymodels.checks import as_choice, as_float, as_int, as_optional_int
from toymodels.estimators.calibration import CalibrationResult, calibrate
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.objectives.objective import Objective, default_nbeta, make_objective, resolve_mask
from toymodels.estimators.relaxation import relax as run_relaxation
from toymodels.sampling.kernels import SAMPLERS, make_sampler
from toymodels.sampling.driver import ON_DIVERGENCE, SamplingInterrupted, SamplingTrace, run_sgld
from toymodels.sampling.sgld import SGLDHyperparameters

__all__ = ["LLCResult", "estimate_llc", "llc_from_trace", "default_nbeta"]


@dataclass
class LLCResult:
    """An LLC estimate with its trace and diagnostics.

    ``loss_trace`` is ``(num_chains, num_draws)``; ``llc_per_chain[c] = nβ (mean_t L_ct − init_loss)``;
    ``llc_mean`` is their mean, ``llc_std`` their standard deviation (ddof=1) and ``mcse`` the
    Monte-Carlo standard error of ``llc_mean`` from the effective sample size (arviz-stats),
    which accounts for autocorrelation within chains.
    """

    llc_mean: float
    llc_std: float
    llc_per_chain: np.ndarray
    loss_trace: np.ndarray
    init_loss: float
    mcse: float
    ess: float
    rhat: float
    nbeta: float
    nbeta_source: str
    step_size: float
    localization: float
    num_chains: int
    num_draws: int
    num_burnin_steps: int
    num_steps_bw_draws: int
    batch_size: int | None
    seed: int | None
    num_samples: int | None
    dropped_chains: list[int] = field(default_factory=list)
    divergence_steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    sampler: str = "sgld"
    #: per chain: the fraction of draws whose loss is below ``init_loss`` (a chain that finds
    #: lower loss than w*: w* is not a local minimum, or the chain escaped to another phase)
    fraction_below_init: np.ndarray | None = None
    #: per chain, MALA only: the mean acceptance probability of the steps after burn-in
    acceptance_rate: np.ndarray | None = None
    #: per chain, SGLD on a full-batch loss: the mean MALA acceptance probability its moves would
    #: have had (a diagnostic of the step-size error; 1 means none)
    mala_acceptance: np.ndarray | None = None
    #: the calibration behind ``step_size="auto"`` (a JSON-ready summary), if any
    calibration: dict | None = None
    #: with ``step_size="auto"``: the schedule chosen and why (:class:`toymodels.estimators.calibration.Schedule`
    #: as a dict, with the relaxation that started the chains and the calibration's seconds)
    schedule: dict | None = None
    trace: SamplingTrace | None = field(default=None, repr=False)

    @property
    def llc_trace(self) -> np.ndarray:
        """``nβ (L_ct − init_loss)``, chains × draws: the per-draw LLC contributions."""
        return self.nbeta * (self.loss_trace - self.init_loss)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (arrays as lists; the raw trace's extra records left out)."""
        out = {}
        for key, value in self.__dict__.items():
            if key == "trace":
                continue
            if isinstance(value, np.ndarray):
                value = value.tolist()
            out[key] = value
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def summary(self) -> str:
        s = (f"λ̂ = {self.llc_mean:.4g} ± {self.mcse:.2g} (MCSE; chain sd {self.llc_std:.2g}, "
             f"ESS {self.ess:.0f}, R-hat {self.rhat:.3f}) with nβ = {self.nbeta:.4g} "
             f"[{self.nbeta_source}], ε = {self.step_size:g}, γ = {self.localization:g}, "
             f"{self.num_chains} chains × {self.num_draws} draws, {self.sampler}")
        if self.acceptance_rate is not None:
            s += f", acceptance {np.mean(self.acceptance_rate):.2f}"
        if self.dropped_chains:
            s += f"; dropped diverged chains {self.dropped_chains}"
        return s

    def diagnose(self, echo=print):
        """Plain-language findings about this run and what to change; see :mod:`toymodels.estimators.diagnose`.

        Prints them (through ``echo``; pass ``echo=None`` to stay quiet) and returns the
        :class:`toymodels.estimators.diagnose.Diagnosis`.
        """
        from toymodels.estimators.diagnose import diagnose

        diagnosis = diagnose(self)
        if echo is not None:
            echo(str(diagnosis))
        return diagnosis

    def plot_diagnostics(self, path: str | Path | None = None):
        """A figure of loss traces and diagnostics; see :func:`toymodels.estimators.diagnose.plot_diagnostics`."""
        from toymodels.estimators.diagnose import plot_diagnostics

        return plot_diagnostics(self, path=path)

    def plot_trace(self, ax=None, path: str | Path | None = None):
        """Plot each chain's loss trace with ``init_loss`` dashed; returns the matplotlib axes."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 3.5))
        for chain in self.loss_trace[:32]:
            ax.plot(chain, lw=0.6, alpha=0.6)
        ax.axhline(self.init_loss, color="k", ls="--", lw=1, label="init_loss L(w*)")
        ax.set_xlabel("draw")
        ax.set_ylabel("loss")
        ax.set_title(f"λ̂ = {self.llc_mean:.3g} ± {self.mcse:.2g}")
        ax.legend(loc="upper right")
        if path is not None:
            ax.figure.tight_layout()
            ax.figure.savefig(path, dpi=120)
        return ax


def llc_from_trace(trace: SamplingTrace, *, nbeta_source: str = "given", batch_size=None,
                   seed=None, num_samples=None) -> LLCResult:
    """Post-process a sampling trace into an :class:`LLCResult` (no sampling)."""
    nbeta = trace.hyper.nbeta
    if trace.chain_hyper is not None and np.ptp(trace.chain_hyper["nbeta"]) > 0:
        raise ValueError("this trace mixes chains with different nbeta; split it by chain first "
                         "(toymodels.calibrate does)")
    llc_trace = nbeta * (trace.loss - trace.init_loss)
    per_chain = llc_trace.mean(axis=1)
    diag = chain_diagnostics(llc_trace)
    acceptance = trace.records.get("acceptance")
    acceptance_rate = mala_acceptance = None
    if acceptance is not None:
        if trace.sampler == "mala":
            acceptance_rate = acceptance.mean(axis=1)
        elif np.isfinite(acceptance).any():
            ok = np.isfinite(acceptance)
            count = ok.sum(axis=1)
            total = np.where(ok, acceptance, 0.0).sum(axis=1)
            mala_acceptance = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    step_size = trace.final_step_size if trace.final_step_size is not None else trace.hyper.step_size
    return LLCResult(
        llc_mean=float(per_chain.mean()),
        llc_std=float(per_chain.std(ddof=1)) if per_chain.size > 1 else float("nan"),
        llc_per_chain=per_chain,
        loss_trace=trace.loss,
        init_loss=trace.init_loss,
        mcse=diag["mcse"],
        ess=diag["ess"],
        rhat=diag["rhat"],
        nbeta=nbeta,
        nbeta_source=nbeta_source,
        step_size=step_size,
        localization=trace.hyper.localization,
        num_chains=trace.num_chains,
        num_draws=trace.num_draws,
        num_burnin_steps=trace.num_burnin_steps,
        num_steps_bw_draws=trace.num_steps_bw_draws,
        batch_size=batch_size,
        seed=seed,
        num_samples=num_samples,
        dropped_chains=trace.dropped_chains,
        divergence_steps=trace.divergence_steps,
        seconds=trace.seconds,
        sampler=trace.sampler,
        fraction_below_init=(trace.loss < trace.init_loss).mean(axis=1),
        acceptance_rate=acceptance_rate,
        mala_acceptance=mala_acceptance,
        trace=trace,
    )


def estimate_llc(
    target: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor] | Objective,
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    nbeta: float | None = None,
    step_size: float | str = 1e-4,
    localization: float = 0.0,
    num_chains: int = 8,
    num_draws: int | None = None,
    num_burnin_steps: int | None = None,
    num_steps_bw_draws: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    restrict_to: list[str] | torch.Tensor | None = None,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    on_divergence: str = "raise",
    progress: bool = True,
    chain_init: torch.Tensor | None = None,
    num_threads: int | None = None,
    sampler: str = "sgld",
    sampler_options: dict | None = None,
    calibration=None,
    rel_mcse: float = 0.02,
    budget_steps: int | None = 1_000_000,
    budget_seconds: float | None = None,
    calibration_options: dict | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient at ``w*`` with chains run as one tensor (SGLD by default).

    ``λ̂ = nβ (E[L(w)] − L(w*))`` (Lau et al. arXiv 2308.12108, eq. 8), the expectation over the
    draws of the localized tempered posterior ``∝ exp(−nβ L − γ/2 ||w − w*||²) φ(w)``.

    Two ways in, one code path:

    * ``estimate_llc(potential, init=w_star, nbeta=...)`` — ``potential(w)`` maps one flat
      ``(d,)`` vector to the scalar loss; ``nbeta`` is required (there is no sample size).
    * ``estimate_llc(model, data=(inputs, targets), loss_fn=...)`` — a ``torch.nn.Module`` at
      ``w*``, data as tensors (or a DataLoader, concatenated once), ``loss_fn(outputs, targets)``
      the batch-mean loss. ``nbeta`` defaults to ``n / log n`` with ``n`` the dataset size (never
      the batch size); ``result.nbeta_source`` says which was used. The contracts the sampler
      relies on are checked before anything runs: outputs and targets of the same shape (no
      silent broadcasting), a batch *mean* (the loss of the data equals the mean of the losses of
      its two halves), a tensor-valued loss, and no dropout or batch-norm layer in training mode.

    ``step_size="auto"`` chooses the whole schedule (every value passed explicitly wins):

    1. :func:`toymodels.calibrate` finds the largest stable step, **relaxes** this run's chains
       from ``w*`` at a quarter of it until they stop drifting (:mod:`toymodels.estimators.relaxation`: the
       burn-in the slowest direction needs), measures the step-size bias on a grid from the
       relaxed chains and chooses ε (for MALA: dual averaging to 80 % acceptance);
    2. :meth:`CalibrationResult.schedule` sets the burn-in at ε (20 autocorrelation times), and
       the draws and thinning for an MCSE of ``rel_mcse·|λ̂|`` within the budget;
    3. the chains continue from their relaxed positions. ``result.schedule`` says what was
       chosen and why; a budget that stopped short of the target is a problem in
       ``result.diagnose()``. Passing ``num_burnin_steps`` skips the relaxation: the chains
       then start at ``w*`` (or ``chain_init``) and burn in for exactly that many steps.

    Args:
        nbeta: nβ, the inverse temperature times the sample size.
        step_size: ε, the step size (SGLD's noise variance), or ``"auto"`` (above).
        localization: γ ≥ 0, the pull towards ``w*``.
        num_chains, num_draws, num_burnin_steps, num_steps_bw_draws: the chain schedule; burn-in
            draws are excluded from every average. With a numeric step size the defaults are
            1000 draws, no burn-in and no thinning; with ``"auto"`` they are chosen.
        batch_size: minibatch size per chain and step (networks only); ``None`` = full batch.
        seed: every random number of the run comes from a generator seeded with this.
        log_prior: optional ``log φ(w)`` of one flat vector (added to the drift; the recorded
            loss is still ``L``).
        restrict_to: sample only these parameters (names or module prefixes for a network, or a
            boolean ``(d,)`` mask), the rest fixed at ``w*``.
        observables: ``{name: φ(w)}`` functions of one flat vector, recorded at every draw
            (``result.trace.observables``), e.g. for susceptibilities from the same run.
        on_divergence: ``"raise"`` (default) stops with an error naming the chains and the step;
            ``"drop"`` drops those chains and lists them in ``result.dropped_chains``.
        progress: show a tqdm progress bar.
        chain_init: optional ``(num_chains, d)`` starting points (default: every chain at ``w*``);
            with ``step_size="auto"`` the calibration's chains start on them too.
        num_threads: torch threads during sampling (default: 1 for a potential, torch's setting
            for a network); see :func:`toymodels.run_sgld`.
        sampler: ``"sgld"`` (default), ``"sgnht"``, ``"rmsprop_sgld"`` or ``"mala"`` (exact
            full-batch losses only; no step-size bias); see :mod:`toymodels.sampling.kernels`.
        sampler_options: keyword arguments of the sampler (e.g. ``{"diffusion": 0.1}`` for SGNHT).
        calibration: a :class:`toymodels.CalibrationResult` (or its ``to_dict()``, as stored in
            ``result.calibration``) to take ε from when ``step_size="auto"``, instead of
            calibrating again; the chains are then relaxed at its relaxation step.
        rel_mcse: with ``"auto"``: the Monte-Carlo standard error to aim for, relative to λ̂.
        budget_steps: with ``"auto"``: at most this many steps per chain after relaxation.
        budget_seconds: with ``"auto"``: a wall-clock budget for the whole call (half of it at
            most for the relaxation); the draws are cut to fit it.
        calibration_options: with ``"auto"``: keyword arguments for :func:`toymodels.calibrate`
            (e.g. ``{"num_chains": 64}`` for a more precise bias slope).

    The result carries diagnostics (``fraction_below_init``, ``mala_acceptance`` or
    ``acceptance_rate``, the trace's drift terms); ``result.diagnose()`` says in words what they
    mean and what to change. Ctrl-C raises :class:`toymodels.SamplingInterrupted` whose
    ``result`` holds the draws completed so far.
    """
    # every argument is checked before anything is sampled or calibrated
    auto = isinstance(step_size, str)
    if auto and step_size != "auto":
        raise ValueError(f"step_size must be a number > 0 or 'auto', got {step_size!r}")
    if not auto:
        step_size = as_float("step_size", step_size, minimum=0, strict=True,
                             hint="try 1e-4, or step_size='auto'")
    num_chains = as_int("num_chains", num_chains, 1)
    num_draws = as_optional_int("num_draws", num_draws, 1)
    num_burnin_steps = as_optional_int("num_burnin_steps", num_burnin_steps, 0)
    num_steps_bw_draws = as_optional_int("num_steps_bw_draws", num_steps_bw_draws, 1)
    localization = as_float("localization", localization, minimum=0, hint="0 means no localization")
    if nbeta is not None:
        nbeta = as_float("nbeta", nbeta, minimum=0, strict=True,
                         hint="the default for n samples is n / log n")
    seed = as_int("seed", seed, 0)
    as_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    as_choice("sampler", sampler, tuple(SAMPLERS))
    make_sampler(sampler, sampler_options)  # bad options fail now, not after calibrating
    rel_mcse = as_float("rel_mcse", rel_mcse, minimum=0, strict=True, hint="0.02 means 2%")
    if budget_steps is not None:
        budget_steps = as_int("budget_steps", budget_steps, 1)
    if budget_seconds is not None:
        budget_seconds = as_float("budget_seconds", budget_seconds, minimum=0, strict=True)
        if num_burnin_steps is not None:
            # the seconds are turned into steps with the time per step the relaxation measures
            raise ValueError("budget_seconds is converted to steps with the relaxation's measured "
                             "time per step, and a given num_burnin_steps skips the relaxation: "
                             "use budget_steps instead")
    if num_threads is not None:
        num_threads = as_int("num_threads", num_threads, 1)
    if calibration is not None:
        if not auto:
            raise ValueError("calibration= is used with step_size='auto'; with a numeric step "
                             "size it would be ignored")
        if isinstance(calibration, dict):
            calibration = CalibrationResult.from_dict(calibration)
        elif not isinstance(calibration, CalibrationResult):
            raise TypeError("calibration must be a CalibrationResult (from toymodels.calibrate) or "
                            f"its to_dict(), got {type(calibration).__name__}")
        if calibration.sampler != sampler:
            raise ValueError(f"the calibration was made for sampler {calibration.sampler!r}, "
                             f"not {sampler!r}; calibrate again with sampler={sampler!r}")
    if calibration_options is not None and (not auto or calibration is not None):
        raise ValueError("calibration_options configure the calibration that step_size='auto' "
                         "runs; they do nothing with a numeric step size or a given calibration")
    objective = make_objective(target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size)
    if nbeta is None:
        if objective.num_samples is None:
            raise ValueError("nbeta is required for a potential (there is no dataset size to default from)")
        nbeta, nbeta_source = default_nbeta(objective.num_samples), f"n/log n with n={objective.num_samples}"
    else:
        nbeta_source = "given"
    mask = resolve_mask(objective, restrict_to)
    if chain_init is not None:
        chain_init = torch.as_tensor(chain_init, dtype=objective.dtype, device=objective.center.device)
        if chain_init.shape != (num_chains, objective.dim):
            raise ValueError(f"chain_init must have shape (num_chains, d) = ({num_chains}, "
                             f"{objective.dim}), got {tuple(chain_init.shape)}")
    options = dict(sampler_options or {})
    common = dict(seed=seed, log_prior=log_prior, mask=mask, num_threads=num_threads)
    calibration_summary = schedule = None
    start = time.perf_counter()
    if auto:
        calibration, starts, relaxation = _auto_calibration(
            objective, calibration, calibration_options, nbeta=nbeta, localization=localization,
            sampler=sampler, sampler_options=sampler_options, num_chains=num_chains,
            chain_init=chain_init, relax=num_burnin_steps is None, budget_seconds=budget_seconds,
            common=common)
        choice = calibration.choice(nbeta, localization)
        step_size = choice.step_size
        seconds_left = (None if budget_seconds is None
                        else max(budget_seconds - (time.perf_counter() - start), 1e-3))
        plan = calibration.schedule(
            num_chains, rel_mcse=rel_mcse, nbeta=nbeta, localization=localization,
            num_burnin_steps=num_burnin_steps, num_draws=num_draws,
            num_steps_bw_draws=num_steps_bw_draws, budget_steps=budget_steps,
            budget_seconds=seconds_left,
            seconds_per_step=relaxation["seconds_per_step"] if relaxation else None)
        num_burnin_steps, num_draws, num_steps_bw_draws = (
            plan.num_burnin_steps, plan.num_draws, plan.num_steps_bw_draws)
        if starts is not None:
            chain_init = starts
        schedule = dict(plan.to_dict(), relaxation=relaxation,
                        calibration_seconds=time.perf_counter() - start)
        calibration_summary = calibration.to_dict()
        if sampler == "mala":
            options["target_accept"] = calibration.sampler_options.get("target_accept", 0.8)
    num_draws = 1000 if num_draws is None else num_draws
    num_burnin_steps = 0 if num_burnin_steps is None else num_burnin_steps
    num_steps_bw_draws = 1 if num_steps_bw_draws is None else num_steps_bw_draws
    hyper = SGLDHyperparameters(step_size=step_size, nbeta=nbeta, localization=localization)
    post = dict(nbeta_source=nbeta_source, batch_size=batch_size, seed=seed,
                num_samples=objective.num_samples)
    try:
        trace = run_sgld(objective, hyper=hyper, num_chains=num_chains, num_draws=num_draws,
                         num_burnin_steps=num_burnin_steps, num_steps_bw_draws=num_steps_bw_draws,
                         observables=observables, on_divergence=on_divergence, progress=progress,
                         chain_init=chain_init, sampler=sampler, sampler_options=options, **common)
    except SamplingInterrupted as exc:
        if exc.trace is not None and exc.trace.num_draws >= 1:
            exc.result = llc_from_trace(exc.trace, **post)
            exc.result.calibration, exc.result.schedule = calibration_summary, schedule
        raise
    result = llc_from_trace(trace, **post)
    result.calibration = calibration_summary
    result.schedule = schedule
    return result


def _auto_calibration(objective, calibration, calibration_options, *, nbeta, localization, sampler,
                      sampler_options, num_chains, chain_init, relax, budget_seconds, common):
    """``(calibration, relaxed starting points or None, relaxation summary or None)`` for "auto"."""
    relax_seconds = None if budget_seconds is None else budget_seconds / 2
    if calibration is None:
        options = dict(calibration_options or {})
        for key in ("nbeta", "localization", "sampler", "chain_init", "relax_chains"):
            if key in options:
                raise ValueError(f"calibration_options may not set {key!r}: estimate_llc sets it")
        options.setdefault("seed", common["seed"] + 1)
        calibration = calibrate(objective, nbeta=nbeta, localization=localization, sampler=sampler,
                                sampler_options=sampler_options, log_prior=common["log_prior"],
                                restrict_to=common["mask"], num_threads=common["num_threads"],
                                chain_init=chain_init,
                                relax_chains=num_chains if relax else None,
                                relax_max_seconds=relax_seconds, **options)
        choice = calibration.choice(nbeta, localization)
        if not relax:
            return calibration, None, None
        return calibration, calibration.warm_states[(choice.nbeta, choice.localization)], choice.relaxation
    choice = calibration.choice(nbeta, localization)
    if not relax:
        return calibration, None, None
    warm = calibration.warm_states.get((choice.nbeta, choice.localization))
    if warm is not None and warm.shape == (num_chains, objective.dim) and chain_init is None:
        return calibration, warm, choice.relaxation
    # relax this run's chains at the step the calibration relaxed at
    step = choice.relaxation.get("step_size", choice.step_size) if choice.relaxation else choice.step_size
    # MALA's calibrations relax with SGLD (see toymodels.estimators.calibration); the others with themselves
    relax_sampler, relax_options = ("sgld", None) if sampler == "mala" else (sampler, sampler_options)
    relaxation = run_relaxation(objective, hyper=SGLDHyperparameters(step, nbeta, localization),
                                num_chains=num_chains, chain_init=chain_init, sampler=relax_sampler,
                                sampler_options=relax_options, seed=common["seed"] + 3,
                                log_prior=common["log_prior"], mask=common["mask"],
                                num_threads=common["num_threads"], max_seconds=relax_seconds)
    return calibration, relaxation.states, relaxation.summary()
