"""The chain driver: runs many chains of a sampler (SGLD by default) as one tensor and records their traces.

One protocol for every kernel (:mod:`toymodels.sampling.kernels`): the driver builds the target
(objective, prior, centre, mask), broadcasts the hyperparameters once to ``(C, 1)`` tensors, and
calls ``kernel.step`` in a loop, composing step-size adaptation
(:mod:`toymodels.sampling.adaptation`) during burn-in when the kernel asks for it. Sampling and
post-processing are split: the run returns a :class:`~toymodels.sampling.trace.SamplingTrace` (raw
per-draw losses, gradient norms, observables), and estimators such as
:func:`toymodels.estimate_llc` turn a trace into numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.func import grad as func_grad
from torch.func import vmap
from tqdm.auto import tqdm

from toymodels.checks import as_choice, as_int
from toymodels.objectives import Objective, PotentialObjective
from toymodels.sampling.adaptation import DualAveraging
from toymodels.sampling.distributed import all_ranks_mean, chain_split, gather_traces, rank_seed
from toymodels.sampling.hyper import SGLDHyperparameters, broadcast_hyperparameters
from toymodels.sampling.integrator import Evaluation, Scratch, Target
from toymodels.sampling.kernels import make_sampler
from toymodels.sampling.trace import DivergenceError, SamplingInterrupted, SamplingTrace, make_trace
from toymodels.threads import torch_threads

__all__ = ["run_chains", "run_sgld", "build_kernel", "make_target", "ON_DIVERGENCE"]

ON_DIVERGENCE = ("raise", "drop")


def run_chains(
    objective: Objective,
    *,
    hyper: SGLDHyperparameters,
    num_chains: int,
    num_draws: int,
    num_burnin_steps: int = 0,
    num_steps_bw_draws: int = 1,
    seed: int | torch.Generator = 0,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mask: torch.Tensor | None = None,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    on_divergence: str = "raise",
    progress: bool = False,
    check_every: int = 50,
    chain_init: torch.Tensor | None = None,
    num_threads: int | None = None,
    sampler: str = "sgld",
    sampler_options: dict | None = None,
    chain_hyper: Mapping[str, torch.Tensor] | None = None,
    centers: torch.Tensor | None = None,
) -> SamplingTrace:
    """Run ``num_chains`` chains of a sampler (SGLD by default) from ``objective.center``.

    Step ``s`` (0-based) records a draw — the loss at the parameters before the step — when
    ``s ≥ num_burnin_steps`` and ``(s − num_burnin_steps) % num_steps_bw_draws == 0``; the run
    takes ``num_burnin_steps + num_draws · num_steps_bw_draws`` steps. Burn-in draws are never
    recorded.

    Chains start at ``w*`` unless ``chain_init`` (``(num_chains, d)``) gives other starting points,
    e.g. for a prior that vanishes at ``w*`` or for over-dispersed starts (R-hat); the
    localization centre and ``init_loss`` stay at ``w*``.

    ``sampler`` is one of ``"sgld"``, ``"sgnht"``, ``"rmsprop_sgld"``, ``"mala"`` (see
    :mod:`toymodels.sampling.kernels`), built with ``sampler_options``. MALA needs the exact loss and is
    refused for minibatch objectives. ``chain_hyper`` optionally gives per-chain values
    ``{"step_size" | "nbeta" | "localization": (num_chains,) tensor}`` overriding ``hyper``: a grid
    of settings run as one batched tensor (:func:`toymodels.calibrate`).

    ``centers`` (``(num_chains, d)``) gives each chain its own localization centre (LLCs at many
    points in one run, :func:`toymodels.estimators.points.llc_at_points`): the chains start at
    their centres unless ``chain_init`` says otherwise, and ``trace.init_loss`` is then an array
    over the chains, ``L`` at each chain's centre.

    ``num_threads`` sets torch's intra-op threads for the run and restores them afterwards. The
    default (``None``) uses one thread for a :class:`PotentialObjective`: its per-step tensors are
    tiny, and splitting them over threads costs far more than it saves (measured: 0.2 ms against
    20 ms per step for a 5-parameter quadratic with 2000 chains on a busy 2-core machine);
    networks with data keep torch's setting.

    Divergence is checked between steps as a per-chain mask (no data-dependent branching inside
    the vectorised step): the first non-finite step of each chain is kept on the device and looked
    at every ``check_every`` steps and at the end.
    """
    if num_threads is None and isinstance(objective, PotentialObjective):
        num_threads = 1
    schedule = dict(num_chains=as_int("num_chains", num_chains, 1),
                    num_draws=as_int("num_draws", num_draws, 1),
                    num_burnin_steps=as_int("num_burnin_steps", num_burnin_steps, 0),
                    num_steps_bw_draws=as_int("num_steps_bw_draws", num_steps_bw_draws, 1))
    check_every = as_int("check_every", check_every, 1, "how often (in steps) to look for "
                         "non-finite chains; 50 is the default")
    as_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    kernel, adaptation = build_kernel(sampler, sampler_options, full_batch=_is_full_batch(objective),
                                      num_burnin_steps=schedule["num_burnin_steps"])
    generator = _generator(seed, objective.center.device)
    center = _check_centers(centers, objective, schedule["num_chains"])
    step_hyper = broadcast_hyperparameters(hyper, chain_hyper, schedule["num_chains"],
                                           objective.center.dtype, objective.center.device)
    start = _initial_positions(center, schedule["num_chains"], chain_init)
    # under torch.distributed: this rank's block of the chains, its own generator, gathered after
    split = chain_split(schedule["num_chains"])
    if split is not None:
        block = slice(split.start, split.stop)
        schedule["num_chains"] = split.local_chains
        generator = _generator(rank_seed(generator.initial_seed(), split), objective.center.device)
        start = start[block]
        step_hyper = step_hyper.select(block)
        center = center if centers is None else center[block]
        progress = progress and split.rank == 0
    # the loop keeps only the current state; an observable could return a view of a position
    target = make_target(objective, log_prior, _check_mask(mask, objective), generator, center,
                         recycle_positions=not observables)
    prepare = getattr(objective, "prepare_run", None)
    if prepare is not None:  # a network: memory plan (chunks, or a clear refusal) and compile choice
        prepare(schedule["num_chains"], schedule["num_burnin_steps"]
                + schedule["num_draws"] * schedule["num_steps_bw_draws"], schedule["num_draws"])
    init_loss = objective.full_loss(center.reshape(-1, center.shape[-1])).detach().cpu().double().numpy()
    if not np.isfinite(init_loss).all():
        raise ValueError(f"the loss at init (w*) is not finite ({init_loss}); check the model and data")
    # one centre: a number; one centre per chain: an array over the chains (kept ones in the trace)
    init_loss = float(init_loss[0]) if centers is None else init_loss
    # the probe's own generator, seeded from the run's: the run draws what it would draw without it
    init_loss_sd = minibatch_loss_sd(objective, center, generator.initial_seed() + 1)
    observable_fns = {name: vmap(fn) for name, fn in (observables or {}).items()}
    fields = dict(init_loss=init_loss, hyper=hyper, num_burnin_steps=schedule["num_burnin_steps"],
                  num_steps_bw_draws=schedule["num_steps_bw_draws"], sampler=kernel.name,
                  sampler_options=dict(sampler_options or {}), full_batch=_is_full_batch(objective),
                  chain_hyper=step_hyper if chain_hyper else None, init_loss_sd=init_loss_sd)
    loop = dict(kernel=kernel, adaptation=adaptation, target=target, hyper=step_hyper,
                generator=generator, observables=observable_fns, on_divergence=on_divergence,
                progress=progress, check_every=check_every, fields=fields,
                # MALA's dual averaging adapts one step size from every rank's acceptances
                acceptance_mean=all_ranks_mean if split is not None else None, **schedule)
    with torch_threads(num_threads) if num_threads is not None else contextlib.nullcontext():
        if split is None:
            return _sample(start, **loop)
        try:
            outcome = _sample(start, **loop)
        except (DivergenceError, RuntimeError, ValueError) as exc:
            outcome = exc  # raised on every rank by gather_traces, with global chain indices
        return gather_traces(outcome, split, objective.center.device)


#: the same driver under the name of its first sampler
run_sgld = run_chains


def build_kernel(sampler, sampler_options: dict | None, *, full_batch: bool, num_burnin_steps: int):
    """``(kernel, adaptation or None)`` for a sampler name and its options (or a built kernel).

    SGLD on a full-batch loss gets the free MALA acceptance diagnostic; MALA is refused for
    minibatch losses; RMSProp-SGLD adapts its preconditioner during burn-in; MALA's
    ``adapt_steps`` composes dual averaging (:class:`~toymodels.sampling.adaptation.DualAveraging`).
    """
    options = dict(sampler_options or {})
    if not isinstance(sampler, str):
        kernel = sampler  # a kernel built by the caller
    else:
        if sampler == "sgld":
            options.setdefault("mala_diagnostic", full_batch)
        if sampler == "mala" and not full_batch:
            raise ValueError(
                "MALA needs the exact full-batch loss: a minibatch loss makes the acceptance ratio "
                "random and the chain biased. Use batch_size=None, or a gradient sampler "
                "('sgld', 'sgnht', 'rmsprop_sgld')")
        if sampler == "rmsprop_sgld" and options.get("adapt", "burnin") == "burnin":
            if options.get("adapt_steps") is None and num_burnin_steps == 0:
                raise ValueError(
                    "rmsprop_sgld adapts its preconditioner during burn-in and then freezes it: give "
                    "num_burnin_steps > 0, or sampler_options={'adapt': 'always'} (Li et al.'s "
                    "scheme, which drops the correction term Γ)")
            options.setdefault("adapt_steps", num_burnin_steps)
        kernel = make_sampler(sampler, options)
    adapt_steps = getattr(kernel, "adapt_steps", 0) if kernel.name == "mala" else 0
    adaptation = DualAveraging(kernel.target_accept, adapt_steps) if adapt_steps else None
    return kernel, adaptation


def _is_full_batch(objective: Objective) -> bool:
    return getattr(objective, "batch_size", None) is None


#: minibatches drawn at ``w*`` to measure the noise of a minibatch loss (:func:`minibatch_loss_sd`)
NOISE_PROBE_BATCHES = 16


def minibatch_loss_sd(objective: Objective, center: torch.Tensor, seed: int):
    """The standard deviation of the minibatch loss at ``w*`` over :data:`NOISE_PROBE_BATCHES`
    minibatches (a number, or one per centre for ``(C, d)`` centres), or ``None`` for a
    full-batch objective.

    A minibatch run records each draw's minibatch loss, which scatters around ``L(w)`` by this
    much; the escape rule (:mod:`toymodels.estimators.escape`) compares draws with ``L(w*)``
    beyond that scatter. The minibatches come from their own generator (seeded from ``seed``),
    so the run's random numbers are those it would draw without this probe.
    """
    if _is_full_batch(objective):
        return None
    centers = center.reshape(-1, center.shape[-1])
    probe = torch.Generator(device=centers.device).manual_seed(seed)
    with torch.no_grad():
        losses = torch.stack([objective.batched_loss(centers, probe).detach()
                              for _ in range(NOISE_PROBE_BATCHES)])
    sd = losses.double().std(dim=0).cpu().numpy()
    return float(sd[0]) if center.dim() == 1 else sd


def _check_mask(mask, objective: Objective) -> torch.Tensor | None:
    """The boolean ``(d,)`` mask as a float 0/1 tensor (the kernels multiply by it)."""
    if mask is None:
        return None
    d = objective.center.numel()
    mask = torch.as_tensor(mask, device=objective.center.device)
    if mask.shape != (d,) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor of shape ({d},), got "
                         f"{mask.dtype} of shape {tuple(mask.shape)}")
    if not mask.any():
        raise ValueError("mask selects no parameter: nothing would be sampled")
    return mask.to(objective.center.dtype)


def make_target(objective: Objective, log_prior, mask, generator: torch.Generator,
                center: torch.Tensor | None = None, recycle_positions: bool = False) -> Target:
    """The kernels' view of the posterior: one evaluation function (minibatch drawn first), the
    centre (``objective.center`` unless given: ``(C, d)`` for one per chain), the mask, and the
    run's work buffers (:class:`~toymodels.sampling.integrator.Scratch`; ``recycle_positions``
    for a loop that keeps no position but its current state's)."""
    grad_log_prior = vmap(func_grad(lambda w: log_prior(w).reshape(()))) if log_prior else None
    log_prior_value = vmap(lambda w: log_prior(w).reshape(())) if log_prior else None

    writes_grad_into = getattr(objective, "writes_grad_into", False)

    def evaluate(position: torch.Tensor, with_log_prior: bool, grad_out: torch.Tensor | None = None,
                 ) -> Evaluation:
        if grad_out is not None and writes_grad_into:
            loss, grad = objective.loss_and_grad(position, generator, out=grad_out)
        else:
            loss, grad = objective.loss_and_grad(position, generator)
        glp = grad_log_prior(position) if grad_log_prior is not None else None
        lp = log_prior_value(position) if log_prior_value is not None and with_log_prior else None
        return Evaluation(loss, grad, glp, lp)

    return Target(evaluate, objective.center if center is None else center, mask,
                  Scratch(recycle_positions))


