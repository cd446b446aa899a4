"""The chain driver: runs many chains of a sampler (SGLD by default) as one tensor and records their traces.

Sampling and post-processing are split: :func:`run_sgld` returns a :class:`SamplingTrace` (raw
per-draw losses, gradient norms, observables), and estimators such as
:func:`toymodels.estimate_llc` turn a trace into numbers. A trace can be re-analysed (another
burn-in, other diagnostics) without sampling again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import grad as func_grad
from torch.func import vmap
from tqdm.auto import tqdm

from toymodels.checks import as_choice, as_int
from toymodels.objectives.objective import Objective, PotentialObjective
from toymodels.threads import torch_threads
from toymodels.sampling.kernels import ChainHyperparameters, make_sampler
from toymodels.sampling.sgld import SGLDHyperparameters

__all__ = ["SamplingTrace", "DivergenceError", "SamplingInterrupted", "run_sgld", "run_chains"]

ON_DIVERGENCE = ("raise", "drop")


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling was interrupted (Ctrl-C); the draws completed so far come with it.

    A subclass of ``KeyboardInterrupt``, so an interrupted script still stops (``except
    Exception`` does not swallow it). ``trace`` is the :class:`SamplingTrace` of the completed
    draws — every kept chain the same length — or ``None`` if none was complete;
    :func:`toymodels.estimate_llc` adds ``result``, the :class:`toymodels.LLCResult` of those
    draws, ready to analyse.
    """

    def __init__(self, trace: SamplingTrace | None, num_done: int, num_planned: int, result=None):
        self.trace = trace
        self.num_done = num_done
        self.num_planned = num_planned
        self.result = result
        super().__init__(f"interrupted after {num_done} of {num_planned} draws; the completed "
                         "draws are in this exception's .trace (and .result from estimate_llc)")


class DivergenceError(RuntimeError):
    """Some chains produced non-finite losses or parameters.

    Attributes:
        chains: the indices of the diverged chains.
        steps: for each, the first step (0-based, burn-in included) whose result was non-finite.
    """

    def __init__(self, chains: list[int], steps: list[int], step_size: float, nbeta: float):
        self.chains = chains
        self.steps = steps
        where = ", ".join(f"chain {c} at step {s}" for c, s in zip(chains[:10], steps[:10]))
        more = f" (and {len(chains) - 10} more)" if len(chains) > 10 else ""
        super().__init__(
            f"{len(chains)} chain(s) diverged (non-finite loss or parameters): {where}{more}. "
            f"With step_size={step_size:g} and nbeta={nbeta:g}: lower step_size (try "
            f"{step_size / 10:g}), raise localization, or pass on_divergence='drop' to drop "
            "these chains and keep the rest."
        )


@dataclass
class SamplingTrace:
    """Raw output of a sampling run. Arrays are ``(num_chains, num_draws)`` float64 numpy.

    Only chains that stayed finite are included; ``dropped_chains`` lists the others (their
    draws are never averaged). ``records`` holds the sampler's further per-draw records, e.g.
    ``grad_term_norm`` and ``localization_term_norm`` (the loss's and the localization's parts of
    the drift, with their ε factors), ``acceptance`` (MALA: the acceptance probability of each
    step; SGLD on a full-batch loss: the MALA acceptance probability of the move that arrived at
    the draw, a diagnostic), ``thermostat`` (SGNHT). ``chain_hyper`` gives per-chain step sizes,
    nβ and γ when they differ between chains (a calibration grid), for the kept chains.
    """

    loss: np.ndarray
    init_loss: float
    grad_norm: np.ndarray
    distance: np.ndarray
    drift_norm: np.ndarray
    noise_norm: np.ndarray
    hyper: SGLDHyperparameters
    num_burnin_steps: int
    num_steps_bw_draws: int
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    kept_chains: list[int] = field(default_factory=list)
    dropped_chains: list[int] = field(default_factory=list)
    divergence_steps: list[int] = field(default_factory=list)
    final_params: torch.Tensor | None = None
    seconds: float = 0.0
    sampler: str = "sgld"
    sampler_options: dict = field(default_factory=dict)
    records: dict[str, np.ndarray] = field(default_factory=dict)
    chain_hyper: dict[str, np.ndarray] | None = None
    #: the step size in force after burn-in (differs from hyper.step_size when MALA adapted it)
    final_step_size: float | None = None
    full_batch: bool = True

    @property
    def num_chains(self) -> int:
        return self.loss.shape[0]

    @property
    def num_draws(self) -> int:
        return self.loss.shape[1]


