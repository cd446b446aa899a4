"""Normal crossings and a localized quadratic (Watanabe 2009, ch. 2–3) against their exact targets.

Two groups with the same physics: ``calibrated`` (``step_size="auto"`` chooses everything but the
number of chains: :func:`toymodels.validation.case.calibrated_run`) and ``foundation-manual``
(hand-tuned step sizes and schedules, kept as a reference for the calibrated rule; run only when
asked for). Each estimate is compared with the exact finite-temperature value for the sampler's own
posterior (same nβ, same localization): ``theory.normal_crossing.finite_temperature_llc`` and
``theory.regular.localized_llc``.
"""

from __future__ import annotations

import torch

from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from theory.regular import localized_llc, regular_learning_coefficient
from toymodels.estimators.llc import LLCResult, estimate_llc
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential
from toymodels.validation.case import ValidationCase, calibrated_run

__all__ = ["NORMAL_CROSSING_CASES", "QUADRATIC_CASE", "MANUAL_SETTINGS", "calibrated_cases",
           "manual_cases", "NUM_CHAINS"]

NUM_CHAINS = 2000  #: many chains, few steps: the batched step costs little more for more chains

#: The physics of each normal-crossing case: name, k, h, nβ, γ. The calibrated group
#: (:func:`calibrated_cases`) adds nothing but the number of chains; the hand-tuned
#: group below adds the sampler settings in MANUAL_SETTINGS.
NORMAL_CROSSING_CASES = [
    ("w^2", [1], None, 1000.0, 1.0),
    ("w^4", [2], None, 1000.0, 1.0),
    ("|w| w^2 (h=1)", [1], [1], 1000.0, 1.0),
    ("x^2 y^2 (m=2)", [1, 1], None, 100.0, 4.0),
    ("x^2 y^4", [1, 2], None, 1000.0, 1.0),
    ("x^4 y^4 (m=2)", [2, 2], None, 100.0, 4.0),
    ("|x| x^2 y^2 (h=(1,0))", [1, 1], [1, 0], 100.0, 4.0),
]

# Hand-tuned settings (group "foundation-manual"), kept as a reference for the calibrated rule:
# step size, chains, burn-in, draws, steps between draws. The 2-D crossings with m = 2 mix
# slowly along their valleys: the number of steps needed grows with the stiffness t/γ²
# (transverse curvature t·x² against the valley's γ), so they run at a moderate t/γ²; their
# targets are the exact finite-t values, far below λ there.
MANUAL_SETTINGS = {
    "w^2": (1e-5, 2000, 1000, 2000, 1),
    "w^4": (2e-4, 2000, 1000, 2000, 1),
    "|w| w^2 (h=1)": (1e-5, 2000, 1000, 2000, 1),
    "x^2 y^2 (m=2)": (1e-4, 2000, 6000, 1000, 6),
    "x^2 y^4": (1e-4, 2000, 9000, 1000, 9),
    "x^4 y^4 (m=2)": (3e-4, 2000, 6000, 1000, 6),
    "|x| x^2 y^2 (h=(1,0))": (1e-4, 2000, 6000, 1000, 6),
}

#: the localized quadratic: eigenvalues, nβ, γ
QUADRATIC_CASE = ([0.5, 1.0, 2.0, 4.0, 8.0], 200.0, 5.0)


def _normal_crossing_case(name, k, h, nbeta, gamma, eps, chains, burn, draws, bw, scale=1.0):
    lam, m = learning_coefficient(k, h)
    potential = normal_crossing_potential(k, h)
    dim = potential.dim
    chains = max(2, int(chains * scale))
    draws = max(20, int(draws * scale))
    burn = int(burn * min(1.0, scale))
    settings = dict(nbeta=nbeta, localization=gamma, step_size=eps, num_chains=chains,
                    num_burnin_steps=burn, num_draws=draws, num_steps_bw_draws=bw)

    def run() -> LLCResult:
        return estimate_llc(potential, init=torch.zeros(dim, dtype=torch.float64), seed=0,
                            progress=False, **settings)

    def target() -> float:
        return finite_temperature_llc(k, h, nbeta=nbeta, localization=gamma, box=None)

    return ValidationCase(name=f"normal crossing {name}", group="foundation-manual", llc=lam,
                          multiplicity=m, target=target, run=run, settings=settings)


def _quadratic_case(scale=1.0):
    eigenvalues, nbeta, gamma = QUADRATIC_CASE
    a = torch.diag(torch.tensor(eigenvalues, dtype=torch.float64))
    settings = dict(nbeta=nbeta, localization=gamma, step_size=2e-5,
                    num_chains=max(2, int(1000 * scale)), num_burnin_steps=int(2000 * min(1.0, scale)),
                    num_draws=max(20, int(1000 * scale)), num_steps_bw_draws=3)

    def run() -> LLCResult:
        return estimate_llc(quadratic_potential(a), init=torch.zeros(5, dtype=torch.float64),
                            seed=0, progress=False, **settings)

    return ValidationCase(
        name="localized quadratic d=5", group="foundation-manual", llc=regular_learning_coefficient(5)[0],
        multiplicity=1, run=run, settings=settings,
        target=lambda: localized_llc(eigenvalues, nbeta=nbeta, localization=gamma),
    )


def manual_cases(scale: float = 1.0) -> list[ValidationCase]:
    cases = [_normal_crossing_case(*row, *MANUAL_SETTINGS[row[0]], scale=scale)
             for row in NORMAL_CROSSING_CASES]
    cases.append(_quadratic_case(scale))
    return cases


def calibrated_cases(scale: float = 1.0) -> list[ValidationCase]:
    """The foundation cases with calibrated step size and schedule (``scale`` shrinks chains)."""
    out = []
    for i, (name, k, h, nbeta, gamma) in enumerate(NORMAL_CROSSING_CASES):
        lam, m = learning_coefficient(k, h)
        pot = normal_crossing_potential(k, h)
        run, settings = calibrated_run(pot, torch.zeros(pot.dim, dtype=torch.float64), nbeta=nbeta,
                                       gamma=gamma, num_chains=NUM_CHAINS, scale=scale, seed=10 * i)

        def target(k=k, h=h, nbeta=nbeta, gamma=gamma) -> float:
            return finite_temperature_llc(k, h, nbeta=nbeta, localization=gamma, box=None)

        out.append(ValidationCase(name=f"normal crossing {name} [auto]", group="calibrated", llc=lam,
                                  multiplicity=m, target=target, run=run, settings=settings))
    eigenvalues, nbeta, gamma = QUADRATIC_CASE
    pot = quadratic_potential(torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)))
    run, settings = calibrated_run(pot, torch.zeros(5, dtype=torch.float64), nbeta=nbeta, gamma=gamma,
                                   num_chains=NUM_CHAINS, scale=scale, seed=100)
    out.append(ValidationCase(
        name="localized quadratic d=5 [auto]", group="calibrated",
        llc=regular_learning_coefficient(5)[0], multiplicity=1, run=run, settings=settings,
        target=lambda: localized_llc(eigenvalues, nbeta=nbeta, localization=gamma)))
    return out