def _check_centers(centers, objective: Objective, num_chains: int) -> torch.Tensor:
    """``objective.center`` ``(d,)``, or the per-chain centres ``(num_chains, d)``."""
    if centers is None:
        return objective.center
    centers = torch.as_tensor(centers, dtype=objective.dtype, device=objective.center.device)
    if centers.shape != (num_chains, objective.dim) or not torch.isfinite(centers).all():
        raise ValueError(f"centers must be finite with shape (num_chains, d) = ({num_chains}, "
                         f"{objective.dim}), got {tuple(centers.shape)}")
    return centers


def _initial_positions(center: torch.Tensor, num_chains: int, chain_init) -> torch.Tensor:
    d = center.shape[-1]
    if chain_init is None:
        return center.expand(num_chains, d).clone()
    params = torch.as_tensor(chain_init, dtype=center.dtype, device=center.device).clone()
    if params.shape != (num_chains, d):
        raise ValueError(f"chain_init must have shape (num_chains, d) = ({num_chains}, {d}), "
                         f"got {tuple(params.shape)}")
    if not torch.isfinite(params).all():
        raise ValueError("chain_init contains non-finite values")
    return params


def _reset_chains(state, dropped: torch.Tensor, center: torch.Tensor):
    """Put dropped chains back at ``w*`` with zeroed auxiliary variables so their arithmetic stays
    finite (their draws are discarded). Works for every kernel's state: all fields are tensors."""
    fields = {}
    for name, value in state._asdict().items():
        if name == "position":
            fields[name] = torch.where(dropped.unsqueeze(1), center.expand_as(value), value)
        elif value.dim() >= 1 and value.shape[0] == dropped.shape[0]:
            d = dropped.reshape((-1,) + (1,) * (value.dim() - 1))
            fields[name] = torch.where(d, torch.zeros_like(value), value)
        else:
            fields[name] = value
    return type(state)(**fields)