def run_sgld(
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
    args = (objective, hyper, num_chains, num_draws, num_burnin_steps, num_steps_bw_draws, seed,
            log_prior, mask, observables, on_divergence, progress, check_every, chain_init, sampler,
            sampler_options, chain_hyper)
    if num_threads is not None:
        with torch_threads(num_threads):
            return _run_chains(*args)
    return _run_chains(*args)


#: the same driver under the name that says it runs any sampler
run_chains = run_sgld


def _is_full_batch(objective: Objective) -> bool:
    return getattr(objective, "batch_size", None) is None


def _build_sampler(sampler, sampler_options, objective, num_burnin_steps):
    options = dict(sampler_options or {})
    if not isinstance(sampler, str):
        return sampler  # a sampler object built by the caller
    if sampler == "sgld":
        options.setdefault("mala_diagnostic", _is_full_batch(objective))
    if sampler == "mala" and not _is_full_batch(objective):
        raise ValueError(
            "MALA needs the exact full-batch loss: a minibatch loss makes the acceptance ratio "
            "random and the chain biased. Use batch_size=None, or a gradient sampler "
            "('sgld', 'sgnht', 'rmsprop_sgld')")
    built = make_sampler(sampler, options)
    if getattr(built, "adapt", None) == "burnin" and built.adapt_steps is None:
        if num_burnin_steps == 0:
            raise ValueError(
                "rmsprop_sgld adapts its preconditioner during burn-in and then freezes it: give "
                "num_burnin_steps > 0, or sampler_options={'adapt': 'always'} (Li et al.'s "
                "scheme, which drops the correction term Γ)")
        built.adapt_steps = num_burnin_steps
    return built


def _chain_hyper(hyper, chain_hyper, num_chains, dtype, device):
    if not chain_hyper:
        return hyper
    unknown = set(chain_hyper) - {"step_size", "nbeta", "localization"}
    if unknown:
        raise ValueError(f"chain_hyper keys must be step_size, nbeta or localization, got {sorted(unknown)}")
    values = {}
    for key in ("step_size", "nbeta", "localization"):
        if key in chain_hyper:
            v = torch.as_tensor(chain_hyper[key], dtype=dtype, device=device).reshape(-1)
            if v.shape != (num_chains,):
                raise ValueError(f"chain_hyper[{key!r}] must have one value per chain ({num_chains}), "
                                 f"got shape {tuple(v.shape)}")
            lower_ok = (v >= 0) if key == "localization" else (v > 0)
            if not (torch.isfinite(v).all() and lower_ok.all()):
                raise ValueError(f"chain_hyper[{key!r}] must be finite and "
                                 f"{'≥ 0' if key == 'localization' else '> 0'}")
        else:
            v = torch.full((num_chains,), float(getattr(hyper, key)), dtype=dtype, device=device)
        values[key] = v.unsqueeze(1)
    return ChainHyperparameters(**values)


def _reset_chains(state, dropped: torch.Tensor, center: torch.Tensor):
    """Put dropped chains back at ``w*`` with zeroed auxiliary variables so their arithmetic stays
    finite (their draws are discarded)."""
    fields = {}
    for name, value in state._asdict().items():
        if name == "position":
            fields[name] = torch.where(dropped.unsqueeze(1), center.expand_as(value), value)
        elif isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == dropped.shape[0]:
            d = dropped.reshape((-1,) + (1,) * (value.dim() - 1))
            fields[name] = torch.where(d, torch.zeros_like(value), value)
        elif name == "previous":
            fields[name] = None
        else:
            fields[name] = value
    return type(state)(**fields)


def _run_chains(objective, hyper, num_chains, num_draws, num_burnin_steps, num_steps_bw_draws, seed,
                log_prior, mask, observables, on_divergence, progress, check_every, chain_init,
                sampler, sampler_options, chain_hyper):
    num_chains = as_int("num_chains", num_chains, 1)
    num_draws = as_int("num_draws", num_draws, 1)
    num_burnin_steps = as_int("num_burnin_steps", num_burnin_steps, 0)
    num_steps_bw_draws = as_int("num_steps_bw_draws", num_steps_bw_draws, 1)
    check_every = as_int("check_every", check_every, 1, "how often (in steps) to look for "
                         "non-finite chains; 50 is the default")
    as_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    kernel = _build_sampler(sampler, sampler_options, objective, num_burnin_steps)
    generator = _generator(seed, objective.center.device)
    center = objective.center
    dtype, device, d = center.dtype, center.device, center.numel()
    if mask is not None:
        mask = torch.as_tensor(mask, device=device)
        if mask.shape != (d,) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a boolean tensor of shape ({d},), got "
                             f"{mask.dtype} of shape {tuple(mask.shape)}")
        if not mask.any():
            raise ValueError("mask selects no parameter: nothing would be sampled")
        mask = mask.to(dtype)
    step_hyper = _chain_hyper(hyper, chain_hyper, num_chains, dtype, device)
    grad_log_prior_fn = vmap(func_grad(lambda w: log_prior(w).reshape(()))) if log_prior else None
    log_prior_fn = (vmap(lambda w: log_prior(w).reshape(()))
                    if log_prior and kernel.needs_log_prior_value else None)
    observable_fns = {name: vmap(fn) for name, fn in (observables or {}).items()}

    init_loss_t = objective.full_loss(center.unsqueeze(0))[0]
    init_loss = float(init_loss_t)
    if not np.isfinite(init_loss):
        raise ValueError(f"the loss at init (w*) is not finite ({init_loss}); check the model and data")

    if chain_init is None:
        params = center.expand(num_chains, d).clone()
    else:
        params = torch.as_tensor(chain_init, dtype=dtype, device=device).clone()
        if params.shape != (num_chains, d):
            raise ValueError(f"chain_init must have shape (num_chains, d) = ({num_chains}, {d}), "
                             f"got {tuple(params.shape)}")
        if not torch.isfinite(params).all():
            raise ValueError("chain_init contains non-finite values")

    def prior_terms(w):
        glp = grad_log_prior_fn(w) if grad_log_prior_fn is not None else None
        lp = log_prior_fn(w) if log_prior_fn is not None else None
        return glp, lp

    if kernel.metropolis:
        loss0, grad0 = objective.loss_and_grad(params, generator)
        glp0, lp0 = prior_terms(params)
        state = kernel.init(params, loss=loss0, grad=grad0, hyper=step_hyper, center=center,
                            grad_log_prior=glp0, log_prior=lp0, mask=mask)
    elif kernel.init_noise:
        init_noise = torch.randn(params.shape, generator=generator, dtype=dtype, device=device)
        state = kernel.init(params, noise=init_noise, hyper=step_hyper, mask=mask)
    else:
        state = kernel.init(params)

    total_steps = num_burnin_steps + num_draws * num_steps_bw_draws
    records: dict[str, torch.Tensor] | None = None
    obs_records: dict[str, list[torch.Tensor]] = {name: [] for name in observable_fns}
    first_bad = torch.full((num_chains,), -1, dtype=torch.long, device=device)
    dropped = torch.zeros(num_chains, dtype=torch.bool, device=device)

    start = time.perf_counter()
    bar = tqdm(total=total_steps, disable=not progress, desc=kernel.name.upper(), unit="step",
               leave=False)
    draw = 0
    try:
        for step in range(total_steps):
            params = state.position
            is_draw = step >= num_burnin_steps and (step - num_burnin_steps) % num_steps_bw_draws == 0
            if is_draw:
                for name, fn in observable_fns.items():
                    obs_records[name].append(fn(params).detach())
            if kernel.metropolis:
                noise = torch.randn(params.shape, generator=generator, dtype=dtype, device=device)
                uniform = torch.rand(num_chains, generator=generator, dtype=dtype, device=device)
                proposal = kernel.propose(state, noise, mask=mask)
                loss, grad = objective.loss_and_grad(proposal, generator)
                glp, lp = prior_terms(proposal)
                state, info = kernel.accept(state, proposal, loss, grad, noise, uniform, step_hyper,
                                            center, grad_log_prior=glp, log_prior=lp, mask=mask)
            else:
                loss, grad = objective.loss_and_grad(params, generator)
                noise = torch.randn(params.shape, generator=generator, dtype=dtype, device=device)
                glp, lp = prior_terms(params)
                # the draw's info, and the step before it (the MALA diagnostic looks one step back)
                next_is_draw = (step + 1 >= num_burnin_steps
                                and (step + 1 - num_burnin_steps) % num_steps_bw_draws == 0)
                state, info = kernel.step(state, loss, grad, noise, step_hyper, center,
                                          grad_log_prior=glp, log_prior=lp, mask=mask,
                                          record=is_draw or next_is_draw)
            if is_draw:
                if records is None:
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
                    idx = bad.nonzero().flatten().tolist()
                    steps = first_bad[bad].tolist()
                    if on_divergence == "raise":
                        raise DivergenceError(idx, steps, hyper.step_size, hyper.nbeta)
                    dropped |= bad
                    # keep dropped chains' arithmetic finite; their draws are discarded below
                    state = _reset_chains(state, dropped, center)
                bar.update(step + 1 - bar.n)
    except KeyboardInterrupt as exc:
        # Ctrl-C: hand back the completed draws (every kept chain has the same number); the
        # chains that went non-finite since the last check are dropped, never averaged
        partial = None
        if draw > 0:
            dropped |= first_bad >= 0
            if bool((~dropped).any()):
                obs_done = {name: v[:draw] for name, v in obs_records.items()}
                partial = _make_trace(records, draw, obs_done, dropped, first_bad, state, init_loss,
                                      hyper, num_burnin_steps, num_steps_bw_draws, step_hyper,
                                      kernel, sampler_options, objective,
                                      time.perf_counter() - start)
        raise SamplingInterrupted(partial, draw, num_draws) from exc
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if bool(dropped.all()):
        raise DivergenceError(dropped.nonzero().flatten().tolist(), first_bad[dropped].tolist(),
                              hyper.step_size, hyper.nbeta)
    return _make_trace(records, draw, obs_records, dropped, first_bad, state, init_loss, hyper,
                       num_burnin_steps, num_steps_bw_draws, step_hyper, kernel, sampler_options,
                       objective, seconds)


