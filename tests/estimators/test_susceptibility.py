"""Checks of toymodels.estimators.susceptibility: SGLD estimates against the exact closed forms of
theory.susceptibility (Gaussian covariances, classical influence, the 1-D singular energy
fluctuation), against finite differences of sampled posterior means on a singular deep linear
network, and weight-restricted sampling against sampling the restricted potential directly.

Statistical checks use fixed seeds and tolerances of 3 Monte-Carlo standard errors. SGLD with
step ε has its own stationary law: on a Gaussian posterior of precision P it is Gaussian with
covariance ``(P (I − εP/4))⁻¹`` (linear drift, solve the discrete Lyapunov equation), a relative
bias ``εp/4`` per eigen-direction. Each Gaussian test asserts that this bias is below half an
MCSE, so the closed form for the exact posterior is a fair target.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.regular import localized_llc
from theory.susceptibility import (
    bayesian_influence_gaussian,
    classical_influence,
    gaussian_posterior,
    quadratic_form_covariance,
    singular_energy_variance,
)
from toymodels import SGLDHyperparameters, estimate_llc
from toymodels.objectives import ModuleObjective
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential
from toymodels.sampling import SamplingTrace
from toymodels.estimators.susceptibility import (
    bayesian_influence,
    component_llcs,
    finite_difference_response,
    module_loss_function,
    per_sample_loss_function,
    restricted_potential,
    susceptibilities,
    susceptibilities_from_trace,
)

Z_TOL = 3.0
F64 = torch.float64


def _sgld_covariance(precision: np.ndarray, eps: float) -> np.ndarray:
    """Stationary covariance of SGLD with step ε on a Gaussian of this precision."""
    ev, vecs = np.linalg.eigh(precision)
    return vecs @ np.diag(1.0 / (ev * (1.0 - eps * ev / 4.0))) @ vecs.T


def _synthetic_trace(obs: dict[str, np.ndarray], nbeta=3.0) -> SamplingTrace:
    first = next(iter(obs.values()))
    zeros = np.zeros(first.shape[:2])
    return SamplingTrace(loss=zeros, init_loss=0.0, grad_norm=zeros, distance=zeros,
                         drift_norm=zeros, noise_norm=zeros,
                         hyper=SGLDHyperparameters(step_size=1e-3, nbeta=nbeta),
                         num_burnin_steps=0, num_steps_bw_draws=1, observables=obs)


# ----------------------------------------------------------------------------- estimator algebra


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), chains=st.integers(1, 4), draws=st.integers(4, 30),
       num_obs=st.integers(1, 3), num_pert=st.integers(1, 3))
def test_from_trace_is_minus_the_pooled_covariance(seed, chains, draws, num_obs, num_pert):
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((chains, draws, num_obs))
    dl = rng.standard_normal((chains, draws, num_pert)) + 0.5 * phi[..., :1]
    result = susceptibilities_from_trace(_synthetic_trace({"phi:f": phi, "dL:g": dl}, nbeta=3.0))
    x, y = phi.reshape(-1, num_obs), dl.reshape(-1, num_pert)
    pooled = (x - x.mean(0)).T @ (y - y.mean(0)) / x.shape[0]
    np.testing.assert_allclose(result.chi, -pooled, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.jacobian, -3.0 * pooled, rtol=1e-12, atol=1e-12)
    assert result.chi.shape == result.mcse.shape == (num_obs, num_pert)
    assert np.all(result.mcse >= 0)
    # covariance is linear in the perturbation: combining draws equals combining estimates
    weights = rng.standard_normal((2, num_pert))
    combined = result.combine(weights, names=["u", "v"])
    np.testing.assert_allclose(combined.chi, result.chi @ weights.T, rtol=1e-10, atol=1e-12)
    assert combined.perturbation_names == ["u", "v"]


def test_names_of_vector_observables_and_baseline():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((2, 10, 2, 3))
    source = rng.standard_normal((2, 10))
    base = rng.standard_normal((2, 10))
    trace = _synthetic_trace({"phi:M": phi, "dL:s": source, "phi:__baseline__": base})
    result = susceptibilities_from_trace(trace, baseline="phi:__baseline__")
    assert result.observable_names == [f"M[{i},{j}]" for i in range(2) for j in range(3)]
    assert result.perturbation_names == ["s"]
    x = phi.reshape(-1, 6)
    y = (source - base).reshape(-1)
    expected = -((x - x.mean(0)) * (y - y.mean())[:, None]).mean(0)
    np.testing.assert_allclose(result.chi[:, 0], expected, rtol=1e-12)
    chi, err = result.entry("M[1,2]", "s")
    assert chi == result.chi[5, 0] and err == result.mcse[5, 0]
    sub = result.select(["M[1,2]", "M[0,0]"])
    np.testing.assert_array_equal(sub.chi[:, 0], result.chi[[5, 0], 0])
    assert sub.observable_names == ["M[1,2]", "M[0,0]"]
    assert sub.combine([2.0]).chi[0, 0] == pytest.approx(2 * result.chi[5, 0], rel=1e-12)
    with pytest.raises(ValueError, match="unknown observable"):
        result.select(["M[9,9]"])


def test_mcse_of_independent_draws_is_the_iid_standard_error():
    # for independent draws the ESS-based MCSE of the product series is sd/sqrt(N) up to noise
    rng = np.random.default_rng(1)
    phi = rng.standard_normal((4, 2000))
    dl = 0.3 * phi + rng.standard_normal((4, 2000))
    result = susceptibilities_from_trace(_synthetic_trace({"phi:a": phi, "dL:b": dl}))
    prod = (phi - phi.mean()) * (dl - dl.mean())
    iid = prod.std() / math.sqrt(prod.size)
    assert abs(result.mcse[0, 0] / iid - 1) < 0.1
    # and it is honest: the true covariance −0.3 lies within 3 MCSE
    assert abs(result.chi[0, 0] + 0.3) < Z_TOL * result.mcse[0, 0]


def test_chunked_products_give_the_same_matrix(monkeypatch):
    import toymodels.estimators.susceptibility.statistics as susceptibility_module

    rng = np.random.default_rng(6)
    trace = _synthetic_trace({"phi:a": rng.standard_normal((2, 16, 3)),
                              "dL:b": rng.standard_normal((2, 16, 5))})
    whole = susceptibilities_from_trace(trace)
    monkeypatch.setattr(susceptibility_module, "_PRODUCT_CHUNK", 40)  # one column at a time
    chunked = susceptibilities_from_trace(trace)
    np.testing.assert_array_equal(whole.chi, chunked.chi)
    np.testing.assert_array_equal(whole.mcse, chunked.mcse)


def test_mcse_is_arviz_mcse_of_the_centred_product_series():
    from arviz_stats.base import array_stats

    rng = np.random.default_rng(4)
    phi = np.cumsum(rng.standard_normal((3, 200, 2)), axis=1) * 0.1  # autocorrelated
    dl = phi[..., :1] + rng.standard_normal((3, 200, 1))
    result = susceptibilities_from_trace(_synthetic_trace({"phi:a": phi, "dL:b": dl}))
    for a in range(2):
        x, y = phi[..., a], dl[..., 0]
        prod = (x - x.mean()) * (y - y.mean())
        assert result.mcse[a, 0] == pytest.approx(
            float(array_stats.mcse(prod, chain_axis=0, draw_axis=1, method="mean")), rel=1e-10)
        assert result.ess[a, 0] == pytest.approx(
            float(array_stats.ess(prod, chain_axis=0, draw_axis=1, method="mean")), rel=1e-10)


def test_principal_components_of_a_rank_one_matrix():
    rng = np.random.default_rng(2)
    pattern, weights = rng.standard_normal(4), rng.standard_normal(6)
    phi = rng.standard_normal((2, 8, 4))
    trace = _synthetic_trace({"phi:f": phi, "dL:g": rng.standard_normal((2, 8, 6))})
    result = susceptibilities_from_trace(trace)
    result.chi = np.outer(pattern, weights)  # a known matrix in place of the estimate
    pcs = result.principal_components(centered=False)
    assert pcs.explained_variance_ratio[0] == pytest.approx(1.0, abs=1e-12)
    loading = pattern / np.linalg.norm(pattern) * np.sign(pattern[np.abs(pattern).argmax()])
    np.testing.assert_allclose(pcs.loadings[0], loading, atol=1e-12)
    np.testing.assert_allclose(pcs.scores @ pcs.loadings, result.chi.T, atol=1e-12)
    centered = result.principal_components(2, centered=True)
    x = result.chi.T - result.chi.T.mean(0)
    np.testing.assert_allclose(centered.scores @ centered.loadings, x, atol=1e-12)
    with pytest.raises(ValueError, match="num_components"):
        result.principal_components(9)


def test_bad_input_fails_at_once_with_advice():
    w0 = torch.zeros(2, dtype=F64)
    pot = quadratic_potential(torch.eye(2, dtype=F64))
    obs = {"x": lambda w: w[0]}
    with pytest.raises(ValueError, match="at least one observable"):
        susceptibilities(pot, init=w0, nbeta=1.0, observables={}, perturbations={"p": obs["x"]})
    with pytest.raises(ValueError, match="must be a function"):
        susceptibilities(pot, init=w0, nbeta=1.0, observables={"x": 3.0}, perturbations={})
    with pytest.raises(ValueError, match="delta"):
        finite_difference_response(pot, init=w0, nbeta=1.0, observables=obs,
                                   perturbation=obs["x"], delta=0.0)
    with pytest.raises(ValueError, match="boolean"):
        restricted_potential(pot, w0, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="selects no parameter"):
        restricted_potential(pot, w0, torch.tensor([False, False]))
    trace = _synthetic_trace({"phi:a": np.zeros((1, 5)), "dL:b": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="not in the trace"):
        susceptibilities_from_trace(trace, observables=["nope"])
    with pytest.raises(ValueError, match="discard_draws"):
        susceptibilities_from_trace(trace, discard_draws=5)


# ----------------------------------------------------------------------------- Gaussian closed forms


def test_gaussian_susceptibilities_match_closed_forms():
    """Linear and quadratic observables × linear, quadratic and mixed perturbations of a
    localised Gaussian posterior, against theory.susceptibility.quadratic_form_covariance."""
    rng = np.random.default_rng(1)
    d, t, gamma, eps = 3, 10.0, 1.0, 2e-3
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a_mat = q @ np.diag([0.5, 1.0, 2.0]) @ q.T
    a_mat = (a_mat + a_mat.T) / 2
    m = rng.standard_normal(d)
    center = m + 0.3 * rng.standard_normal(d)  # w* ≠ m, so the posterior mean is not m
    c, g = rng.standard_normal(d), rng.standard_normal(d)
    c_mat, b_mat = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    c_mat, b_mat = (c_mat + c_mat.T) / 2, (b_mat + b_mat.T) / 2
    mu, sigma = gaussian_posterior(a_mat, m, nbeta=t, localization=gamma, center=center)
    sigma_eps = _sgld_covariance(t * a_mat + gamma * np.eye(d), eps)
    chains = 600
    init = rng.multivariate_normal(mu, sigma_eps, size=chains)  # start in equilibrium

    ct, gt = torch.tensor(c), torch.tensor(g)
    cm, bm = torch.tensor(c_mat), torch.tensor(b_mat)
    result = susceptibilities(
        quadratic_potential(torch.tensor(a_mat), torch.tensor(m)), init=torch.tensor(center),
        nbeta=t, localization=gamma, step_size=eps, num_chains=chains, num_draws=500,
        num_steps_bw_draws=2, chain_init=torch.tensor(init), seed=3, progress=False,
        observables={"lin": lambda w: w @ ct, "quad": lambda w: 0.5 * w @ cm @ w},
        perturbations={"lin": lambda w: w @ gt, "quad": lambda w: 0.5 * w @ bm @ w,
                       "both": lambda w: w @ gt + 0.5 * w @ bm @ w},
    )
    obs_spec = {"lin": dict(c=c), "quad": dict(C=c_mat)}
    pert_spec = {"lin": dict(g=g), "quad": dict(B=b_mat), "both": dict(g=g, B=b_mat)}
    assert result.chi.shape == (2, 3)
    largest = 0.0
    for a, obs in enumerate(result.observable_names):
        for b, pert in enumerate(result.perturbation_names):
            exact = -quadratic_form_covariance(mu, sigma, **obs_spec[obs], **pert_spec[pert])
            sgld_limit = -quadratic_form_covariance(mu, sigma_eps, **obs_spec[obs], **pert_spec[pert])
            err = result.mcse[a, b]
            assert abs(sgld_limit - exact) < 0.5 * err, (obs, pert)  # step-size bias negligible
            assert abs(result.chi[a, b] - exact) < Z_TOL * err, (obs, pert, result.chi[a, b], exact, err)
            largest = max(largest, abs(exact))
    assert np.all(result.mcse < 0.1 * largest)  # the check has teeth
    # one run gives the LLC too: E[t(L − L(w*))] for the Gaussian
    llc_exact = t * (0.5 * ((mu - m) @ a_mat @ (mu - m) + np.trace(a_mat @ sigma))
                     - 0.5 * (center - m) @ a_mat @ (center - m))
    assert abs(result.llc.llc_mean - llc_exact) < Z_TOL * result.llc.mcse
    np.testing.assert_allclose(result.jacobian, t * result.chi)


def test_bayesian_influence_equals_classical_influence_at_zero_localization():
    """γ = 0, quadratic per-sample losses, linear φ: β·BIF is the classical influence exactly
    (theory.susceptibility.bayesian_influence_gaussian), for any β."""
    rng = np.random.default_rng(5)
    n, d, t, eps = 5, 2, 5.0, 2e-3
    a_each = np.stack([x @ x.T / d + 0.5 * np.eye(d) for x in rng.standard_normal((n, d, d))])
    x_each = rng.standard_normal((n, d))
    a_mat = a_each.mean(0)
    m = np.linalg.solve(a_mat, np.einsum("nij,nj->i", a_each, x_each) / n)
    cs = rng.standard_normal((2, d))
    mu, sigma = gaussian_posterior(a_mat, m, nbeta=t)
    sigma_eps = _sgld_covariance(t * a_mat, eps)
    chains = 600
    init = rng.multivariate_normal(mu, sigma_eps, size=chains)
    at, xt, ct = torch.tensor(a_each), torch.tensor(x_each), torch.tensor(cs)

    def per_sample(w):
        z = w[..., None, :] - xt
        return 0.5 * torch.einsum("...ni,nij,...nj->...n", z, at, z)

    def loss(w):
        return per_sample(w).mean(-1)

    loss.batched = True
    result = bayesian_influence(
        loss, init=torch.tensor(m), nbeta=t, step_size=eps, num_chains=chains, num_draws=500,
        num_steps_bw_draws=2, chain_init=torch.tensor(init), seed=4, progress=False,
        observables={"c": lambda w: ct @ w}, per_sample_losses=per_sample,
    )
    assert result.kind == "bayesian_influence"
    assert result.response_scale == pytest.approx(t / n)
    assert result.perturbation_names == [f"sample[{i}]" for i in range(n)]
    for a in range(2):
        for i in range(n):
            grad_li = a_each[i] @ (m - x_each[i])
            classical = classical_influence(a_mat, cs[a], grad_li, n)
            assert (t / n) * bayesian_influence_gaussian(
                a_mat, m, a_each[i], x_each[i], cs[a], nbeta=t) == pytest.approx(classical, rel=1e-10)
            assert abs(result.jacobian[a, i] - classical) < Z_TOL * result.jacobian_mcse[a, i], (a, i)
    # the influence of the samples that matter is resolved, not lost in noise
    assert np.sum(np.abs(result.jacobian) > 3 * result.jacobian_mcse) >= 5

    # per-sample contributions sum to the total: with L = (1/n) Σ ℓ_i, the susceptibility to the
    # loss itself (recorded by the sampler at the same draws) is the mean of the BIFs
    phi = result.observable_draws
    loss_trace = result.llc.loss_trace[None]
    total = -((phi - phi.mean(axis=(1, 2), keepdims=True))
              * (loss_trace - loss_trace.mean())).mean(axis=(1, 2))
    np.testing.assert_allclose(result.chi.mean(axis=1), total, rtol=1e-9, atol=1e-14)
    combined = result.combine(np.full(n, 1.0 / n), names=["L"], response_scale=t)
    np.testing.assert_allclose(combined.chi[:, 0], total, rtol=1e-9, atol=1e-14)
    # the response to tempering the whole loss, ∂_h E[φ] for L → (1 + h) L, is nβ χ(φ, L)
    np.testing.assert_allclose(combined.jacobian[:, 0], t * total, rtol=1e-9, atol=1e-14)
    assert combined.kind == "susceptibility"


# ----------------------------------------------------------------------------- singular models


def test_energy_energy_susceptibility_is_the_learning_coefficient():
    """K = w⁴, γ = 0: tK ~ Gamma(λ, 1) with λ = 1/4, so tempering the loss (ΔL = K) moves the
    LLC observable tK by ∂_h E[tK] = −t Cov(tK, K) = −Var(tK) = −λ; the same run's LLC is λ."""
    k, t, eps, chains = 2, 1.0, 3e-3, 600
    lam = float(singular_energy_variance(k))
    potential = normal_crossing_potential([k])
    rng = np.random.default_rng(0)
    start = np.sign(rng.standard_normal(chains)) * (rng.gamma(lam, size=chains) / t) ** (1 / (2 * k))
    result = susceptibilities(
        potential, init=torch.zeros(1, dtype=F64), nbeta=t, step_size=eps, num_chains=chains,
        num_draws=400, num_steps_bw_draws=4, chain_init=torch.tensor(start)[:, None], seed=2,
        progress=False, observables={"tK": lambda w: t * potential(w)},
        perturbations={"K": lambda w: potential(w)},
    )
    jac, err = result.jacobian[0, 0], result.jacobian_mcse[0, 0]
    assert abs(jac + lam) < Z_TOL * err, (jac, err)
    assert err < 0.1 * lam
    assert abs(result.llc.llc_mean - lam) < Z_TOL * result.llc.mcse


