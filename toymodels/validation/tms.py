"""`toymodels validate` cases for the toy model of superposition (Chen et al. 2023, arXiv:2310.06301): λ̂ at the 5-gon, 5⁺ and 6-gon (c = 6) on the exact population loss.

Each k-gon is a Morse–Bott minimum where the loss is analytic (theory.tms.classify_critical_point),
so λ = rank(H)/2, m = 1 (theory.tms.kgon_learning_coefficient). The finite-temperature target is
the quadratic one, ½ Σ t a_i/(t a_i + γ) over the exact Hessian eigenvalues a_i
(theory.regular.localized_llc): the loss is quadratic on the posterior's scale at nβ = 1e6 (the
exact TMS loss and its quadratic model give the same estimate to 1e-4 under identical noise, see
experiments/tms_kgon_llc.py), and the exactly flat directions — the rotation orbit and the dead
column of the 5-gon — contribute 0 as long as the chains stay in the flat region, which γ = 1000
ensures (the dead column's W_d has sd 1/√γ ≈ 0.03, while the region extends to |W_d| ≈ 0.24).
The step size and the schedule are not set per case: ``step_size="auto"`` (:func:`toymodels.calibrate`,
the largest ε whose fitted step-size bias is within 1%) and the calibration's schedule for an MCSE
of 1% (toymodels.validation.case, :func:`calibrated_run`). A case gives only the physics
(nβ, γ) and the number of chains.
"""

from __future__ import annotations

import numpy as np
import torch

from toymodels.validation.case import ValidationCase, calibrated_run
from theory.regular import localized_llc
from theory.tms import (
    flatten_params,
    kgon_critical_point,
    kgon_learning_coefficient,
    population_loss_hessian,
)
from toymodels.models.tms import population_loss

__all__ = ["cases"]

_C = 6
_POINTS = [(5, 0), (5, 1), (6, 0)]  # (k, σ) at c = 6
_NBETA, _GAMMA, _CHAINS = 1e6, 1000.0, 200


def _kgon_case(k: int, sigma: int, scale: float) -> ValidationCase:
    W, b = kgon_critical_point(k, _C, sigma)
    w_star = torch.tensor(flatten_params(W, b))
    lam = kgon_learning_coefficient(k, _C, sigma)
    label = f"{k}" + "+" * sigma
    run, settings = calibrated_run(population_loss, w_star, nbeta=_NBETA, gamma=_GAMMA,
                                   num_chains=_CHAINS, scale=scale, seed=0)

    def target() -> float:
        eig = np.clip(np.linalg.eigvalsh(population_loss_hessian(W, b)), 0, None)
        return localized_llc(eig, nbeta=_NBETA, localization=_GAMMA)

    return ValidationCase(name=f"TMS {label}-gon c=6 [auto]", group="tms", llc=lam,
                          multiplicity=1, target=target, run=run,
                          settings=dict(settings, point=label, c=_C))


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """λ̂ at the 5-gon, 5⁺-gon and 6-gon of the c = 6 TMS against the quadratic target."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}")
    return [_kgon_case(k, sigma, scale) for k, sigma in _POINTS]
