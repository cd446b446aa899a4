"""toymodels.estimators.patterning: the minimum-norm intervention dh = J⁺dμ, its mixture
constraints and its errors; and the meeting with theory: on a Gaussian posterior
(theory.susceptibility) the predicted change J dh is the exact first-order change of the posterior
mean under the reweighted data, with J exact and with J estimated by SGLD (within its MCSE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theory.susceptibility import (
    gaussian_posterior,
    perturbed_gaussian_posterior,
    posterior_mean_derivative,
    quadratic_form_mean,
)
from toymodels import susceptibilities
from toymodels.estimators.patterning import minimum_norm_intervention, repeated_patterning
from toymodels.models.potentials import quadratic_potential

Z_TOL = 3.0  # Monte-Carlo standard errors


def _gaussian_problem():
    """A localised Gaussian posterior, two observables (linear, quadratic), three data sources
    ``ΔL_b = g_bᵀw + ½ wᵀB_b w`` (a shifted teacher, a reweighted curvature, both)."""
    rng = np.random.default_rng(4)
    d = 3
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = q @ np.diag([0.5, 1.0, 2.0]) @ q.T
    A = (A + A.T) / 2
    m = rng.standard_normal(d)
    sources = []
    for _ in range(3):
        B = rng.standard_normal((d, d))
        sources.append(dict(g=rng.standard_normal(d), B=0.3 * (B + B.T) / 2))
    c = rng.standard_normal(d)
    C = rng.standard_normal((d, d))
    observables = [dict(c=c, C=None), dict(c=None, C=(C + C.T) / 2)]
    physics = dict(nbeta=10.0, localization=1.0, center=m + 0.2 * rng.standard_normal(d))
    return A, m, sources, observables, physics


def _exact_jacobian(A, m, sources, observables, physics):
    return np.array([[posterior_mean_derivative(A, m, s["g"], s["B"], o["c"], C=o["C"], **physics)
                      for s in sources] for o in observables])


def _mean_under_mixture(A, m, sources, observables, physics, dh, eps):
    """Exact posterior means of the observables for the loss ``L + eps Σ_b dh_b ΔL_b``."""
    g = sum(h * s["g"] for h, s in zip(dh, sources))
    B = sum(h * s["B"] for h, s in zip(dh, sources))
    mu, sigma = perturbed_gaussian_posterior(A, m, g, B, eps, **physics)
    return np.array([quadratic_form_mean(mu, sigma, c=o["c"], C=o["C"]) for o in observables])


def test_gaussian_prediction_is_the_exact_first_order_change():
    A, m, sources, observables, physics = _gaussian_problem()
    J = _exact_jacobian(A, m, sources, observables, physics)
    target = np.array([0.3, -0.2])
    step = minimum_norm_intervention(J, target, method="unconstrained")
    np.testing.assert_allclose(step.predicted_change, target, rtol=1e-10, atol=1e-12)
    # minimum norm: dh lies in the row space of J (orthogonal to its null space)
    null = np.linalg.svd(J)[2][-1]
    assert abs(step.dh @ null) < 1e-10 * np.linalg.norm(step.dh)
    # the exact change of the posterior means along dh, by a central difference in the step
    eps = 1e-4
    plus = _mean_under_mixture(A, m, sources, observables, physics, step.dh, eps)
    minus = _mean_under_mixture(A, m, sources, observables, physics, step.dh, -eps)
    np.testing.assert_allclose((plus - minus) / (2 * eps), step.predicted_change, rtol=1e-6)
    # a finite step s·dh misses s·dμ by a second-order amount: halving s quarters the miss
    mu0, s0 = gaussian_posterior(A, m, **physics)
    base = np.array([quadratic_form_mean(mu0, s0, c=o["c"], C=o["C"]) for o in observables])
    miss = [np.abs(_mean_under_mixture(A, m, sources, observables, physics, step.dh, s) - base
                   - s * target).max() for s in (0.02, 0.01)]
    assert miss[1] / miss[0] == pytest.approx(0.25, abs=0.02)


def test_gaussian_prediction_from_sgld_susceptibilities_within_mcse():
    """J estimated by SGLD (toymodels.susceptibilities), dh = Ĵ⁺dμ, and the predicted change
    Ĵ dh (its MCSE from the combined perturbation Σ_b dh_b ΔL_b on the same draws) against the
    exact first-order change J dh of theory.susceptibility."""
    A, m, sources, observables, physics = _gaussian_problem()
    J = _exact_jacobian(A, m, sources, observables, physics)
    t, gamma, center = physics["nbeta"], physics["localization"], physics["center"]
    mu, sigma = gaussian_posterior(A, m, **physics)
    rng = np.random.default_rng(0)
    chains = 1000
    f64 = torch.float64
    obs = {"lin": lambda w: w @ torch.tensor(observables[0]["c"], dtype=f64),
           "quad": lambda w: 0.5 * w @ torch.tensor(observables[1]["C"], dtype=f64) @ w}
    perts = {f"q{b}": (lambda w, s=s: w @ torch.tensor(s["g"], dtype=f64)
                       + 0.5 * w @ torch.tensor(s["B"], dtype=f64) @ w)
             for b, s in enumerate(sources)}
    result = susceptibilities(
        quadratic_potential(torch.tensor(A), torch.tensor(m)), init=torch.tensor(center),
        nbeta=t, localization=gamma, step_size=1e-3, num_chains=chains, num_draws=600,
        num_steps_bw_draws=2, chain_init=torch.tensor(rng.multivariate_normal(mu, sigma, chains)),
        seed=5, progress=False, observables=obs, perturbations=perts)
    target = np.array([0.3, -0.2])
    step = minimum_norm_intervention(result, target, method="unconstrained")
    assert step.source_names == ["q0", "q1", "q2"]
    combined = result.combine(step.dh, names=["patterned"])
    predicted, mcse = combined.jacobian[:, 0], combined.jacobian_mcse[:, 0]
    np.testing.assert_allclose(predicted, step.predicted_change, rtol=1e-8)
    exact = J @ step.dh
    assert np.all(np.abs(predicted - exact) < Z_TOL * mcse), (predicted, exact, mcse)
    assert np.all(mcse < 0.2 * np.abs(target))  # the check has power


def test_constrained_equals_pinv_when_feasible_and_is_the_closest_mixture_otherwise():
    J = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0]])
    target = np.array([0.2, 0.3])
    free = minimum_norm_intervention(J, target, method="unconstrained")
    assert np.all(free.dh >= 0) and free.dh.sum() <= 1
    constrained = minimum_norm_intervention(J, target)
    np.testing.assert_allclose(constrained.dh, free.dh, atol=1e-6)
    # a target that needs a negative weight: the closest non-negative mixture, by brute force
    target = np.array([1.0, -1.0])
    with pytest.raises(ValueError, match="not attainable"):
        minimum_norm_intervention(np.eye(2), target)
    best = minimum_norm_intervention(np.eye(2), target, strict=False)
    np.testing.assert_allclose(best.dh, [1.0, 0.0], atol=1e-8)
    assert best.residual == pytest.approx(1 / np.sqrt(2), rel=1e-6)
    # the sum constraint binds: the projection of t onto {x ≥ -h0, Σx ≤ 0} from a full mixture
    full = minimum_norm_intervention(np.eye(2), [0.1, 0.3], current=[0.5, 0.5], strict=False)
    np.testing.assert_allclose(full.dh, [-0.1, 0.1], atol=1e-5)
    assert full.base_weight == pytest.approx(0.0, abs=1e-6)
    assert np.all(full.weights >= -1e-9)


def test_scale_shortens_the_minimum_norm_step_to_stay_a_mixture():
    step = minimum_norm_intervention(np.eye(2), [0.8, 0.4], method="scale", strict=False)
    assert step.scale == pytest.approx(1 / 1.2)
    np.testing.assert_allclose(step.dh, [2 / 3, 1 / 3])
    assert step.base_weight == pytest.approx(0.0)
    with pytest.raises(ValueError, match="leaves the simplex"):
        minimum_norm_intervention(np.eye(2), [0.5, -0.1], method="scale")
    # from inside the simplex the same direction is allowed, shortened where a weight hits 0
    inside = minimum_norm_intervention(np.eye(2), [0.5, -0.4], method="scale", current=[0.1, 0.2],
                                       strict=False)
    assert inside.scale == pytest.approx(0.5)
    np.testing.assert_allclose(inside.weights, [0.35, 0.0], atol=1e-12)


def test_repeated_patterning_walks_a_curved_response():
    """J(h) = diag(1 + h): the response grows along the way; twenty re-estimated steps land
    nearer the target than one step (the exact change is ∫ J dh)."""
    def jacobian_at(h):
        h = np.zeros(2) if h is None else h
        return np.diag(1.0 + h)

    def exact_change(h):  # ∫_0^h (1 + s) ds per coordinate
        return h + h ** 2 / 2

    target = np.array([0.4, 0.2])
    one = minimum_norm_intervention(jacobian_at(None), target)
    many = repeated_patterning(jacobian_at, target, rounds=20)
    assert len(many.history) == 20
    np.testing.assert_allclose(many.predicted_change, target, rtol=1e-6)
    assert np.abs(exact_change(many.weights) - target).max() < \
        0.1 * np.abs(exact_change(one.weights) - target).max()


def test_bad_input_fails_with_advice():
    with pytest.raises(ValueError, match="non-empty"):
        minimum_norm_intervention(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match="rank 0"):
        minimum_norm_intervention(np.zeros((2, 3)), [1.0, 0.0])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        minimum_norm_intervention(np.eye(2), [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        minimum_norm_intervention(np.array([[np.nan, 1.0]]), [1.0])
    with pytest.raises(ValueError, match="current weights"):
        minimum_norm_intervention(np.eye(2), [0.1, 0.1], current=[0.7, 0.7])
    with pytest.raises(ValueError, match="method"):
        minimum_norm_intervention(np.eye(2), [0.1, 0.1], method="lstsq")
    with pytest.raises(ValueError, match="not attainable by a first-order response"):
        # singular J: the target is outside its range
        minimum_norm_intervention(np.array([[1.0, 1.0], [1.0, 1.0]]), [1.0, -1.0],
                                  method="unconstrained")
    with pytest.raises(ValueError, match="rounds"):
        repeated_patterning(lambda h: np.eye(2), [0.1, 0.1], rounds=0)
