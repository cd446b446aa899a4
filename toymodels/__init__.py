"""toymodels: toy models of Singular Learning Theory and the estimators validated on them.

The public surface is what this module lists in ``__all__``; every other name is private to its
module. The layers, bottom up (``docs/architecture.md``):

* :mod:`toymodels.objectives` — what the samplers evaluate, and the :class:`Posterior`;
* :mod:`toymodels.sampling` — kernels, the driver, adaptation, tempering, traces;
* :mod:`toymodels.estimators` — LLC, calibration, relaxation, susceptibilities, diagnosis;
* :mod:`toymodels.models` — potentials, TMS, DLN, Turing machines, ICL, the transformer, the
  gridworld;
* :mod:`toymodels.validation` — the exact cases behind ``toymodels validate``.
"""

from importlib.metadata import PackageNotFoundError, version

from toymodels.estimators.calibration import CalibrationChoice, CalibrationResult, Schedule, calibrate
from toymodels.estimators.compressibility import (
    SCHEMES,
    CriticalStrength,
    VolumeExponent,
    compress,
    compression_code_length,
    critical_strength,
    fit_volume_exponent,
    log_uniform_sampler,
    step_for_bits,
    volume_code_length,
    volume_exponent_from_llcs,
    volume_exponent_mc,
    weight_matrices,
)
from toymodels.estimators.diagnose import Diagnosis, Finding, diagnose, plot_diagnostics
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.estimators.escape import ESCAPE_FRACTION, escaped_chains, without_chains
from toymodels.estimators.llc import estimate_llc
from toymodels.estimators.llc_result import LLCResult, llc_draws, llc_from_trace
from toymodels.estimators.points import PointLLC, llc_at_points
from toymodels.estimators.patterning import Intervention, minimum_norm_intervention, repeated_patterning
from toymodels.estimators.relaxation import Relaxation, relax
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
from toymodels.models.gridworld import GridworldEnv
from toymodels.objectives import (
    ModuleObjective,
    Objective,
    PotentialObjective,
    Posterior,
    default_nbeta,
    make_posterior,
    parameter_mask,
)
from toymodels.sampling import (
    MALA,
    SGLD,
    SGNHT,
    ChainHyperparameters,
    DivergenceError,
    RMSPropSGLD,
    SamplingInterrupted,
    SamplingTrace,
    SGLDHyperparameters,
    SGLDInfo,
    TemperedSamples,
    anneal,
    distributed_chains,
    init_distributed,
    make_sampler,
    mala_log_acceptance,
    parallel_tempering,
    run_chains,
    run_sgld,
    sgld_hyperparameters_from_scales,
    sgld_step,
)
from toymodels.sampling import kernels as samplers

try:
    __version__ = version("toymodels")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    # the posterior and what it is built from
    "Posterior", "make_posterior", "default_nbeta", "Objective", "PotentialObjective",
    "ModuleObjective", "parameter_mask",
    # estimators
    "estimate_llc", "LLCResult", "llc_from_trace", "llc_draws", "llc_at_points", "PointLLC",
    "calibrate", "CalibrationResult", "CalibrationChoice", "Schedule", "relax", "Relaxation",
    "susceptibilities", "susceptibilities_from_trace", "bayesian_influence",
    "finite_difference_response", "component_llcs", "restricted_potential", "module_loss_function",
    "per_sample_loss_function", "SusceptibilityResult", "FiniteDifferenceResult",
    "PrincipalComponents",
    # patterning: steer the posterior by reweighting data along χ⁺ dμ
    "minimum_norm_intervention", "repeated_patterning", "Intervention",
    # compressibility: volume exponents, compression schemes, code lengths
    "volume_exponent_mc", "volume_exponent_from_llcs", "fit_volume_exponent", "log_uniform_sampler",
    "volume_code_length", "VolumeExponent", "critical_strength", "compress",
    "compression_code_length", "step_for_bits", "weight_matrices", "SCHEMES", "CriticalStrength",
    # diagnosis
    "diagnose", "Diagnosis", "Finding", "plot_diagnostics", "chain_diagnostics", "escaped_chains",
    "without_chains", "ESCAPE_FRACTION",
    # sampling
    "run_chains", "run_sgld", "SamplingTrace", "DivergenceError", "SamplingInterrupted",
    "SGLDHyperparameters", "ChainHyperparameters", "sgld_hyperparameters_from_scales", "sgld_step",
    "SGLDInfo", "SGLD", "SGNHT", "RMSPropSGLD", "MALA", "make_sampler", "samplers",
    "mala_log_acceptance", "parallel_tempering", "anneal", "TemperedSamples",
    # chains split over torch.distributed processes (torchrun)
    "init_distributed", "distributed_chains",
    # models with an interface of their own
    "GridworldEnv",
]
