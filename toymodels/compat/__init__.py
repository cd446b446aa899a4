"""Compatibility layers: other libraries' calls run on this suite's vectorized estimators.

:mod:`toymodels.compat.devinterp` takes devinterp 1.x's ``estimate_learning_coeff_with_summary``
arguments and returns its result keys (see ``docs/migrating_from_devinterp.md``). The layer sits
above the estimators and imports nothing from the other library at import time.
"""

from toymodels.compat.devinterp import estimate_learning_coeff, estimate_learning_coeff_with_summary

__all__ = ["estimate_learning_coeff", "estimate_learning_coeff_with_summary"]
