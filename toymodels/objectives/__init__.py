"""Objectives: what the samplers evaluate — an exact potential, or a network with data and a loss.

Import from here (``from toymodels.objectives import ModuleObjective``), not from the modules
inside: their layout is private.
"""

from toymodels.objectives.objective import (
    AUTO_COMPILE_AFTER_SECONDS,
    CompiledLossAndGrad,
    ModuleObjective,
    Objective,
    PotentialObjective,
    check_module_contracts,
    data_from_loader,
    default_nbeta,
    make_objective,
    parameter_mask,
    resolve_mask,
)

__all__ = [
    "AUTO_COMPILE_AFTER_SECONDS", "CompiledLossAndGrad", "ModuleObjective", "Objective",
    "PotentialObjective", "check_module_contracts", "data_from_loader", "default_nbeta",
    "make_objective", "parameter_mask", "resolve_mask",
]
