"""The SGLD step as a pure function, and the stationary law of the chain driver."""

import math

import pytest
import torch

from toymodels import SGLDHyperparameters, chain_diagnostics, run_sgld, sgld_hyperparameters_from_scales, sgld_step
from toymodels.objectives import PotentialObjective
from toymodels.models.potentials import quadratic_potential


def test_zero_gradient_and_zero_noise_do_not_move():
    params = torch.randn(7, 3, dtype=torch.float64)
    hyper = SGLDHyperparameters(step_size=0.1, nbeta=10.0, localization=0.0)
    new, info = sgld_step(params, torch.zeros_like(params), torch.zeros_like(params), torch.zeros(3), hyper)
    assert torch.equal(new, params)
    assert info.finite.all()
    assert torch.equal(info.drift_norm, torch.zeros(7, dtype=torch.float64))


def test_step_formula():
    """w ← w − (ε/2)[nβ g + γ(w − w*)] + √ε ξ, element by element."""
    torch.manual_seed(0)
    w, g, xi, c = (torch.randn(4, 5, dtype=torch.float64) for _ in range(4))
    c = c[0]
    eps, nbeta, gamma = 1e-2, 30.0, 2.0
    new, info = sgld_step(w, g, xi, c, SGLDHyperparameters(eps, nbeta, gamma))
    expected = w - eps / 2 * (nbeta * g + gamma * (w - c)) + math.sqrt(eps) * xi
    torch.testing.assert_close(new, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(info.distance, torch.linalg.vector_norm(w - c, dim=1))
    torch.testing.assert_close(info.grad_norm, torch.linalg.vector_norm(g, dim=1))


def test_mask_freezes_other_coordinates():
    w = torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    new, _ = sgld_step(w, torch.randn_like(w), torch.randn_like(w), torch.zeros(4), SGLDHyperparameters(0.1, 1.0), mask=mask)
    torch.testing.assert_close(new[:, [1, 3]], w[:, [1, 3]], rtol=0, atol=0)
    assert not torch.equal(new[:, [0, 2]], w[:, [0, 2]])


def test_batched_step_equals_loop_of_single_steps():
    torch.manual_seed(1)
    w, g, xi = (torch.randn(6, 3, dtype=torch.float64) for _ in range(3))
    c = torch.randn(3, dtype=torch.float64)
    hyper = SGLDHyperparameters(1e-3, 50.0, 1.5)
    batched, info = sgld_step(w, g, xi, c, hyper)
    for i in range(6):
        single, single_info = sgld_step(w[i : i + 1], g[i : i + 1], xi[i : i + 1], c, hyper)
        torch.testing.assert_close(batched[i], single[0], rtol=0, atol=0)
        torch.testing.assert_close(info.grad_norm[i], single_info.grad_norm[0], rtol=0, atol=0)


def test_non_finite_is_flagged_per_chain():
    w = torch.zeros(3, 2, dtype=torch.float64)
    g = torch.zeros_like(w)
    g[1, 0] = float("inf")
    _, info = sgld_step(w, g, torch.zeros_like(w), torch.zeros(2), SGLDHyperparameters(1e-2, 1.0), loss=torch.zeros(3, dtype=torch.float64))
    assert info.finite.tolist() == [True, False, True]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(step_size=0.0, nbeta=1.0), "step_size"),
        (dict(step_size=-1e-3, nbeta=1.0), "step_size"),
        (dict(step_size=float("nan"), nbeta=1.0), "step_size"),
        (dict(step_size=1e-3, nbeta=0.0), "nbeta"),
        (dict(step_size=1e-3, nbeta=1.0, localization=-1.0), "localization"),
    ],
)
def test_hyperparameters_validate(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGLDHyperparameters(**kwargs)


def test_scale_parametrisation_round_trip():
    hyper = SGLDHyperparameters(step_size=3e-4, nbeta=66.7, localization=6.67)
    back = sgld_hyperparameters_from_scales(**hyper.scales)
    assert back.step_size == pytest.approx(3e-4)
    assert back.nbeta == pytest.approx(66.7)
    assert back.localization == pytest.approx(6.67)


def test_stationary_law_on_a_gaussian_matches_the_exact_discrete_chain():
    """SGLD on ½ a w² is an AR(1) chain; its exact stationary variance is 1/(t a (1 − ε t a/4)).

    With γ = 0, w ← (1 − εta/2) w + √ε ξ, whose stationary variance is
    ε / (1 − (1 − εta/2)²) = 1 / (ta (1 − εta/4)). We check mean and variance within 4 MCSE,
    with a step large enough that the discretisation bias (here 5%) is far outside the error
    bar — so the test can tell the exact discrete law from the continuous one.
    """
    a = torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    t, eps = 10.0, 0.005  # ε t a/4 = 0.0125 and 0.05
    obj = PotentialObjective(quadratic_potential(a), torch.zeros(2, dtype=torch.float64))
    trace = run_sgld(
        obj, hyper=SGLDHyperparameters(eps, t, 0.0), num_chains=400, num_draws=400,
        num_burnin_steps=300, num_steps_bw_draws=5, seed=3,
        observables={"w": lambda w: w, "w2": lambda w: w * w},
    )
    for i, ai in enumerate([1.0, 4.0]):
        exact_var = 1 / (t * ai * (1 - eps * t * ai / 4))
        continuous_var = 1 / (t * ai)
        w = trace.observables["w"][..., i]
        w2 = trace.observables["w2"][..., i]
        assert abs(w.mean()) <= 4 * chain_diagnostics(w)["mcse"]
        mcse = chain_diagnostics(w2)["mcse"]
        assert abs(w2.mean() - exact_var) <= 4 * mcse
        if ai == 4.0:  # the 5% bias is resolved: the continuous variance is rejected
            assert abs(w2.mean() - continuous_var) > 4 * mcse
