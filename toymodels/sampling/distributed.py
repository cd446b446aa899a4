"""Chains split over processes with ``torch.distributed``: one run, its chains on N ranks.

Under ``torchrun --nproc-per-node N`` (or any launcher that sets up a default process group),
:func:`toymodels.sampling.run_chains` splits its ``C`` chains into N contiguous blocks — rank ``r``
runs chains ``offsets[r] … offsets[r+1] − 1`` on its own device (one GPU each with NCCL, or CPU
processes with gloo) — and gathers the per-chain traces, so that **every rank returns the same**
:class:`~toymodels.sampling.trace.SamplingTrace`, chains in global order. Everything built on
traces (``estimate_llc``, ``calibrate``, the relaxation, ``diagnose()``) then makes the same
decisions on every rank without further communication, and returns the same result everywhere.

Reproducibility: rank ``r`` draws its random numbers from a generator seeded with
``SeedSequence([seed, r, N])`` (numpy's collision-resistant seed mixing), so the same seed and the
same N give identical numbers; a different N gives a different (equally valid) sample.

What is not split: wall-clock budgets (``budget_seconds``) would let ranks decide differently, so
they are refused across processes (use ``budget_steps``). A divergence on one rank is raised, with
global chain indices, on every rank once all ranks have finished the run. Ctrl-C interrupts each
rank on its own: the partial trace it carries holds that rank's chains only.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ChainSplit", "chain_split", "init_distributed", "distributed_chains",
           "gather_traces", "rank_seed", "will_split"]

#: whether run_chains may split its chains over the default process group: "auto" (when one is
#: initialised with more than one rank) or False; set for a block by :func:`distributed_chains`
_MODE: contextvars.ContextVar[str | bool] = contextvars.ContextVar("toymodels_distributed", default="auto")


@contextlib.contextmanager
def distributed_chains(enabled: bool | str):
    """Within the block, ``run_chains`` splits chains over processes (``"auto"``: when a default
    process group with more than one rank is initialised) or never (``False``); restored after."""
    if enabled not in ("auto", False, True):
        raise ValueError(f"distributed must be 'auto', True or False, got {enabled!r}")
    token = _MODE.set(enabled)
    try:
        yield
    finally:
        _MODE.reset(token)


@dataclass(frozen=True)
class ChainSplit:
    """This process's block of the chains: global chains ``start … stop − 1`` of ``num_chains``."""

    rank: int
    world_size: int
    num_chains: int
    start: int
    stop: int

    @property
    def local_chains(self) -> int:
        return self.stop - self.start


def chain_split(num_chains: int) -> ChainSplit | None:
    """The block of chains this rank runs, or ``None`` when the run is not split.

    Blocks are contiguous and as even as possible (the first ``C mod N`` ranks get one more).
    Raises when ``True`` was asked without a process group, or when there are fewer chains than
    ranks (a rank without chains would have nothing to gather).
    """
    mode = _MODE.get()
    if mode is False:
        return None
    available = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not available:
        if mode is True:
            raise RuntimeError("distributed=True needs an initialised default process group: call "
                               "toymodels.init_distributed() (under torchrun) or "
                               "torch.distributed.init_process_group first")
        return None
    world = torch.distributed.get_world_size()
    if world == 1:
        return None
    rank = torch.distributed.get_rank()
    if num_chains < world:
        raise ValueError(f"num_chains={num_chains} is fewer than the {world} processes of the "
                         f"process group: give num_chains ≥ {world} (ideally a multiple of it)")
    base, extra = divmod(num_chains, world)
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return ChainSplit(rank, world, num_chains, start, stop)


def will_split(mode: bool | str | None = None) -> bool:
    """Whether runs would be split over processes now (under ``mode``, default the block's)."""
    mode = _MODE.get() if mode is None else mode
    return (mode is not False and torch.distributed.is_available()
            and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1)


