"""Objectives: what the samplers evaluate — an exact potential, or a network with data and a loss —
and the localized tempered posterior built on one (:class:`Posterior`, :func:`make_posterior`).

Import from here (``from toymodels.objectives import ModuleObjective``), not from the modules
inside: their layout is private. The modules: ``base`` (:class:`Objective`,
:class:`PotentialObjective`), ``module`` (:class:`ModuleObjective`, its contracts, parameter
masks), ``compiled`` (:class:`CompiledLossAndGrad`), ``fx_passes`` (its graph rewrites) and
``posterior`` (:class:`Posterior` and the builders).
"""

from toymodels.objectives.base import Objective, PotentialObjective
from toymodels.objectives.compiled import CompiledLossAndGrad
from toymodels.objectives.module import (
    FlatModule,
    AUTO_COMPILE_AFTER_SECONDS,
    ModuleObjective,
    check_module_contracts,
    data_from_loader,
    parameter_mask,
)
from toymodels.objectives.posterior import (
    PHYSICS_ARGUMENTS,
    Posterior,
    check_localization,
    check_mask,
    check_nbeta,
    default_nbeta,
    make_objective,
    make_posterior,
    refuse_physics_arguments,
    resolve_mask,
)

__all__ = [
    "FlatModule",
    "AUTO_COMPILE_AFTER_SECONDS", "CompiledLossAndGrad", "ModuleObjective", "Objective",
    "PotentialObjective", "check_module_contracts", "data_from_loader", "default_nbeta",
    "make_objective", "parameter_mask", "resolve_mask",
    "PHYSICS_ARGUMENTS", "Posterior", "make_posterior", "check_nbeta", "check_localization",
    "check_mask", "refuse_physics_arguments",
]