def _scalar_dln(w):
    """Three scalar layers with zero truth: K = ½ (abc)², λ = 1/2, m = 3 (Aoyagi 2024, deep linear
    networks)."""
    product = w[..., 0] * w[..., 1] * w[..., 2]
    return 0.5 * product * product


_scalar_dln.batched = True


def test_covariance_matches_finite_difference_on_a_singular_dln():
    """Fluctuation–dissipation on a singular model: −nβ Cov(φ, ΔL) at h = 0 against
    (E_{+δ}[φ] − E_{−δ}[φ]) / 2δ from sampling L ± δΔL, within the combined MCSE."""
    observables = {"abc": lambda w: w[0] * w[1] * w[2], "norm": lambda w: 0.5 * (w * w).sum()}
    perturbations = {"teacher": lambda w: -w[0] * w[1] * w[2],  # a source with teacher 1
                     "temper": lambda w: 0.5 * (w[0] * w[1] * w[2]) ** 2}
    settings_ = dict(init=torch.zeros(3, dtype=F64), nbeta=100.0, localization=1.0,
                     step_size=2e-3, num_chains=400, num_draws=400, num_burnin_steps=400,
                     num_steps_bw_draws=2, progress=False, seed=1)
    at_zero = susceptibilities(_scalar_dln, observables=observables, perturbations=perturbations,
                               **settings_)
    checked = 0
    for name in ("teacher", "temper"):
        fd = finite_difference_response(_scalar_dln, observables=observables,
                                        perturbation=perturbations[name], delta=0.03, **settings_)
        assert fd.observable_names == at_zero.observable_names
        b = at_zero.perturbation_names.index(name)
        for a, obs in enumerate(fd.observable_names):
            combined = math.hypot(fd.mcse[a], at_zero.jacobian_mcse[a, b])
            gap = fd.derivative[a] - at_zero.jacobian[a, b]
            assert abs(gap) < Z_TOL * combined, (name, obs, fd.derivative[a], at_zero.jacobian[a, b])
            if abs(at_zero.jacobian[a, b]) > 5 * combined:
                checked += 1
    assert checked >= 2  # (abc, teacher) and (norm, temper) are clearly non-zero responses


