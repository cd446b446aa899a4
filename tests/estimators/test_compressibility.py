"""toymodels.estimators.compressibility: volume exponents against theory.volumes, compression
schemes and their critical strengths, code lengths, and the errors for bad input."""

import math

import numpy as np
import pytest
import torch

from theory.normal_crossing import learning_coefficient
from theory.regular import localized_llc
from theory.volumes import normal_crossing_volume, quadratic_volume_gaussian
from toymodels.estimators.compressibility import (
    compress,
    compression_code_length,
    critical_strength,
    fit_volume_exponent,
    log_uniform_sampler,
    step_for_bits,
    volume_code_length,
    volume_exponent_from_llcs,
    volume_exponent_mc,
    weight_matrices,
)
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential


@pytest.mark.parametrize("k,h", [([1, 1], None), ([1, 2], None), ([1, 1], [1, 1]), ([1, 1, 1], None)])
def test_importance_sampled_volumes_match_the_exact_volume(k, h):
    sample = log_uniform_sampler(len(k), exponents=h)
    w, log_w = sample(200_000, torch.Generator().manual_seed(0))
    K = normal_crossing_potential(k)(w).numpy()
    weights = np.exp(log_w.numpy())
    for eps in (1e-30, 1e-8):
        hit = weights * (K < eps)
        est, se = hit.mean(), hit.std() / math.sqrt(hit.size)
        exact = normal_crossing_volume(k, h, eps=eps)
        assert abs(est - exact) < 5 * se, (eps, est, exact, se)


@pytest.mark.parametrize("k,h", [([1, 1], None), ([1, 2], None), ([2, 2], None), ([1, 1, 1], None),
                                 ([1, 1], [1, 1])])
def test_mc_volume_exponent_within_its_se(k, h):
    lam, m = learning_coefficient(k, h)
    res = volume_exponent_mc(normal_crossing_potential(k), log_uniform_sampler(len(k), exponents=h),
                             num_samples=300_000, multiplicity=m, num_bootstrap=20, seed=1)
    assert abs(res.exponent - float(lam)) < 5 * res.exponent_se + 1e-3
    if m == 2:  # the plain slope carries the (m − 1)/log(1/ε) deficit
        assert res.naive_exponent < float(lam) - 5 * res.exponent_se


