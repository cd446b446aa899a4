"""Sampling: kernels vectorized over chains, and the driver that runs them and records traces.

Modules (import the names from here, ``from toymodels.sampling import run_chains``; the layout
inside may change):

* ``hyper`` — :class:`SGLDHyperparameters` (user-facing) and :class:`ChainHyperparameters`
  (the ``(C, 1)`` tensors every kernel sees);
* ``integrator`` — the force, the Euler–Maruyama step and the MALA log ratio, written once;
* ``sgld``, ``sgnht``, ``rmsprop_sgld``, ``mala`` — one kernel each (state, ``init``, ``step``,
  pure ``transition``); ``kernels`` — the registry by name;
* ``adaptation`` — dual averaging of the step size, composed by the driver during burn-in;
* ``tempering`` — parallel tempering over a ladder of inverse temperatures;
* ``distributed`` — chains split over ``torch.distributed`` processes.
* ``driver`` — :func:`run_chains`; ``trace`` — :class:`SamplingTrace` and the early endings.
"""

from toymodels.sampling.distributed import distributed_chains, init_distributed
from toymodels.sampling.driver import ON_DIVERGENCE, build_kernel, run_chains, run_sgld
from toymodels.sampling.hyper import (
    ChainHyperparameters,
    SGLDHyperparameters,
    broadcast_hyperparameters,
    sgld_hyperparameters_from_scales,
)
from toymodels.sampling.integrator import Evaluation, Target, mala_log_acceptance, potential_and_force
from toymodels.sampling.kernels import MALA, SAMPLERS, SGLD, SGNHT, RMSPropSGLD, make_sampler
from toymodels.sampling.sgld import SGLDInfo, sgld_step
from toymodels.sampling.tempering import TemperedSamples, anneal, geometric_ladder, parallel_tempering
from toymodels.sampling.trace import DivergenceError, SamplingInterrupted, SamplingTrace

__all__ = [
    "ON_DIVERGENCE", "build_kernel", "run_chains", "run_sgld",
    "ChainHyperparameters", "SGLDHyperparameters", "broadcast_hyperparameters",
    "sgld_hyperparameters_from_scales",
    "Evaluation", "Target", "mala_log_acceptance", "potential_and_force",
    "MALA", "SAMPLERS", "SGLD", "SGNHT", "RMSPropSGLD", "make_sampler",
    "SGLDInfo", "sgld_step",
    "TemperedSamples", "anneal", "geometric_ladder", "parallel_tempering",
    "DivergenceError", "SamplingInterrupted", "SamplingTrace",
    "distributed_chains", "init_distributed",
]
