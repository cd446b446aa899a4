"""What a sampling run returns: the :class:`SamplingTrace`, and the two ways a run can end early."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from toymodels.sampling.hyper import SGLDHyperparameters

__all__ = ["SamplingTrace", "DivergenceError", "SamplingInterrupted", "make_trace"]


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
        self.step_size = step_size
        self.nbeta = nbeta
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
    init_loss: float  #: L(w*); an array over the kept chains when each chain has its own centre
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
    #: minibatch runs: the standard deviation of the minibatch loss at w* (one per chain with
    #: per-chain centres), the scatter of each recorded loss around L(w); None for a full batch
    init_loss_sd: float | np.ndarray | None = None

    @property
    def num_chains(self) -> int:
        return self.loss.shape[0]

    @property
    def num_draws(self) -> int:
        return self.loss.shape[1]


def make_trace(records: dict[str, torch.Tensor], observables: dict[str, list[torch.Tensor]],
               num_done: int, dropped: torch.Tensor, first_bad: torch.Tensor,
               final_position: torch.Tensor, **fields) -> SamplingTrace:
    """The :class:`SamplingTrace` of the first ``num_done`` draws of the chains not dropped.

    ``records`` are ``(draws, chains)`` tensors by name, ``observables`` lists of per-draw
    ``(chains, ...)`` tensors; ``fields`` are the trace's remaining fields (``init_loss``,
    ``hyper``, the schedule, ``sampler``, ...).
    """
    keep = (~dropped).nonzero().flatten()

    def to_np(t: torch.Tensor) -> np.ndarray:  # (draws, chains, ...) -> (kept chains, draws, ...)
        return t[:num_done].movedim(0, 1)[keep].detach().cpu().double().numpy()

    base = ("loss", "grad_norm", "distance", "drift_norm", "noise_norm")
    chain_hyper = fields.pop("chain_hyper", None)
    for name in ("init_loss", "init_loss_sd"):
        if isinstance(fields.get(name), np.ndarray):  # one centre per chain
            fields[name] = fields[name][keep.cpu().numpy()]
    if chain_hyper is not None:
        chain_hyper = {k: getattr(chain_hyper, k).squeeze(1)[keep].detach().cpu().double().numpy()
                       for k in ("step_size", "nbeta", "localization")}
    return SamplingTrace(
        **{k: to_np(records[k]) for k in base},
        observables={name: to_np(torch.stack(v[:num_done])) for name, v in observables.items()},
        kept_chains=keep.tolist(),
        dropped_chains=dropped.nonzero().flatten().tolist(),
        divergence_steps=first_bad[dropped].tolist(),
        final_params=final_position[keep].detach(),
        records={k: to_np(v) for k, v in records.items() if k not in base},
        chain_hyper=chain_hyper,
        **fields,
    )