# ----------------------------------------------------------------------------- restriction


def _dln_2_2_2():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    model = model.to(F64)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
        model[1].weight.copy_(torch.tensor([[0.8, 0.0], [0.3, 1.2]]))
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = model(x).detach()
    return model, x, y


def _half_mse(out, y):
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def test_module_functions_use_the_sampler_layout():
    model, x, y = _dln_2_2_2()
    objective = ModuleObjective(model, x, y, _half_mse)
    loss = module_loss_function(model, x, y, _half_mse)
    per_sample = per_sample_loss_function(model, x, y, lambda o, t: 0.5 * ((o - t) ** 2).sum(-1))
    w = objective.center + 0.1 * torch.randn(8, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.allclose(loss(w), objective.full_loss(w[None])[0], rtol=1e-12)
    assert torch.allclose(per_sample(w).mean(), loss(w), rtol=1e-12)
    assert per_sample(w).shape == (16,)
    with pytest.raises(ValueError, match="per-sample losses"):
        per_sample_loss_function(model, x, y, _half_mse)


def test_network_path_influence_and_finite_difference_run_end_to_end():
    """A network with data: per-sample influence of a restricted layer, whose contributions sum
    to the susceptibility of the recorded loss, and the finite difference on the same network."""
    model, x, y = _dln_2_2_2()
    per_sample = per_sample_loss_function(model, x, y, lambda o, t: 0.5 * ((o - t) ** 2).sum(-1))
    settings_ = dict(data=(x, y), loss_fn=_half_mse, step_size=1e-3, num_chains=8, num_draws=30,
                     num_burnin_steps=10, restrict_to="1", progress=False, seed=2)
    observables = {"out": lambda w: w[4:].sum()}
    result = bayesian_influence(model, observables=observables, per_sample_losses=per_sample,
                                **settings_)
    assert result.chi.shape == (1, 16)
    assert result.nbeta == pytest.approx(16 / math.log(16))  # n / log n from the data
    loss_trace = result.llc.loss_trace
    phi = result.observable_draws[0]
    total = -np.mean((phi - phi.mean()) * (loss_trace - loss_trace.mean()))
    assert result.chi.mean() == pytest.approx(total, rel=1e-9)
    assert torch.equal(result.llc.trace.final_params[:, :4],
                       model[0].weight.detach().reshape(1, -1).expand(8, 4))
    fd = finite_difference_response(model, observables=observables,
                                    perturbation=lambda w: per_sample(w)[0], delta=0.05,
                                    **settings_)
    assert fd.derivative.shape == (1,) and np.isfinite(fd.mcse).all()
    assert fd.nbeta == result.nbeta


def test_restriction_by_name_equals_restriction_by_mask_and_freezes_the_rest():
    model, x, y = _dln_2_2_2()
    settings_ = dict(data=(x, y), loss_fn=_half_mse, nbeta=20.0, step_size=1e-3, num_chains=4,
                     num_draws=20, progress=False, seed=7)
    by_name = estimate_llc(model, restrict_to="0", **settings_)
    by_mask = estimate_llc(model, restrict_to=torch.tensor([True] * 4 + [False] * 4), **settings_)
    np.testing.assert_array_equal(by_name.loss_trace, by_mask.loss_trace)
    frozen = by_name.trace.final_params[:, 4:]
    assert torch.equal(frozen, model[1].weight.detach().reshape(1, -1).expand_as(frozen))
    assert not torch.equal(by_name.trace.final_params[:, :4],
                           model[0].weight.detach().reshape(1, -1).expand(4, 4))


def test_restricted_potential_embeds_the_free_coordinates():
    w0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    seen = []

    def potential(w):
        seen.append(w)
        return (w * torch.tensor([1.0, 10.0, 100.0], dtype=F64)).sum(-1)

    sub, init_sub = restricted_potential(potential, w0, torch.tensor([True, False, True]))
    assert torch.equal(init_sub, torch.tensor([1.0, 3.0], dtype=F64))
    assert float(sub(torch.tensor([5.0, 7.0], dtype=F64))) == 5.0 + 20.0 + 700.0
    assert torch.equal(seen[-1], torch.tensor([5.0, 2.0, 7.0], dtype=F64))


def test_weight_restricted_llc_of_a_dln_layer_matches_direct_and_exact():
    """Sampling only the first layer of a 2→2→2 DLN (the rest fixed at w*) against sampling the
    restricted potential directly, and both against the exact Gaussian value: in one layer the
    loss is quadratic with Hessian (BᵀB) ⊗ (XᵀX/n) (row-major vec), so the localised LLC is
    theory.regular.localized_llc of its eigenvalues."""
    model, x, y = _dln_2_2_2()
    t, gamma, eps, chains = 20.0, 1.0, 5e-4, 200
    b_w = model[1].weight.detach().numpy()
    hessian = np.kron(b_w.T @ b_w, (x.T @ x).numpy() / x.shape[0])
    eigenvalues = np.linalg.eigvalsh(hessian)
    exact = localized_llc(eigenvalues, nbeta=t, localization=gamma)
    precision = t * eigenvalues + gamma
    sgld_limit = 0.5 * np.sum(t * eigenvalues / (precision * (1 - eps * precision / 4)))

    w_star = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    mask = torch.tensor([True] * 4 + [False] * 4)
    rng = np.random.default_rng(3)
    cov = _sgld_covariance(t * hessian + gamma * np.eye(4), eps)
    start_sub = torch.tensor(w_star[:4].numpy() + rng.multivariate_normal(np.zeros(4), cov, chains))
    settings_ = dict(nbeta=t, localization=gamma, step_size=eps, num_chains=chains, num_draws=400,
                     num_steps_bw_draws=2, progress=False, seed=0)

    sub, init_sub = restricted_potential(module_loss_function(model, x, y, _half_mse), w_star, mask)
    direct = estimate_llc(sub, init=init_sub, chain_init=start_sub, **settings_)
    start_full = torch.cat([start_sub, w_star[4:].expand(chains, 4)], dim=1)
    restricted = component_llcs(model, {"layer 0": ["0"]}, data=(x, y), loss_fn=_half_mse,
                                chain_init=start_full, **settings_)["layer 0"]
    assert abs(sgld_limit - exact) < 0.5 * restricted.mcse  # step-size bias negligible
    for result in (direct, restricted):
        assert abs(result.llc_mean - exact) < Z_TOL * result.mcse, (result.llc_mean, exact)
        assert result.mcse < 0.05 * exact
    assert abs(direct.llc_mean - restricted.llc_mean) < Z_TOL * math.hypot(direct.mcse, restricted.mcse)


# ----------------------------------------------------------------------------- experiment


def test_smoke_susceptibility_response(tmp_path):
    from experiments.susceptibility_response import Config, main

    figure = tmp_path / "response.png"
    out = main(Config.quick_config(out_dir=tmp_path, figure=figure))
    assert figure.stat().st_size > 0
    assert (tmp_path / "susceptibility_response.json").stat().st_size > 0
    assert np.shape(out["jacobian"]) == (11, 12) == np.shape(out["jacobian_mcse"])
    assert len(out["finite_difference_check"]) == 11
    assert all(math.isfinite(row["z"]) for row in out["finite_difference_check"])
    # the weakest response of the map is along the singular (normal) direction of the truth
    assert out["weakest_direction_overlap_with_normal"] > 0.9
    assert out["response_along_normal"] < 0.6


def test_experiment_sources_are_loss_differences():
    from experiments.susceptibility_response import (
        make_loss, make_truth, source_deltas, source_names)

    truth = make_truth(1)
    loss = make_loss(truth)
    assert torch.allclose(truth.B @ truth.A, truth.M) and float(loss(truth.w_star)) < 1e-28
    assert torch.linalg.matrix_rank(truth.M) == 2
    assert float(torch.linalg.norm(truth.M @ truth.normal.T)) < 1e-12  # N is normal to M*
    w = truth.w_star + 0.3 * torch.randn(18, generator=torch.Generator().manual_seed(0), dtype=F64)
    deltas = source_deltas(truth, shift=0.7)(w)
    a, b = w[:9].reshape(3, 3), w[9:].reshape(3, 3)
    diff = b @ a - truth.M
    for k, name in enumerate(source_names()):
        if name.startswith("x||e"):
            axis = int(name[-1]) - 1  # x = √3 z e_axis: E½||Dx||² = (3/2)||D e_axis||²
            expected = 1.5 * float((diff[:, axis] ** 2).sum()) - float(loss(w))
        else:
            i, j = int(name[-2]) - 1, int(name[-1]) - 1
            shifted = diff.clone()
            shifted[i, j] -= 0.7
            expected = 0.5 * float((shifted**2).sum()) - float(loss(w))
        assert float(deltas[k]) == pytest.approx(expected, rel=1e-12, abs=1e-14), name
