"""toymodels: toy models of Singular Learning Theory and the estimators validated on them.

The public surface is re-exported here; everything else is private.
"""

from .diagnostics import chain_diagnostics
from .llc import LLCResult, default_nbeta, estimate_llc, llc_from_trace
from .objective import ModuleObjective, Objective, PotentialObjective, parameter_mask
from .sampling import DivergenceError, SamplingTrace, run_sgld
from .sgld import SGLDHyperparameters, SGLDInfo, sgld_hyperparameters_from_scales, sgld_step

__all__ = [
    "DivergenceError",
    "LLCResult",
    "ModuleObjective",
    "Objective",
    "PotentialObjective",
    "SGLDHyperparameters",
    "SGLDInfo",
    "SamplingTrace",
    "chain_diagnostics",
    "default_nbeta",
    "estimate_llc",
    "llc_from_trace",
    "parameter_mask",
    "run_sgld",
    "sgld_hyperparameters_from_scales",
    "sgld_step",
]
