"""The former single module of the objectives, kept so that existing imports
(``from toymodels.objectives.objective import PotentialObjective``) keep working.

New code imports from :mod:`toymodels.objectives`; the definitions live in ``base``, ``module``,
``compiled`` and ``posterior``.
"""

from toymodels.objectives.base import Objective, PotentialObjective
from toymodels.objectives.compiled import CompiledLossAndGrad
from toymodels.objectives.compiled import bmm_for_small_or_shared as _bmm_for_small_or_shared  # noqa: F401
from toymodels.objectives.compiled import bmm_samples_innermost as _bmm_samples_innermost  # noqa: F401
from toymodels.objectives.module import (
    AUTO_COMPILE_AFTER_SECONDS,
    ModuleObjective,
    check_module_contracts,
    data_from_loader,
    parameter_mask,
)
from toymodels.objectives.posterior import default_nbeta, make_objective, resolve_mask

__all__ = [
    "Objective", "PotentialObjective", "ModuleObjective", "CompiledLossAndGrad", "parameter_mask",
    "default_nbeta", "make_objective", "resolve_mask", "check_module_contracts",
    "data_from_loader", "AUTO_COMPILE_AFTER_SECONDS",
]