def test_mc_volume_exponent_of_a_gaussian_quadratic():
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    res = volume_exponent_mc(quadratic_potential(A), log_uniform_sampler(3, prior="gaussian"),
                             num_samples=300_000, num_bootstrap=20, seed=2)
    assert abs(res.exponent - 1.5) < 5 * res.exponent_se + 1e-3
    # the fitted log-volume follows the exact one
    e = float(res.eps[len(res.eps) // 2])
    assert math.exp(res.log_volume[len(res.eps) // 2]) == pytest.approx(
        quadratic_volume_gaussian([1.0, 2.0, 3.0], eps=e), rel=0.05)


def test_plain_prior_draws_fit_a_regular_exponent():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((400_000, 2))
    res = fit_volume_exponent(0.5 * (z**2).sum(1), num_bootstrap=30, seed=3)
    assert abs(res.exponent - 1.0) < 5 * res.exponent_se


def test_thermodynamic_exponent_of_exact_llcs():
    # exact E[tK] of a localized quadratic: its integral over log t is log Z exactly
    a, gamma = [1.0, 2.0, 5.0], 1.0
    t = np.geomspace(1e3, 1e5, 41)
    llcs = [localized_llc(a, nbeta=x, localization=gamma) for x in t]
    res = volume_exponent_from_llcs(t, llcs, [0.01] * t.size)
    exact_log_z = -0.5 * sum(math.log(1 + x * ai / gamma) for ai in a for x in (t[-1],)) \
        + 0.5 * sum(math.log(1 + t[0] * ai / gamma) for ai in a)
    assert res.log_volume[-1] == pytest.approx(exact_log_z, rel=1e-4)
    assert res.exponent == pytest.approx(1.5, rel=2e-3)
    assert 0 < res.exponent_se < 0.01


def test_thermodynamic_multiplicity_correction():
    t = np.geomspace(10, 1e6, 30)
    # −log Z = λ log t − (m − 1) log log t: its derivative in log t is λ − (m−1)/log t
    llcs = 0.5 - 1.0 / np.log(t)
    res = volume_exponent_from_llcs(t, llcs, multiplicity=2)
    assert res.exponent == pytest.approx(0.5, abs=2e-3)
    assert res.naive_exponent < 0.45


class Shifted(torch.nn.Module):
    """A potential as a module whose one parameter vector is w (K evaluated at w − c)."""

    def __init__(self, potential, center):
        super().__init__()
        self.w = torch.nn.Parameter(center.clone())
        self.center = center.clone()
        self.potential = potential

    def forward(self):
        return self.potential(self.w - self.center)


def _linear_model(rank=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 5, bias=False)).double()
    with torch.no_grad():
        U = torch.randn(5, rank, generator=g, dtype=torch.float64)
        V = torch.randn(rank, 4, generator=g, dtype=torch.float64)
        net[0].weight.zero_()
        net[0].weight[:rank] = V
        net[1].weight.zero_()
        net[1].weight[:, :rank] = U
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = net(x).detach()
    return net, lambda m: ((m(x) - y) ** 2).sum(-1).mean() / 2


def test_schemes_act_as_documented():
    net, _ = _linear_model()
    q = compress(net, "quantize", 0.25)
    assert all(torch.equal(v, torch.round(v / 0.25) * 0.25) for v in q.values())
    r = compress(net, "rank", 1)
    assert all(torch.linalg.matrix_rank(v) <= 1 for v in r.values())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    n1, n2 = compress(net, "noise", 0.1, generator=g1), compress(net, "noise", 0.1, generator=g2)
    assert all(torch.equal(n1[k], n2[k]) for k in n1)
    assert weight_matrices(net) == ["0.weight", "1.weight"]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    span = float(flat.max() - flat.min())
    assert step_for_bits(net, 4) == pytest.approx(span / 15)


def test_critical_rank_is_the_teachers_rank():
    net, loss = _linear_model(rank=2)
    res = critical_strength(net, loss, "rank", eps=1e-8)
    assert res.strength == 2
    assert res.loss_rises[-1] > 1e-8  # rank 0 does break the tolerance


def test_critical_quantization_step_brackets_the_tolerance():
    net, loss = _linear_model()
    eps = 1e-3
    res = critical_strength(net, loss, "quantize", eps=eps)
    base = float(loss(net).detach())
    grid, rises = np.array(res.strengths), np.array(res.loss_rises)
    first_above = int(np.nonzero(rises > eps)[0][0])
    # every grid step below the critical one keeps the rise within ε; the next one does not
    assert grid[first_above - 1] <= res.strength <= grid[first_above]
    assert np.all(rises[grid < res.strength] <= eps) and rises[first_above] > eps
    # the rise at the critical step itself, recomputed from scratch, is close to ε or below it
    assert float(loss(_load(net, compress(net, "quantize", res.strength))).detach()) - base <= 2 * eps


def _load(net, params):
    import copy
    work = copy.deepcopy(net)
    with torch.no_grad():
        for k, p in work.named_parameters():
            p.copy_(params[k])
    return work


def test_critical_noise_of_a_quadratic_matches_the_mean_rise():
    # E[K(w* + σz)] = σ² tr(A)/2 exactly: the critical σ is sqrt(2ε/tr A)
    A = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    model = Shifted(quadratic_potential(A), torch.tensor([0.3, -0.7], dtype=torch.float64))
    res = critical_strength(model, lambda m: m(), "noise", eps=1e-4, num_draws=400, seed=0)
    exact = math.sqrt(2e-4 / 4.0)
    assert res.strength_se > 0
    assert abs(res.strength - exact) < 5 * res.strength_se + 0.02 * exact  # grid interpolation


def test_code_lengths():
    assert volume_code_length(1.5, 1e-4) == pytest.approx(1.5 * math.log(1e4))
    assert volume_code_length(0.5, 1e-4, multiplicity=2) == pytest.approx(
        0.5 * math.log(1e4) - math.log(math.log(1e4)))
    net, _ = _linear_model()
    # rank 1 of a 3×4 and a 5×3 matrix: 1·(3+4−1) + 1·(5+3−1) numbers at 32 bits
    assert compression_code_length(net, "rank", 1) == pytest.approx(13 * 32 * math.log(2))
    assert compression_code_length(net, "quantize", 0.01) > compression_code_length(net, "quantize", 0.1)


def test_errors_say_what_to_change():
    net, loss = _linear_model()
    with pytest.raises(ValueError, match="eps"):
        critical_strength(net, loss, "quantize", eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        critical_strength(net, loss, "noise", eps=-1.0)
    vector_model = Shifted(normal_crossing_potential([1, 1]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="weight matrices"):
        critical_strength(vector_model, lambda m: m(), "rank", eps=1e-3)
    with pytest.raises(ValueError, match="already raises the loss"):
        critical_strength(net, loss, "quantize", eps=1e-6, strengths=[0.5, 1.0])
    with pytest.raises(ValueError, match="scheme"):
        critical_strength(net, loss, "prune", eps=1e-3)
    with pytest.raises(ValueError, match="negative"):
        fit_volume_exponent([-1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="eps"):
        volume_code_length(1.0, 0.0)
    with pytest.raises(ValueError, match="Generator"):
        compress(net, "noise", 0.1)
