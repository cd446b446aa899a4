"""Deep linear networks (toymodels.models.dln): exact identities in float64, the sampler, the experiments."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.dln import learning_coefficient, parameter_count
from theory.regular import localized_llc
from toymodels import estimate_llc, llc_from_trace
from toymodels.models.dln import (
    DeepLinearNetwork,
    DLNObjective,
    DLNTeacher,
    SufficientStatistics,
    dln_potential,
    dln_step_size,
    estimate_dln_llc,
    flatten_layers,
    gauss_newton_eigenvalues,
    gauss_newton_top_eigenvalue,
    gaussian_nll_loss,
    input_covariance,
    make_data,
    num_parameters,
    product_matrix,
    random_teacher,
    teacher_from_product,
    unflatten_layers,
)
from toymodels.objectives import Objective, PotentialObjective
from toymodels.models.potentials import quadratic_potential
from toymodels.sampling import SGLDHyperparameters, run_chains

F64 = torch.float64


@st.composite
def widths_strategy(draw, max_depth=4, max_width=5):
    depth = draw(st.integers(1, max_depth))
    return tuple(draw(st.integers(1, max_width)) for _ in range(depth + 1))


def _random_point(widths, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(num_parameters(widths), generator=g, dtype=F64)


# ---------------------------------------------------------------------------------------------
# the model


@settings(deadline=None, max_examples=30)
@given(widths_strategy(), st.integers(0, 10_000))
def test_flat_vector_round_trip_and_product_match_the_module(widths, seed):
    w = _random_point(widths, seed)
    assert num_parameters(widths) == parameter_count(widths)
    layers = unflatten_layers(w, widths)
    assert [tuple(W.shape) for W in layers] == [(b, a) for a, b in zip(widths[:-1], widths[1:])]
    assert torch.equal(flatten_layers(layers), w)
    net = DeepLinearNetwork(widths, layers)
    assert torch.equal(net.flat_parameters(), w)
    x = torch.randn(7, widths[0], dtype=F64)
    torch.testing.assert_close(net(x), x @ product_matrix(w, widths).T, rtol=1e-12, atol=1e-12)


def test_product_matrix_is_batched_over_chains():
    widths = (3, 4, 2, 5)
    w = torch.stack([_random_point(widths, s) for s in range(6)])
    batched = product_matrix(w, widths)
    assert batched.shape == (6, 5, 3)
    for c in range(6):
        # the same products; a batched BLAS call may sum in another order (a few ulps, by CPU)
        torch.testing.assert_close(batched[c], product_matrix(w[c], widths), rtol=1e-14, atol=1e-15)


def test_bad_widths_and_vectors_fail_with_advice():
    with pytest.raises(ValueError, match="positive integer"):
        num_parameters((3, 0, 2))
    with pytest.raises(ValueError, match="at least the input and output"):
        num_parameters((3,))
    with pytest.raises(ValueError, match="has 14 parameters"):
        unflatten_layers(torch.zeros(13, dtype=F64), (3, 2, 4))
    with pytest.raises(ValueError, match="layer 2 must have shape"):
        DeepLinearNetwork((3, 2, 4), [torch.zeros(2, 3), torch.zeros(2, 4)])


# ---------------------------------------------------------------------------------------------
# teachers


def test_random_teacher_follows_the_recipe_and_is_reproducible():
    seen_reduced = seen_full = 0
    for seed in range(40):
        t = random_teacher(seed, depth=(2, 5), width=(2, 20))
        again = random_teacher(seed, depth=(2, 5), width=(2, 20))
        assert t.widths == again.widths and all(torch.equal(a, b) for a, b in zip(t.layers, again.layers))
        assert 2 <= t.depth <= 5 and all(2 <= h <= 20 for h in t.widths)
        assert t.rank == int(torch.linalg.matrix_rank(t.product))
        assert t.rank <= min(t.layer_ranks)
        for W, q in zip(t.layers, t.layer_ranks):
            seen_full += q == min(W.shape)
            seen_reduced += q < min(W.shape)
    assert seen_reduced > 10 and seen_full > 10  # about half the layers are reduced


def test_random_teacher_without_reduction_has_full_rank_layers():
    t = random_teacher(3, reduce_probability=0.0)
    assert all(q == min(W.shape) for W, q in zip(t.layers, t.layer_ranks))
    assert t.rank == min(t.widths)  # Gaussian layers: the product has the narrowest width's rank


def test_random_teacher_rejects_bad_ranges():
    with pytest.raises(ValueError, match="depth"):
        random_teacher(0, depth=(3, 2))
    with pytest.raises(ValueError, match="reduce_probability"):
        random_teacher(0, reduce_probability=1.5)


@settings(deadline=None, max_examples=25)
@given(widths_strategy(max_depth=4, max_width=6), st.integers(0, 1000), st.data())
def test_minimal_factorisation_keeps_the_product_with_every_layer_of_rank_r(widths, seed, data):
    r = data.draw(st.integers(0, min(widths)))
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(widths[-1], r, generator=g, dtype=F64)
    B = torch.randn(r, widths[0], generator=g, dtype=F64)
    product = A @ B
    t = teacher_from_product(product, widths, seed=seed)
    assert t.rank == r and t.is_minimal and t.layer_ranks == (r,) * (len(widths) - 1)
    torch.testing.assert_close(t.product, product, rtol=1e-10, atol=1e-10)


def test_minimal_factorisation_can_replace_singular_values():
    t = random_teacher(1)
    m = t.minimal_factorization(0, singular_values=[2.0 - 0.1 * i for i in range(t.rank)])
    s = torch.linalg.svdvals(m.product)[: t.rank]
    torch.testing.assert_close(s, torch.tensor([2.0 - 0.1 * i for i in range(t.rank)], dtype=F64))
    with pytest.raises(ValueError, match="exactly rank"):
        t.minimal_factorization(0, singular_values=[1.0])


def test_minimal_stratum_has_the_rank_r_manifold_as_its_regular_directions():
    # On the most singular stratum the Gauss–Newton matrix has exactly r (H_1 + N − r) positive
    # eigenvalues: the tangent space of the rank-r matrices.
    for seed in (2, 4, 11):
        t = random_teacher(seed).minimal_factorization(seed)
        evals = gauss_newton_eigenvalues(t.widths, t.flat, input_covariance(t.widths[0]))
        positive = int((evals > 1e-9 * evals[0]).sum())
        assert positive == t.rank * (t.widths[0] + t.widths[-1] - t.rank)


def _hessian(fn, w):
    """Dense Hessian by differentiating the gradient once per coordinate (float64)."""
    w = w.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(w), w, create_graph=True)
    rows = [torch.autograd.grad(grad[i], w, retain_graph=True)[0] for i in range(w.numel())]
    return torch.stack(rows).detach()


def test_gauss_newton_eigenvalues_equal_the_hessian_of_the_population_loss_at_the_truth():
    widths = (3, 2, 4)
    point = _random_point(widths, 5)
    cov = torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=F64))
    stats = SufficientStatistics.population(product_matrix(point, widths), cov, noise_std=0.7)
    hess = _hessian(dln_potential(widths, stats, 0.7), point)
    expected = torch.linalg.eigvalsh(hess).flip(0)
    got = gauss_newton_eigenvalues(widths, point, cov, noise_std=0.7)
    torch.testing.assert_close(got, expected[: got.numel()], rtol=1e-9, atol=1e-9)
    # the rest of the spectrum (the fiber's directions) is zero at the truth
    torch.testing.assert_close(expected[got.numel():], torch.zeros(hess.shape[0] - got.numel(), dtype=F64),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("widths", [(6, 5, 4, 3), (10, 8, 8, 6), (4, 12, 12, 12, 4)])
def test_matrix_free_top_gauss_newton_eigenvalue_equals_the_dense_spectrum(widths):
    g = torch.Generator().manual_seed(sum(widths))
    point = 0.5 * torch.randn(sum(a * b for a, b in zip(widths[:-1], widths[1:])), generator=g, dtype=F64)
    a = torch.randn(widths[0], widths[0], generator=g, dtype=F64)
    cov = a @ a.T / widths[0] + torch.eye(widths[0], dtype=F64)
    dense = float(gauss_newton_eigenvalues(widths, point, cov, noise_std=0.7)[0])
    lanczos = gauss_newton_top_eigenvalue(widths, point, cov, noise_std=0.7, dense=False)
    assert lanczos == pytest.approx(dense, rel=1e-10)


def test_large_dln_step_size_never_forms_the_jacobian(monkeypatch):
    # depth 4, width 48: the dense Jacobian would have 48² · 9216 > 2²² entries
    widths = (48,) * 5
    point = _random_point(widths, 1) / 48**0.5
    expected = gauss_newton_top_eigenvalue(widths, point, input_covariance(48), dense=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense Jacobian was built")

    monkeypatch.setattr("toymodels.models.dln.curvature.gauss_newton_eigenvalues", refuse)
    eps, h_ref = dln_step_size(widths, point, input_covariance(48), nbeta=1000.0)
    floor = 4 * float(torch.linalg.matrix_norm(input_covariance(48), ord=2))
    assert h_ref == pytest.approx(max(expected, floor), rel=1e-12)
    assert eps == pytest.approx(0.1 / (1000.0 * h_ref), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# data, loss, sufficient statistics


def test_gaussian_nll_is_the_likelihood_scale_not_mse():
    out, y = torch.randn(50, 3, dtype=F64), torch.randn(50, 3, dtype=F64)
    sigma = 0.5
    nll = gaussian_nll_loss(sigma)(out, y)
    mse = torch.nn.functional.mse_loss(out, y)
    torch.testing.assert_close(nll, mse * 3 / (2 * sigma**2), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="noise_std"):
        gaussian_nll_loss(0.0)


@pytest.mark.parametrize("inputs", ["uniform", "gaussian"])
def test_make_data_has_the_stated_input_law_and_noise(inputs):
    t = random_teacher(2)
    X, Y = make_data(t, 20_000, inputs=inputs, input_scale=10.0, noise_std=0.3, seed=1)
    cov = input_covariance(t.widths[0], inputs, 10.0)
    n = X.shape[0]
    # second moments within 6 standard errors (var of x_i^2 is at most 2 var^2 for these laws)
    var = cov[0, 0]
    assert torch.all(torch.abs((X * X).mean(0) - var) < 6 * math.sqrt(2) * var / math.sqrt(n))
    resid = Y - X @ t.product.T
    assert abs(float(resid.std()) - 0.3) < 6 * 0.3 / math.sqrt(2 * resid.numel())
    if inputs == "uniform":
        assert float(X.abs().max()) <= 10.0
    with pytest.raises(ValueError, match="inputs must be one of"):
        make_data(t, 10, inputs="cauchy")


@settings(deadline=None, max_examples=20)
@given(widths_strategy(max_depth=3, max_width=5), st.integers(0, 1000),
       st.sampled_from(["uniform", "gaussian"]), st.floats(0.2, 3.0))
def test_sufficient_statistics_potential_equals_the_full_batch_nll(widths, seed, inputs, sigma):
    g = torch.Generator().manual_seed(seed)
    teacher = DLNTeacher(widths, tuple(unflatten_layers(_random_point(widths, seed), widths)), 0, ())
    X, Y = make_data(teacher.product, 300, inputs=inputs, input_scale=2.0, noise_std=sigma,
                     seed=seed)
    stats = SufficientStatistics.from_data(X, Y, teacher.product, chunk=64)
    potential = dln_potential(widths, stats, sigma)
    nll = gaussian_nll_loss(sigma)
    points = teacher.flat + 0.5 * torch.randn(4, teacher.flat.numel(), generator=g, dtype=F64)
    batched = potential(points)
    for c in range(4):
        net = DeepLinearNetwork(widths, unflatten_layers(points[c], widths))
        with torch.no_grad():
            direct = nll(net(X), Y)
        torch.testing.assert_close(potential(points[c]), direct, rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(batched[c], direct, rtol=1e-11, atol=1e-11)


def test_population_statistics_give_k_plus_the_noise_constant():
    widths = (4, 3, 2)
    w_star, w = _random_point(widths, 1), _random_point(widths, 2)
    cov = input_covariance(4, "uniform", 10.0)
    stats = SufficientStatistics.population(product_matrix(w_star, widths), cov, noise_std=2.0)
    D = product_matrix(w, widths) - product_matrix(w_star, widths)
    expected = (2 * 2.0**2 + torch.trace(D @ cov @ D.T)) / (2 * 2.0**2)
    torch.testing.assert_close(dln_potential(widths, stats, 2.0)(w), expected, rtol=1e-13, atol=0)


def test_closed_form_gradient_matches_autograd():
    t = random_teacher(12)
    X, Y = make_data(t, 500, seed=1)
    for stats in (SufficientStatistics.from_data(X, Y, t.product),
                  SufficientStatistics.population(t.product, input_covariance(t.widths[0]))):
        obj = DLNObjective(t.widths, stats, t.flat, 0.7)
        g = torch.Generator().manual_seed(0)
        w = t.flat + 0.1 * torch.randn(5, t.num_parameters, generator=g, dtype=F64)
        loss, grad = obj.loss_and_grad(w, None)
        loss_ad, grad_ad = Objective.loss_and_grad(obj, w, None)  # autograd through the potential
        torch.testing.assert_close(loss, loss_ad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, grad_ad, rtol=1e-11, atol=1e-11)


def test_module_path_and_sufficient_statistics_path_give_the_same_estimate():
    # Same data, seed, schedule: the two objectives differ only by rounding, so the SGLD chains
    # (same noise draws, same parameter order) and the estimates agree to rounding.
    t = random_teacher(4, depth=(2, 3), width=(2, 6)).minimal_factorization(0)
    X, Y = make_data(t, 400, noise_std=0.8, seed=3)
    stats = SufficientStatistics.from_data(X, Y, t.product)
    common = dict(nbeta=300.0, step_size=1e-4, localization=1.0, num_chains=3, num_draws=60,
                  seed=5, progress=False)
    a = estimate_llc(t.network(), data=(X, Y), loss_fn=gaussian_nll_loss(0.8), **common)
    b = estimate_llc(dln_potential(t.widths, stats, 0.8), init=t.flat, **common)
    assert np.allclose(a.loss_trace, b.loss_trace, rtol=1e-11, atol=1e-11)
    assert a.llc_mean == pytest.approx(b.llc_mean, rel=1e-8)
    assert a.nbeta == b.nbeta


# ---------------------------------------------------------------------------------------------
# step size and MALA


def test_step_size_rule_uses_the_stiffest_direction_and_a_floor():
    t = random_teacher(2).minimal_factorization(0)
    cov = input_covariance(t.widths[0])
    eps, h = dln_step_size(t.widths, t.flat, cov, nbeta=1000.0, step_fraction=0.1)
    h_max = float(gauss_newton_eigenvalues(t.widths, t.flat, cov)[0])
    assert h == pytest.approx(max(h_max, t.depth)) and eps == pytest.approx(0.1 / (1000.0 * h))
    zero = torch.zeros(num_parameters((3, 2, 4)), dtype=F64)
    eps0, h0 = dln_step_size((3, 2, 4), zero, input_covariance(3), nbeta=1000.0)
    assert h0 == 2.0  # rank 0 at w* = 0: the floor L ||S|| / σ²
    with pytest.raises(ValueError, match="step_fraction"):
        dln_step_size((3, 2, 4), zero, input_covariance(3), nbeta=1000.0, step_fraction=2.0)


def _gaussian_mala(step_fraction, chains, draws):
    eigenvalues = [0.5, 2.0, 8.0]
    nbeta, gamma = 100.0, 2.0
    objective = PotentialObjective(quadratic_potential(torch.diag(torch.tensor(eigenvalues, dtype=F64))),
                                   torch.zeros(3, dtype=F64))
    eps = step_fraction / (nbeta * max(eigenvalues))
    trace = run_chains(objective, hyper=SGLDHyperparameters(eps, nbeta, gamma), num_chains=chains,
                       num_draws=draws, num_burnin_steps=200, seed=1, sampler="mala")
    return llc_from_trace(trace), localized_llc(eigenvalues, nbeta=nbeta, localization=gamma), trace


def test_mala_is_exact_on_a_gaussian_at_a_step_where_sgld_is_biased():
    # ε t a_max = 2: SGLD's stationary variance in that direction is 1/(1 − 2/4) = 2 times the
    # true one; MALA's Metropolis test makes the law exact.
    result, exact, trace = _gaussian_mala(2.0, chains=400, draws=400)
    assert abs(result.llc_mean - exact) < 4 * result.mcse
    assert abs(result.llc_mean / exact - 1) < 0.03
    accepted = trace.records["accepted"]
    assert accepted.shape == (400, 400) and 0.2 < accepted.mean() < 0.99


def test_mala_rejects_non_finite_proposals_instead_of_diverging():
    def potential(w):
        # finite only inside the unit ball: every proposal outside must be rejected
        r2 = (w * w).sum(-1)
        return torch.where(r2 < 1.0, r2, torch.full_like(r2, float("inf")))

    potential.batched = True
    objective = PotentialObjective(potential, torch.zeros(2, dtype=F64))
    trace = run_chains(objective, hyper=SGLDHyperparameters(0.5, 1.0, 0.0), num_chains=50,
                       num_draws=200, seed=0, sampler="mala")
    assert np.isfinite(trace.loss).all() and (trace.loss < 1.0).all()
    assert trace.final_params.norm(dim=-1).max() < 1.0


def test_estimate_dln_llc_checks_its_arguments():
    zero = torch.zeros(num_parameters((2, 2, 2)), dtype=F64)
    stats = SufficientStatistics.population(torch.zeros(2, 2, dtype=F64), input_covariance(2))
    with pytest.raises(ValueError, match="sampler must be one of"):
        estimate_dln_llc((2, 2, 2), zero, stats, nbeta=10.0, sampler="hmc")
    with pytest.raises(ValueError, match="diffusion_time"):
        estimate_dln_llc((2, 2, 2), zero, stats, nbeta=10.0, diffusion_time=0.0)


def test_regular_dln_estimate_matches_the_localized_quadratic_value():
    # widths (2, 2, 2) at a rank-2 truth: P(w) is a local diffeomorphism modulo GL(2), K is
    # Morse–Bott with 4 regular directions; MALA at a large step is exact up to O(1/nβ).
    g = torch.Generator().manual_seed(0)
    product = torch.linalg.qr(torch.randn(2, 2, generator=g, dtype=F64))[0] @ torch.diag(
        torch.tensor([1.0, 0.6], dtype=F64))
    t = teacher_from_product(product, (2, 2, 2), seed=0)
    stats = SufficientStatistics.population(t.product, input_covariance(2))
    nbeta = 5000.0
    res = estimate_dln_llc((2, 2, 2), t.flat, stats, nbeta=nbeta, step_fraction=0.5,
                           diffusion_time=20 / (nbeta * 0.36), num_chains=200, seed=0)
    evals = gauss_newton_eigenvalues((2, 2, 2), t.flat, stats.input_moment)
    exact = localized_llc([float(a) for a in evals if a > 1e-9], nbeta=nbeta, localization=1.0)
    assert learning_coefficient((2, 2, 2), 2)[0] == 2
    assert abs(res.llc_mean - exact) < 4 * res.mcse and abs(res.llc_mean / exact - 1) < 0.03


@pytest.mark.slow
def test_drawn_layers_start_above_aoyagi_and_relax_to_the_minimal_stratum():
    from experiments.dln_llc_vs_aoyagi import control_teacher

    ctrl = control_teacher()
    stats = SufficientStatistics.population(ctrl.product, input_covariance(5))
    short = estimate_dln_llc(ctrl.widths, ctrl.flat, stats, nbeta=1086.0, diffusion_time=0.02,
                             num_chains=32, seed=0)
    assert abs(short.llc_mean - 12.5) < 4 * short.mcse + 0.3  # strictly local value 25/2
    long_drawn = estimate_dln_llc(ctrl.widths, ctrl.flat, stats, nbeta=1086.0, diffusion_time=1.0,
                                  num_chains=16, seed=0)
    minimal = teacher_from_product(ctrl.product, ctrl.widths, seed=0)
    long_min = estimate_dln_llc(ctrl.widths, minimal.flat, stats, nbeta=1086.0, diffusion_time=1.0,
                                num_chains=16, seed=0)
    gap = abs(long_drawn.llc_mean - long_min.llc_mean)
    assert gap < 4 * math.hypot(long_drawn.mcse, long_min.mcse) + 0.3
    assert long_drawn.llc_mean < 11.5  # left the strictly local value 12.5 behind


# ---------------------------------------------------------------------------------------------
# experiments and validation


def test_smoke_dln_llc_vs_aoyagi(tmp_path):
    from experiments.dln_llc_vs_aoyagi import Config, main

    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "f.png"))
    assert (tmp_path / "dln_llc_vs_aoyagi.json").exists() and (tmp_path / "f.png").exists()
    assert report["summary"]["num_teachers"] == 3
    check = report["module_checks"][0]
    assert check["llc_module"] == pytest.approx(check["llc_potential"], rel=1e-8)


def test_smoke_dln_stagewise(tmp_path):
    from experiments.dln_stagewise import Config, main

    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "f.png"))
    assert (tmp_path / "dln_stagewise.json").exists() and (tmp_path / "f.png").exists()
    found = [p for p in report["plateaus"] if p["found"] and p["level"] > 0]
    assert len(found) >= 2
    for p in found:  # every plateau found sits within 1% of its exact level Σ_{i>r} s_i²
        assert abs(p["loss_rel_error"]) <= 0.01


def test_validate_dln_cases_run_at_a_tiny_scale():
    from toymodels.validation.dln import cases

    found = cases(scale=0.02)
    assert len(found) == 4 and all(c.group == "deep linear network" for c in found)
    case = found[1]  # the MALA case: a few hundred steps
    result = case.run()
    assert np.isfinite(result.llc_mean) and abs(result.llc_mean / case.target() - 1) < 0.2
