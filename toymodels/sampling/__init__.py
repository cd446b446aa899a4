"""Sampling: kernels vectorized over chains, and the driver that runs them and records traces.

Import from here (``from toymodels.sampling import run_chains``), not from the modules inside:
their layout is private.
"""

from toymodels.sampling.driver import DivergenceError, SamplingInterrupted, SamplingTrace, run_chains, run_sgld
from toymodels.sampling.kernels import (
    MALA,
    SAMPLERS,
    SGLD,
    SGNHT,
    ChainHyperparameters,
    RMSPropSGLD,
    make_sampler,
    mala_log_acceptance,
    potential_and_force,
)
from toymodels.sampling.sgld import SGLDHyperparameters, SGLDInfo, sgld_hyperparameters_from_scales, sgld_step

__all__ = [
    "DivergenceError", "SamplingInterrupted", "SamplingTrace", "run_chains", "run_sgld",
    "MALA", "SAMPLERS", "SGLD", "SGNHT", "ChainHyperparameters", "RMSPropSGLD", "make_sampler",
    "mala_log_acceptance", "potential_and_force",
    "SGLDHyperparameters", "SGLDInfo", "sgld_hyperparameters_from_scales", "sgld_step",
]
