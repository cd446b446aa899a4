"""Deep-linear-network cases for ``toymodels validate`` (Aoyagi & Watanabe 2005; Aoyagi 2024): a few
that run in seconds.

* **Morse–Bott DLN, SGLD.** Widths (3, 2, 4) at a rank-2 truth: the bottleneck is fully used, so
  ``P(w)`` is a submersion onto the rank-2 matrices near the truth and ``K`` is Morse–Bott with
  ``λ = r(H_1 + H_3 − r)/2 = 5`` (Aoyagi's formula agrees). The exact finite-temperature target is
  the localized quadratic value ``½ Σ_i t a_i/(t a_i + γ)`` over the Gauss–Newton eigenvalues
  ``a_i`` at the truth (:func:`theory.regular.localized_llc`); at ``nβ = 10^4`` the quartic
  corrections to it are ``O(1/nβ)``. Sampled through the generic path,
  ``estimate_llc(dln_potential(...), init=w*)``.
* **The same with MALA** (:class:`toymodels.sampling.kernels.MALA`): the Metropolis test removes the
  step-size bias whatever ε the adaptation arrives at.
* **Reduced-rank regression at rank 0** (devinterp's cases (M, H, N) = (4, 3, 8) and (3, 8, 4),
  both m = 1, λ = 6): no exact finite-temperature value is known, so the estimate is compared
  with λ itself at 5% (devinterp accepts 40%) and no z-test is applied. MALA from ``w* = 0``.

No case sets a step size or a schedule: ``step_size="auto"`` (for SGLD the calibration's bias
rule, for MALA dual averaging to acceptance 0.8) and the calibration's schedule for an MCSE of 1%
(toymodels.validation.case, :func:`calibrated_run`). A case gives the physics (widths,
truth, nβ, γ), the sampler and the number of chains.
"""

from __future__ import annotations

import math

import torch

from toymodels.validation.case import ValidationCase, calibrated_run
from theory.dln import learning_coefficient
from theory.regular import localized_llc
from toymodels.models.dln import (
    SufficientStatistics,
    dln_potential,
    gauss_newton_eigenvalues,
    input_covariance,
    teacher_from_product,
)

__all__ = ["cases"]

_MB_WIDTHS = (3, 2, 4)
_MB_NBETA = 1e4
_MB_GAMMA = 1.0


def _morse_bott_point():
    g = torch.Generator().manual_seed(7)
    U, _ = torch.linalg.qr(torch.randn(4, 2, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(3, 2, generator=g, dtype=torch.float64))
    product = (U * torch.tensor([1.0, 0.5], dtype=torch.float64)) @ V.T
    point = teacher_from_product(product, _MB_WIDTHS, seed=3)
    stats = SufficientStatistics.population(point.product, input_covariance(3), 1.0)
    return point, stats


def _morse_bott_target() -> float:
    point, stats = _morse_bott_point()
    evals = gauss_newton_eigenvalues(_MB_WIDTHS, point.flat, stats.input_moment)
    positive = [float(a) for a in evals if a > 1e-9 * float(evals[0])]
    return localized_llc(positive, nbeta=_MB_NBETA, localization=_MB_GAMMA)


def _morse_bott(sampler: str, scale: float) -> ValidationCase:
    point, stats = _morse_bott_point()
    run, settings = calibrated_run(dln_potential(_MB_WIDTHS, stats), point.flat, nbeta=_MB_NBETA,
                                   gamma=_MB_GAMMA, num_chains=300, scale=scale, seed=0,
                                   sampler=sampler)
    lam, m = learning_coefficient(_MB_WIDTHS, 2)
    return ValidationCase(name=f"DLN (3,2,4) r=2 Morse-Bott, {sampler.upper()} [auto]",
                          group="deep linear network", llc=lam, multiplicity=m,
                          target=_morse_bott_target, run=run, settings=settings)


def _rrr_case(widths, scale: float) -> ValidationCase:
    nbeta = 1e4 / math.log(1e4)
    M, H, N = widths
    lam, m = learning_coefficient(widths, 0)
    stats = SufficientStatistics.population(torch.zeros(N, M, dtype=torch.float64),
                                            input_covariance(M), 1.0)
    run, settings = calibrated_run(dln_potential(widths, stats),
                                   torch.zeros(M * H + H * N, dtype=torch.float64), nbeta=nbeta,
                                   gamma=1.0, num_chains=64, scale=scale, seed=0, sampler="mala")
    return ValidationCase(name=f"RRR {widths} rank 0 (devinterp) [auto]",
                          group="deep linear network", llc=lam, multiplicity=m,
                          target=lambda: float(lam), run=run, settings=settings, rel_tol=0.05,
                          z_tol=math.inf)


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """The DLN validation cases; ``scale`` multiplies chains and draws (smaller is faster)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return [_morse_bott("sgld", scale), _morse_bott("mala", scale),
            _rrr_case((4, 3, 8), scale), _rrr_case((3, 8, 4), scale)]
