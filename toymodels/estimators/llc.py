"""The local learning coefficient (LLC) estimator: one entry point for potentials and networks.

Estimator (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8 and Definition 3)::

    λ̂(w*) = nβ ( E_p[L(w)] − L(w*) ),   p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)

with the expectation over sampler draws after burn-in, averaged over chains. The sampler is SGLD
by default; SGNHT, RMSProp-preconditioned SGLD and MALA share the same driver
(:mod:`toymodels.sampling`), ``step_size="auto"`` chooses ε by :func:`toymodels.calibrate`, and
``result.diagnose()`` reads the run's diagnostics (:mod:`toymodels.estimators.diagnose`). For a potential ``K``
with ``K(w*) = 0`` this is ``nβ·E[K]``, which for an exact sampler equals the finite-temperature
value that ``theory`` computes (e.g. :func:`theory.normal_crossing.finite_temperature_llc`), and
tends to the learning coefficient λ as ``nβ → ∞``, ``γ → 0``.

The posterior ``p`` is a :class:`toymodels.Posterior` (:mod:`toymodels.objectives.posterior`),
built once; the trace is turned into the estimate by :func:`toymodels.llc_from_trace`
(:mod:`toymodels.estimators.llc_result`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from toymodels.checks import as_choice, as_float, as_int, as_optional_int
from toymodels.estimators.calibration import CalibrationResult, calibrate
from toymodels.estimators.llc_result import LLCResult, llc_draws, llc_from_trace
from toymodels.estimators.relaxation import relax as run_relaxation
from toymodels.objectives import Objective, Posterior, default_nbeta, make_objective, make_posterior
from toymodels.sampling import (
    ON_DIVERGENCE,
    SAMPLERS,
    SamplingInterrupted,
    SGLDHyperparameters,
    make_sampler,
    run_sgld,
)
from toymodels.sampling.distributed import distributed_chains, will_split

# LLCResult, llc_draws, llc_from_trace, default_nbeta and make_objective stay importable from here
__all__ = ["LLCResult", "estimate_llc", "llc_from_trace", "llc_draws", "default_nbeta",
           "make_objective"]


def estimate_llc(
    target: Posterior | torch.nn.Module | Callable[[torch.Tensor], torch.Tensor] | Objective,
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
    distributed: bool | str = "auto",
) -> LLCResult:
    """Estimate the local learning coefficient at ``w*`` with chains run as one tensor (SGLD by default).

    ``λ̂ = nβ (E[L(w)] − L(w*))`` (Lau et al. arXiv 2308.12108, eq. 8), the expectation over the
    draws of the localized tempered posterior ``∝ exp(−nβ L − γ/2 ||w − w*||²) φ(w)``.

    Three ways in, one code path (the keyword arguments ``init``, ``data``, ``loss_fn``,
    ``batch_size``, ``nbeta``, ``localization``, ``log_prior`` and ``restrict_to`` build the
    posterior with :func:`toymodels.make_posterior`, once):

    * ``estimate_llc(posterior, ...)`` — a :class:`toymodels.Posterior` built before; it is
      passed alone (those eight arguments with it are refused, by name).
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
        distributed: ``"auto"`` (default): under ``torchrun`` with a default process group of N > 1
            processes initialised (by you, or by :func:`toymodels.init_distributed`), the chains
            (and the calibration's) are split over the N processes, one device each, and the
            traces gathered, so every rank returns the same result
            (:mod:`toymodels.sampling.distributed`); ``False`` runs every chain in this process.

    The result carries diagnostics (``fraction_below_init``, ``mala_acceptance`` or
    ``acceptance_rate``, the trace's drift terms); ``result.diagnose()`` says in words what they
    mean and what to change. Ctrl-C raises :class:`toymodels.SamplingInterrupted` whose
    ``result`` holds the draws completed so far.
    """
    # every argument is checked before anything is sampled or calibrated
    run = _checked_run(step_size=step_size, num_chains=num_chains, num_draws=num_draws,
                       num_burnin_steps=num_burnin_steps, num_steps_bw_draws=num_steps_bw_draws,
                       seed=seed, on_divergence=on_divergence, sampler=sampler,
                       sampler_options=sampler_options, rel_mcse=rel_mcse,
                       budget_steps=budget_steps, budget_seconds=budget_seconds,
                       num_threads=num_threads, calibration=calibration,
                       calibration_options=calibration_options)
    if distributed not in ("auto", True, False):
        raise ValueError(f"distributed must be 'auto', True or False, got {distributed!r}")
    if budget_seconds is not None and will_split(distributed):
        raise ValueError("budget_seconds is a wall-clock budget, and processes that each watch "
                         "their own clock could stop at different points: across processes give "
                         "budget_steps instead")
    posterior = make_posterior(target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size,
                               nbeta=nbeta, localization=localization, log_prior=log_prior,
                               restrict_to=restrict_to)
    with distributed_chains(distributed):
        return _estimate(posterior, run, chain_init=_checked_chain_init(chain_init, posterior, num_chains),
                         observables=observables, progress=progress)


@dataclass
class _Run:
    """The checked settings of one :func:`estimate_llc` call; ``step_size="auto"`` fills in the
    schedule (``None`` values) before the run."""

    auto: bool
    step_size: float | None
    num_chains: int
    num_draws: int | None
    num_burnin_steps: int | None
    num_steps_bw_draws: int | None
    seed: int
    on_divergence: str
    sampler: str
    sampler_options: dict | None
    rel_mcse: float
    budget_steps: int | None
    budget_seconds: float | None
    num_threads: int | None
    calibration: CalibrationResult | None
    calibration_options: dict | None


def _checked_run(*, step_size, num_chains, num_draws, num_burnin_steps, num_steps_bw_draws, seed,
                 on_divergence, sampler, sampler_options, rel_mcse, budget_steps, budget_seconds,
                 num_threads, calibration, calibration_options) -> _Run:
    """The sampling arguments of :func:`estimate_llc`, checked (the posterior's are
    :func:`toymodels.make_posterior`'s)."""
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
    calibration = _checked_calibration(calibration, calibration_options, auto, sampler)
    return _Run(auto=auto, step_size=None if auto else step_size, num_chains=num_chains,
                num_draws=num_draws, num_burnin_steps=num_burnin_steps,
                num_steps_bw_draws=num_steps_bw_draws, seed=seed, on_divergence=on_divergence,
                sampler=sampler, sampler_options=sampler_options, rel_mcse=rel_mcse,
                budget_steps=budget_steps, budget_seconds=budget_seconds, num_threads=num_threads,
                calibration=calibration, calibration_options=calibration_options)


def _checked_calibration(calibration, calibration_options, auto: bool, sampler: str):
    """A given calibration as a :class:`CalibrationResult` (from its dict too), checked against
    the sampler; calibration options only where a calibration runs."""
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
    return calibration


def _checked_chain_init(chain_init, posterior: Posterior, num_chains: int) -> torch.Tensor | None:
    if chain_init is None:
        return None
    chain_init = torch.as_tensor(chain_init, dtype=posterior.dtype, device=posterior.center.device)
    if chain_init.shape != (num_chains, posterior.dim):
        raise ValueError(f"chain_init must have shape (num_chains, d) = ({num_chains}, "
                         f"{posterior.dim}), got {tuple(chain_init.shape)}")
    return chain_init


def _estimate(posterior: Posterior, run: _Run, *, chain_init, observables, progress) -> LLCResult:
    """Sample ``posterior`` (after the "auto" schedule, if asked for) and estimate λ̂."""
    options = dict(run.sampler_options or {})
    calibration_summary = schedule = None
    if run.auto:
        chain_init, schedule, calibration_summary = _auto_schedule(posterior, run, chain_init)
        if run.sampler == "mala":
            options["target_accept"] = run.calibration.sampler_options.get("target_accept", 0.8)
    hyper = SGLDHyperparameters(step_size=run.step_size, nbeta=posterior.nbeta,
                                localization=posterior.localization)
    post = dict(nbeta_source=posterior.nbeta_source, batch_size=posterior.batch_size,
                seed=run.seed, num_samples=posterior.num_samples)
    try:
        trace = run_sgld(
            posterior.objective, hyper=hyper, num_chains=run.num_chains,
            num_draws=1000 if run.num_draws is None else run.num_draws,
            num_burnin_steps=0 if run.num_burnin_steps is None else run.num_burnin_steps,
            num_steps_bw_draws=1 if run.num_steps_bw_draws is None else run.num_steps_bw_draws,
            observables=observables, on_divergence=run.on_divergence, progress=progress,
            chain_init=chain_init, sampler=run.sampler, sampler_options=options, seed=run.seed,
            log_prior=posterior.log_prior, mask=posterior.mask, num_threads=run.num_threads)
    except SamplingInterrupted as exc:
        if exc.trace is not None and exc.trace.num_draws >= 1:
            exc.result = llc_from_trace(exc.trace, **post)
            exc.result.calibration, exc.result.schedule = calibration_summary, schedule
        raise
    result = llc_from_trace(trace, **post)
    result.calibration = calibration_summary
    result.schedule = schedule
    return result


def _auto_schedule(posterior: Posterior, run: _Run, chain_init):
    """``step_size="auto"``: calibrate (or take the given calibration), relax the chains, choose
    ε and the schedule; fills them into ``run``. Returns the chains' starting points, the
    schedule's summary and the calibration's."""
    start = time.perf_counter()
    calibration, starts, relaxation = _auto_calibration(
        posterior, run, chain_init=chain_init, relax=run.num_burnin_steps is None)
    run.calibration = calibration
    run.step_size = calibration.choice(posterior.nbeta, posterior.localization).step_size
    seconds_left = (None if run.budget_seconds is None
                    else max(run.budget_seconds - (time.perf_counter() - start), 1e-3))
    plan = calibration.schedule(
        run.num_chains, rel_mcse=run.rel_mcse, nbeta=posterior.nbeta,
        localization=posterior.localization, num_burnin_steps=run.num_burnin_steps,
        num_draws=run.num_draws, num_steps_bw_draws=run.num_steps_bw_draws,
        budget_steps=run.budget_steps, budget_seconds=seconds_left,
        seconds_per_step=relaxation["seconds_per_step"] if relaxation else None)
    run.num_burnin_steps, run.num_draws, run.num_steps_bw_draws = (
        plan.num_burnin_steps, plan.num_draws, plan.num_steps_bw_draws)
    schedule = dict(plan.to_dict(), relaxation=relaxation,
                    calibration_seconds=time.perf_counter() - start)
    return (chain_init if starts is None else starts), schedule, calibration.to_dict()


def _auto_calibration(posterior: Posterior, run: _Run, *, chain_init, relax):
    """``(calibration, relaxed starting points or None, relaxation summary or None)`` for "auto"."""
    relax_seconds = None if run.budget_seconds is None else run.budget_seconds / 2
    calibration = run.calibration
    nbeta, localization = posterior.nbeta, posterior.localization
    if calibration is None:
        options = dict(run.calibration_options or {})
        for key in ("nbeta", "localization", "sampler", "chain_init", "relax_chains"):
            if key in options:
                raise ValueError(f"calibration_options may not set {key!r}: estimate_llc sets it")
        options.setdefault("seed", run.seed + 1)
        if run.budget_seconds is not None:  # the grid stops adding rounds at 3/4 of the budget
            options.setdefault("max_seconds", 0.75 * run.budget_seconds)
        calibration = calibrate(posterior, sampler=run.sampler, sampler_options=run.sampler_options,
                                num_threads=run.num_threads, chain_init=chain_init,
                                relax_chains=run.num_chains if relax else None,
                                relax_max_seconds=relax_seconds, **options)
        choice = calibration.choice(nbeta, localization)
        if not relax:
            return calibration, None, None
        return calibration, calibration.warm_states[(choice.nbeta, choice.localization)], choice.relaxation
    choice = calibration.choice(nbeta, localization)
    if not relax:
        return calibration, None, None
    warm = calibration.warm_states.get((choice.nbeta, choice.localization))
    if warm is not None and warm.shape == (run.num_chains, posterior.dim) and chain_init is None:
        return calibration, warm, choice.relaxation
    # relax this run's chains at the step the calibration relaxed at
    step = choice.relaxation.get("step_size", choice.step_size) if choice.relaxation else choice.step_size
    # MALA's calibrations relax with SGLD (see toymodels.estimators.calibration); the others with themselves
    relax_sampler, relax_options = ("sgld", None) if run.sampler == "mala" else (run.sampler, run.sampler_options)
    relaxation = run_relaxation(posterior.objective, hyper=SGLDHyperparameters(step, nbeta, localization),
                                num_chains=run.num_chains, chain_init=chain_init, sampler=relax_sampler,
                                sampler_options=relax_options, seed=run.seed + 3,
                                log_prior=posterior.log_prior, mask=posterior.mask,
                                num_threads=run.num_threads, max_seconds=relax_seconds)
    return calibration, relaxation.states, relaxation.summary()