def _is_draw(step: int, num_burnin_steps: int, num_steps_bw_draws: int) -> bool:
    return step >= num_burnin_steps and (step - num_burnin_steps) % num_steps_bw_draws == 0


def _sample(position, *, kernel, adaptation, target, hyper, generator, observables, on_divergence,
            progress, check_every, fields, num_chains, num_draws, num_burnin_steps,
            num_steps_bw_draws, acceptance_mean=None) -> SamplingTrace:
    """The loop: step, record the draws, look for non-finite chains, hand back what finished."""
    dtype, device = position.dtype, position.device
    state = kernel.init(position, target, hyper, generator)
    adapt_state = adaptation.init(float(hyper.step_size[0]), dtype, device) if adaptation else None
    total_steps = num_burnin_steps + num_draws * num_steps_bw_draws
    records: dict[str, torch.Tensor] = {}
    obs_records: dict[str, list[torch.Tensor]] = {name: [] for name in observables}
    first_bad = torch.full((num_chains,), -1, dtype=torch.long, device=device)
    dropped = torch.zeros(num_chains, dtype=torch.bool, device=device)
    start = time.perf_counter()
    bar = tqdm(total=total_steps, disable=not progress, desc=kernel.name.upper(), unit="step",
               leave=False)
    draw = 0
    try:
        for step in range(total_steps):
            is_draw = _is_draw(step, num_burnin_steps, num_steps_bw_draws)
            if is_draw:
                for name, fn in observables.items():
                    obs_records[name].append(fn(state.position).detach())
            # the draw's info, and the step before it (SGLD's MALA diagnostic looks one step back)
            record = is_draw or _is_draw(step + 1, num_burnin_steps, num_steps_bw_draws)
            state, info = kernel.step(state, target, hyper, generator, record)
            if adapt_state is not None and adapt_state.count < adaptation.num_steps:
                acceptance = info.acceptance if acceptance_mean is None else acceptance_mean(info.acceptance)
                adapt_state = adaptation.update(adapt_state, acceptance)
                hyper = hyper.with_step_size(torch.exp(adapt_state.log_step).expand_as(hyper.step_size))
            if is_draw:
                if not records:
                    records = {k: torch.empty(num_draws, num_chains, dtype=dtype, device=device)
                               for k in info._fields if k != "finite"}
                for key in records:
                    records[key][draw] = getattr(info, key)
                draw += 1
            newly_bad = ~info.finite & (first_bad < 0)
            first_bad = torch.where(newly_bad, torch.full_like(first_bad, step), first_bad)
            if (step + 1) % check_every == 0 or step + 1 == total_steps:
                bad = (first_bad >= 0) & ~dropped
                if bool(bad.any()):
                    if on_divergence == "raise":
                        raise DivergenceError(bad.nonzero().flatten().tolist(), first_bad[bad].tolist(),
                                              fields["hyper"].step_size, fields["hyper"].nbeta)
                    dropped |= bad
                    # keep dropped chains' arithmetic finite; their draws are discarded
                    state = _reset_chains(state, dropped, target.center)
                bar.update(step + 1 - bar.n)
    except KeyboardInterrupt as exc:
        # Ctrl-C: hand back the completed draws (every kept chain has the same number); the
        # chains that went non-finite since the last check are dropped, never averaged
        partial = None
        if draw > 0:
            dropped |= first_bad >= 0
            if bool((~dropped).any()):
                partial = make_trace(records, obs_records, draw, dropped, first_bad, state.position,
                                     seconds=time.perf_counter() - start,
                                     final_step_size=_final_step_size(adapt_state), **fields)
        raise SamplingInterrupted(partial, draw, num_draws) from exc
    finally:
        bar.close()
    if bool(dropped.all()):
        raise DivergenceError(dropped.nonzero().flatten().tolist(), first_bad[dropped].tolist(),
                              fields["hyper"].step_size, fields["hyper"].nbeta)
    return make_trace(records, obs_records, draw, dropped, first_bad, state.position,
                      seconds=time.perf_counter() - start,
                      final_step_size=_final_step_size(adapt_state), **fields)


def _final_step_size(adapt_state) -> float | None:
    return None if adapt_state is None else float(torch.exp(adapt_state.log_step))


def _generator(seed: int | torch.Generator, device: torch.device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0 or a torch.Generator, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))
