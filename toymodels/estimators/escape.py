"""The escape rule: a chain whose draws fall below ``L(w*)`` too often has left the local basin.

At a local minimum ``w*`` a draw with a loss below ``L(w*)`` is in another, lower basin: the chain
escaped to a lower phase, and its draws do not sample the local posterior. A chain escaped when
more than :data:`ESCAPE_FRACTION` of its draws are below ``L(w*)`` — the rule of Chen, Lau,
Mendel, Wei & Murfet (arXiv 2310.06301, 2023: 5 %). It exists once, here; the diagnosis reports
escaped chains and the TMS estimators leave them out.

With a minibatch loss, each recorded draw is its minibatch's loss, which scatters around ``L(w)``
by ``σ_B``, the standard deviation of the minibatch loss (measured at ``w*`` before the run:
``trace.init_loss_sd``); when ``σ_B`` exceeds the chains' elevation ``λ/(nβ)`` above ``L(w*)``,
a chain that never left ``w*``'s basin has a third of its draws below ``L(w*)``. A minibatch draw
therefore counts as below only when it is more than :data:`ESCAPE_NOISE_SDS` ``σ_B`` below
``L(w*)``: noise alone puts at most ``Φ(−2) ≈ 2.3 %`` of the draws there (fewer, since draws sit
above ``L(w*)`` on average), under the 5 % of the rule, while a chain in a basin lower by more
than about ``2σ_B`` is still caught. Full-batch losses are compared with ``L(w*)`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from toymodels.sampling import SamplingTrace

__all__ = ["ESCAPE_FRACTION", "ESCAPE_NOISE_SDS", "fraction_below_init", "noise_tolerance", "escaped",
           "escaped_chains", "without_chains"]

#: a chain with more than this fraction of draws below L(w*) has escaped (Chen et al. 2023)
ESCAPE_FRACTION = 0.05


#: a minibatch draw is below L(w*) when it is more than this many σ_B below (module docstring)
ESCAPE_NOISE_SDS = 2.0


def fraction_below_init(loss: np.ndarray, init_loss, tol=0.0) -> np.ndarray:
    """Per chain, the fraction of draws with ``L < L(w*) − tol``; ``loss (..., chains, draws)``,
    ``init_loss`` and ``tol`` a number or one per chain (``(..., chains)``)."""
    threshold = np.asarray(init_loss, dtype=float) - np.asarray(tol, dtype=float)
    return (np.asarray(loss) < (threshold[..., None] if threshold.ndim else threshold)).mean(axis=-1)


def noise_tolerance(trace: SamplingTrace):
    """How far below ``L(w*)`` a recorded draw must be to count: ``ESCAPE_NOISE_SDS · σ_B`` for a
    minibatch run (a number, or one per chain), 0 for a full batch (module docstring)."""
    sd = getattr(trace, "init_loss_sd", None)
    return 0.0 if sd is None else ESCAPE_NOISE_SDS * np.asarray(sd, dtype=float)


def escaped(loss: np.ndarray, init_loss, fraction: float = ESCAPE_FRACTION, tol=0.0) -> np.ndarray:
    """Boolean per chain: more than ``fraction`` of its draws below ``L(w*) − tol``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1); got {fraction!r}")
    return fraction_below_init(loss, init_loss, tol) > fraction


def escaped_chains(trace: SamplingTrace, fraction: float = ESCAPE_FRACTION, *, tol=None) -> list[int]:
    """Rows of ``trace`` that escaped (module docstring); ``trace.kept_chains[row]`` is the
    chain's original index. ``tol`` defaults to :func:`noise_tolerance`."""
    tol = noise_tolerance(trace) if tol is None else tol
    return [int(i) for i in np.flatnonzero(escaped(trace.loss, trace.init_loss, fraction, tol))]


def without_chains(trace: SamplingTrace, rows: Sequence[int]) -> SamplingTrace:
    """A copy of ``trace`` without the given rows (e.g. escaped chains), for re-analysis.

    ``kept_chains`` is reduced accordingly; ``dropped_chains`` keeps meaning "diverged".
    """
    drop = set(int(r) for r in rows)
    keep = [i for i in range(trace.num_chains) if i not in drop]
    if not keep:
        raise ValueError("every chain would be removed; nothing is left to analyse")
    per_chain = {k: v[keep] for k, v in trace.records.items()}
    init = trace.init_loss if np.ndim(trace.init_loss) == 0 else np.asarray(trace.init_loss)[keep]
    sd = trace.init_loss_sd
    sd = sd if sd is None or np.ndim(sd) == 0 else np.asarray(sd)[keep]
    return replace(
        trace, init_loss_sd=sd,
        loss=trace.loss[keep], grad_norm=trace.grad_norm[keep], distance=trace.distance[keep],
        drift_norm=trace.drift_norm[keep], noise_norm=trace.noise_norm[keep], init_loss=init,
        observables={name: v[keep] for name, v in trace.observables.items()}, records=per_chain,
        kept_chains=[trace.kept_chains[i] for i in keep] if trace.kept_chains else keep,
        final_params=None if trace.final_params is None else trace.final_params[keep],
    )