def rank_seed(seed: int, split: ChainSplit) -> int:
    """The seed of rank ``r`` of ``N``: ``SeedSequence([seed, r, N])``'s first 63-bit word."""
    state = np.random.SeedSequence([int(seed), split.rank, split.world_size]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def init_distributed(backend: str | None = None) -> torch.device:
    """Initialise the default process group from ``torchrun``'s environment; return this rank's device.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (set by ``torchrun``) and
    ``LOCAL_RANK``. The backend defaults to NCCL when CUDA is available (each rank then uses GPU
    ``LOCAL_RANK``, made the current device) and gloo otherwise. Does nothing but return the
    device if a group is already initialised. Put the model and data on the returned device.
    """
    missing = [k for k in ("RANK", "WORLD_SIZE") if k not in os.environ]
    if not torch.distributed.is_initialized() and missing:
        raise RuntimeError(f"init_distributed reads torchrun's environment, but {missing} are not "
                           "set: launch with `torchrun --nproc-per-node N script.py`")
    cuda = torch.cuda.is_available() and backend != "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    return device


def all_ranks_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over every rank's entries, as a one-element tensor (same on all ranks)."""
    total = torch.stack([values.sum(), torch.tensor(float(values.numel()), dtype=values.dtype,
                                                      device=values.device)])
    torch.distributed.all_reduce(total)
    return (total[0] / total[1]).reshape(1)


def gather_traces(outcome, split: ChainSplit, device: torch.device):
    """Gather every rank's ``outcome`` (a local trace, or the exception its run raised) and return
    the global trace, identical on every rank, or raise the same error on every rank.

    A :class:`~toymodels.sampling.trace.DivergenceError` is re-raised with global chain indices
    (all ranks' diverged chains together); another exception is re-raised as a ``RuntimeError``
    naming the rank it came from.
    """
    from toymodels.sampling.trace import DivergenceError

    payload = outcome
    if isinstance(outcome, DivergenceError):
        payload = ("divergence", [c + split.start for c in outcome.chains], outcome.steps,
                   outcome.step_size, outcome.nbeta)
    elif isinstance(outcome, BaseException):
        payload = ("error", f"{type(outcome).__name__}: {outcome}")
    elif outcome.final_params is not None:
        outcome.final_params = outcome.final_params.cpu()
    gathered: list = [None] * split.world_size
    torch.distributed.all_gather_object(gathered, payload)
    errors = [(r, p) for r, p in enumerate(gathered) if isinstance(p, tuple)]
    if errors:
        divergences = [p for _, p in errors if p[0] == "divergence"]
        others = [(r, p) for r, p in errors if p[0] == "error"]
        if others:
            rank, (_, message) = others[0]
            if isinstance(outcome, BaseException) and split.rank == rank:
                raise outcome
            raise RuntimeError(f"rank {rank} of {split.world_size} failed: {message}")
        chains = [c for p in divergences for c in p[1]]
        steps = [s for p in divergences for s in p[2]]
        raise DivergenceError(chains, steps, divergences[0][3], divergences[0][4])
    return merge_traces(gathered, split, device)


def merge_traces(traces: list, split: ChainSplit, device: torch.device):
    """One trace from the ranks' traces (in rank order), chain indices made global."""
    from toymodels.sampling.trace import SamplingTrace

    base = split.num_chains // split.world_size
    extra = split.num_chains % split.world_size
    starts = [r * base + min(r, extra) for r in range(split.world_size)]
    first = traces[0]

    def cat(name):
        return np.concatenate([getattr(t, name) for t in traces], axis=0)

    def cat_dict(name):
        keys = getattr(first, name).keys()
        return {k: np.concatenate([getattr(t, name)[k] for t in traces], axis=0) for k in keys}

    init_loss = (np.concatenate([t.init_loss for t in traces])
                 if isinstance(first.init_loss, np.ndarray) else first.init_loss)
    init_loss_sd = (np.concatenate([t.init_loss_sd for t in traces])
                    if isinstance(first.init_loss_sd, np.ndarray) else first.init_loss_sd)
    chain_hyper = (None if first.chain_hyper is None else
                   {k: np.concatenate([t.chain_hyper[k] for t in traces]) for k in first.chain_hyper})
    finals = [t.final_params for t in traces]
    return SamplingTrace(
        loss=cat("loss"), init_loss=init_loss, grad_norm=cat("grad_norm"), distance=cat("distance"),
        drift_norm=cat("drift_norm"), noise_norm=cat("noise_norm"), hyper=first.hyper,
        num_burnin_steps=first.num_burnin_steps, num_steps_bw_draws=first.num_steps_bw_draws,
        observables=cat_dict("observables"),
        kept_chains=[s + c for s, t in zip(starts, traces) for c in t.kept_chains],
        dropped_chains=[s + c for s, t in zip(starts, traces) for c in t.dropped_chains],
        divergence_steps=[step for t in traces for step in t.divergence_steps],
        final_params=None if finals[0] is None else torch.cat(finals).to(device),
        # the slowest rank's time: what the run cost, and the same number on every rank
        seconds=max(t.seconds for t in traces), sampler=first.sampler,
        sampler_options=first.sampler_options, records=cat_dict("records"), chain_hyper=chain_hyper,
        final_step_size=first.final_step_size, full_batch=first.full_batch, init_loss_sd=init_loss_sd)
