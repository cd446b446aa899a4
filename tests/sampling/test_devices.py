"""The sampler on every device present: every tensor made on the objective's device.

Runs on the CPU always and on CUDA when there is one (the ``device`` fixture in conftest.py).
Exact invariants: the SGLD step given its noise, the restricted potential, MALA's exact law on a
Gaussian (finite-temperature λ from theory.regular), the tempering ladder's bookkeeping.
"""

import pytest
import torch

from theory.regular import localized_llc
from toymodels import (
    PotentialObjective,
    SGLDHyperparameters,
    estimate_llc,
    parallel_tempering,
    restricted_potential,
    sgld_step,
)
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential

F64 = torch.float64


def test_sgld_step_is_the_euler_maruyama_formula_on_device(device):
    g = torch.Generator().manual_seed(0)
    w, grad, noise = (torch.randn(4, 3, generator=g, dtype=F64).to(device) for _ in range(3))
    center = torch.randn(3, generator=g, dtype=F64).to(device)
    hyper = SGLDHyperparameters(step_size=0.01, nbeta=10.0, localization=2.0)
    new, info = sgld_step(w, grad, noise, center, hyper, mask=torch.tensor([True, False, True]))
    expected = w - 0.005 * (10.0 * grad + 2.0 * (w - center)) + 0.1 * noise
    expected[:, 1] = w[:, 1]
    assert new.device.type == device.type
    torch.testing.assert_close(new, expected, rtol=0, atol=1e-15)
    assert bool(info.finite.all())


def test_restricted_potential_on_device(device):
    potential = normal_crossing_potential([1, 2, 1])
    init = torch.tensor([0.3, -0.7, 1.1], dtype=F64, device=device)
    sub, init_sub = restricted_potential(potential, init, torch.tensor([True, False, True]))
    v = torch.tensor([[0.5, 2.0]], dtype=F64, device=device)
    full = torch.tensor([[0.5, -0.7, 2.0]], dtype=F64, device=device)
    torch.testing.assert_close(sub(v), potential(full), rtol=1e-15, atol=0)
    assert init_sub.device.type == device.type


def test_mala_hits_the_exact_finite_temperature_llc_on_device(device):
    # MALA's Metropolis test makes the law exact at any step size: the target is the localized
    # Gaussian's λ(nβ, γ) = ½ Σ nβ a_i / (nβ a_i + γ) with no step-size bias
    eigenvalues = [0.5, 2.0, 8.0]
    matrix = torch.diag(torch.tensor(eigenvalues, dtype=F64, device=device))
    result = estimate_llc(quadratic_potential(matrix), init=torch.zeros(3, dtype=F64, device=device),
                          nbeta=100.0, localization=2.0, step_size=1.0 / 800, sampler="mala",
                          num_chains=200, num_draws=300, num_burnin_steps=200, seed=1, progress=False)
    exact = localized_llc(eigenvalues, nbeta=100.0, localization=2.0)
    assert abs(result.llc_mean - exact) < 4 * result.mcse, (result.llc_mean, exact, result.mcse)
    assert result.trace.final_params.device.type == device.type


def test_mala_step_adaptation_on_device(device):
    objective = PotentialObjective(quadratic_potential(torch.eye(2, dtype=F64, device=device)),
                                   torch.zeros(2, dtype=F64, device=device))
    result = estimate_llc(objective, nbeta=50.0, step_size=1.0, sampler="mala", num_chains=32,
                          num_draws=100, num_burnin_steps=300, progress=False,
                          sampler_options=dict(adapt_steps=300, target_accept=0.7))
    # adapted from ε = 1 (acceptance near 0) towards 70 %: far smaller, and accepted often
    assert result.step_size < 0.5
    assert 0.5 < float(result.trace.records["acceptance"].mean()) < 0.9


def test_smoke_parallel_tempering_on_device(device):
    objective = PotentialObjective(normal_crossing_potential([1, 1]), torch.zeros(2, dtype=F64, device=device))
    init = torch.zeros(3, 4, 2, dtype=F64, device=device)
    out = parallel_tempering(objective, [1.0, 10.0, 100.0, 1000.0], init, num_steps=60, num_burnin_steps=40,
                             record_every=10, seed=0)
    assert out.draws.shape == (6, 3, 4, 2) and out.draws.device.type == device.type
    assert out.acceptance.shape == (4,) and out.swap_rate.shape == (3,)
    assert torch.isfinite(out.loss).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_a_network_on_cuda_samples_on_cuda():
    model = torch.nn.Linear(3, 1).double().cuda()
    x = torch.randn(64, 3, dtype=F64, device="cuda")
    y = x @ torch.tensor([[1.0], [2.0], [-1.0]], dtype=F64, device="cuda")
    result = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, step_size=1e-4,
                          num_chains=4, num_draws=20, batch_size=16, progress=False)
    assert result.trace.final_params.device.type == "cuda"
