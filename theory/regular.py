"""Regular (quadratic) potentials: the exact localized LLC target.

For ``K(w) = ½ (w − w*)ᵀ A (w − w*)`` with ``A`` positive semi-definite (eigenvalues ``a_i``), the
localized tempered posterior ``∝ exp(−t K(w) − γ/2 ||w − w*||²)`` is Gaussian with covariance
``(tA + γI)⁻¹``, so ``E[tK] = (t/2) tr(A (tA + γI)⁻¹)`` exactly (Gaussian integral). At ``γ = 0``
it is
``rank(A)/2``, the learning coefficient of a regular model (Watanabe 2009, §1.4; λ = d/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

__all__ = ["localized_llc", "regular_learning_coefficient"]


def localized_llc(eigenvalues: Sequence[float], *, nbeta: float, localization: float) -> float:
    """``E[tK] = ½ Σ_i t a_i / (t a_i + γ)`` for ``K = ½ wᵀAw`` with eigenvalues ``a_i ≥ 0``.

    The exact target of the LLC estimator ``nβ (E[K] − K(w*))`` at ``t = nβ`` and localization
    ``γ`` (the localized Gaussian integral). Zero eigenvalues contribute 0 (with
    ``γ > 0``; at ``γ = 0`` a zero eigenvalue is a flat, unnormalisable direction that also
    contributes 0 to ``E[K]``).
    """
    a = np.asarray(eigenvalues, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D list, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("eigenvalues must be finite and ≥ 0 (A positive semi-definite)")
    if not (math.isfinite(nbeta) and nbeta > 0):
        raise ValueError(f"nbeta must be a finite number > 0, got {nbeta!r}")
    if not (math.isfinite(localization) and localization >= 0):
        raise ValueError(f"localization must be a finite number ≥ 0, got {localization!r}")
    ta = nbeta * a
    terms = np.divide(ta, ta + localization, out=np.zeros_like(ta), where=ta > 0)
    return float(0.5 * terms.sum())


def regular_learning_coefficient(rank: int) -> tuple[Fraction, int]:
    """λ = rank/2, m = 1 for a quadratic potential whose Hessian has the given rank.

    (Watanabe 2009, Remark 1.15: a regular model of dimension d has λ = d/2; flat directions of a
    Morse–Bott critical set contribute 0, so λ = codimension/2.)
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be an integer ≥ 0, got {rank!r}")
    return Fraction(rank, 2), 1