def _make_trace(records, num_done, obs_records, dropped, first_bad, state, init_loss, hyper,
                num_burnin_steps, num_steps_bw_draws, step_hyper, kernel, sampler_options, objective,
                seconds) -> SamplingTrace:
    """The :class:`SamplingTrace` of the first ``num_done`` draws of the chains not dropped."""
    keep = (~dropped).nonzero().flatten()

    def to_np(t: torch.Tensor) -> np.ndarray:  # (draws, chains, ...) -> (kept chains, draws, ...)
        return t[:num_done].movedim(0, 1)[keep].detach().cpu().double().numpy()

    base = ("loss", "grad_norm", "distance", "drift_norm", "noise_norm")
    final_step_size = None
    if hasattr(state, "log_step"):
        final_step_size = float(torch.exp(state.log_step))
    per_chain = None
    if isinstance(step_hyper, ChainHyperparameters):
        per_chain = {k: getattr(step_hyper, k).squeeze(1)[keep].detach().cpu().double().numpy()
                     for k in step_hyper._fields}
    return SamplingTrace(
        loss=to_np(records["loss"]),
        init_loss=init_loss,
        grad_norm=to_np(records["grad_norm"]),
        distance=to_np(records["distance"]),
        drift_norm=to_np(records["drift_norm"]),
        noise_norm=to_np(records["noise_norm"]),
        hyper=hyper,
        num_burnin_steps=num_burnin_steps,
        num_steps_bw_draws=num_steps_bw_draws,
        observables={name: to_np(torch.stack(v)) for name, v in obs_records.items()},
        kept_chains=keep.tolist(),
        dropped_chains=dropped.nonzero().flatten().tolist(),
        divergence_steps=first_bad[dropped].tolist(),
        final_params=state.position[keep].detach(),
        seconds=seconds,
        sampler=kernel.name,
        sampler_options=dict(sampler_options or {}),
        records={k: to_np(v) for k, v in records.items() if k not in base},
        chain_hyper=per_chain,
        final_step_size=final_step_size,
        full_batch=_is_full_batch(objective),
    )


def _generator(seed: int | torch.Generator, device: torch.device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0 or a torch.Generator, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))
