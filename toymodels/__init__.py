"""toymodels: toy models of Singular Learning Theory and the estimators validated on them.

The public surface is re-exported here; everything else is private.
"""

from toymodels.sampling import kernels as samplers
from toymodels.estimators.calibration import CalibrationChoice, CalibrationResult, Schedule, calibrate
from toymodels.estimators.diagnose import Diagnosis, Finding, diagnose, plot_diagnostics
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.sampling import MALA, SGLD, SGNHT, ChainHyperparameters, RMSPropSGLD, make_sampler, mala_log_acceptance
from toymodels.estimators.llc import estimate_llc
from toymodels.estimators.llc_result import LLCResult, llc_draws, llc_from_trace
from toymodels.objectives import (
    ModuleObjective,
    Objective,
    PotentialObjective,
    Posterior,
    default_nbeta,
    make_posterior,
    parameter_mask,
)
from toymodels.estimators.relaxation import Relaxation, relax
from toymodels.sampling import DivergenceError, SamplingInterrupted, SamplingTrace, run_chains, run_sgld
from toymodels.sampling import SGLDHyperparameters, SGLDInfo, sgld_hyperparameters_from_scales, sgld_step
from toymodels.estimators.susceptibility import (
    FiniteDifferenceResult,
    PrincipalComponents,
    SusceptibilityResult,
    bayesian_influence,
    component_llcs,
    finite_difference_response,
    module_loss_function,
    per_sample_loss_function,
    restricted_potential,
    susceptibilities,
    susceptibilities_from_trace,
)

__all__ = [
    "CalibrationChoice",
    "CalibrationResult",
    "Schedule",
    "Relaxation",
    "relax",
    "SamplingInterrupted",
    "ChainHyperparameters",
    "Diagnosis",
    "Finding",
    "MALA",
    "RMSPropSGLD",
    "SGLD",
    "SGNHT",
    "calibrate",
    "diagnose",
    "make_sampler",
    "mala_log_acceptance",
    "plot_diagnostics",
    "run_chains",
    "samplers",
    "DivergenceError",
    "FiniteDifferenceResult",
    "PrincipalComponents",
    "SusceptibilityResult",
    "bayesian_influence",
    "component_llcs",
    "finite_difference_response",
    "module_loss_function",
    "per_sample_loss_function",
    "restricted_potential",
    "susceptibilities",
    "susceptibilities_from_trace",
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
    "llc_draws",
    "Posterior",
    "make_posterior",
    "parameter_mask",
    "run_sgld",
    "sgld_hyperparameters_from_scales",
    "sgld_step",
]
