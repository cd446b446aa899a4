"""The sampler kernels by name: SGLD, SGNHT, RMSProp-preconditioned SGLD, MALA.

Every kernel targets the localized tempered posterior ``p(w) ∝ exp(−U(w))`` of
:mod:`toymodels.sampling.integrator` and has the same protocol, in the manner of blackjax's
kernels: a state ``NamedTuple`` of fixed-shape tensors with the chain as leading dimension, and ::

    state = kernel.init(position, target, hyper, generator)
    state, info = kernel.step(state, target, hyper, generator, record)

``target`` (:class:`~toymodels.sampling.integrator.Target`) evaluates the loss, gradient and prior
and holds the centre and mask; ``hyper`` are ``(C, 1)`` tensors
(:class:`~toymodels.sampling.hyper.ChainHyperparameters`); every random number comes from
``generator``. ``step`` draws its randomness and calls the kernel's pure ``transition``, which the
tests call directly with given noise. ``info`` records per chain what happened at the position
before the step (``loss``, ``grad_norm``, ``distance``, ``drift_norm``, ``noise_norm``, ...,
``finite``).

* :class:`~toymodels.sampling.sgld.SGLD` — Welling & Teh (2011); with full-batch losses it also
  reports, free of extra evaluations, the MALA acceptance probability its last move would have had.
* :class:`~toymodels.sampling.sgnht.SGNHT` — Ding et al. (NeurIPS 2014, Alg. 2).
* :class:`~toymodels.sampling.rmsprop_sgld.RMSPropSGLD` — Li et al. (AAAI 2016, Alg. 1).
* :class:`~toymodels.sampling.mala.MALA` — Roberts & Tweedie (1996): no step-size bias, exact
  (full-batch) losses only.
"""

from __future__ import annotations

from toymodels.sampling.hyper import ChainHyperparameters
from toymodels.sampling.integrator import mala_log_acceptance, potential_and_force
from toymodels.sampling.mala import MALA
from toymodels.sampling.rmsprop_sgld import RMSPropSGLD
from toymodels.sampling.sgld import SGLD
from toymodels.sampling.sgnht import SGNHT

__all__ = ["SGLD", "SGNHT", "RMSPropSGLD", "MALA", "SAMPLERS", "make_sampler", "ChainHyperparameters",
           "mala_log_acceptance", "potential_and_force"]

SAMPLERS = {"sgld": SGLD, "sgnht": SGNHT, "rmsprop_sgld": RMSPropSGLD, "mala": MALA}


def make_sampler(name: str, options: dict | None = None):
    """The sampler called ``name`` (one of :data:`SAMPLERS`) built with ``options``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    try:
        return SAMPLERS[name](**(options or {}))
    except TypeError as exc:
        raise ValueError(f"bad sampler_options for {name!r}: {exc}") from exc
