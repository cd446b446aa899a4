"""Tests of toymodels/models/tms/ (the TMS models, classifier and samplers) and the TMS experiments.

The torch loss is checked against the independent exact implementation in theory/tms.py (value,
gradient, and — through the fully traced variant — the Hessian); the sampled-data loss against its
population limit and its hand-written gradient against autograd; the convex-hull classifier
against scipy's Qhull; the tempered MALA sampler against exact quadrature of a double well.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.spatial import ConvexHull

from theory import tms as T
from theory.regular import localized_llc
from toymodels import escaped_chains, llc_at_points, without_chains
from toymodels.models.tms import (
    ChenTMS,
    ElhageTMS,
    convex_hull_vertex_mask,
    dimensions_per_feature,
    empirical_loss,
    empirical_loss_gradient,
    empirical_loss_potential,
    flatten_params,
    kgon_label,
    kgon_labels,
    kgon_type,
    population_loss,
    population_loss_and_grad,
    sample_inputs,
    sgd_trajectories,
    tempered_posterior_mala,
    train_elhage,
    unflatten_params,
)
from toymodels.models.tms.loss import _population_loss_traced
from toymodels.sampling import SamplingTrace, SGLDHyperparameters

KGONS_C6 = [(k, s) for k in range(2, 7) for s in range(0, 6 - k + 1)]


def _kgon_flat(k, c, s):
    W, b = T.kgon_critical_point(k, c, s)
    return torch.tensor(T.flatten_params(W, b))


def _grad(fn, w):
    w = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(w).sum(), w)
    return g


# ---------------------------------------------------------------------------------------------
# exact population loss against theory/tms.py
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(c=st.integers(1, 7), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 2.0))
def test_population_loss_and_gradient_equal_theory_at_random_points(c, seed, scale):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(2, c)) * scale
    b = rng.normal(size=c) * scale
    w = torch.tensor(T.flatten_params(W, b))
    assert abs(population_loss(w).item() - T.population_loss(W, b)) <= 1e-12
    expected = T.population_loss_gradient(W, b)
    assert np.max(np.abs(_grad(population_loss, w).numpy() - expected)) <= 1e-12
    assert np.max(np.abs(_grad(_population_loss_traced, w).numpy() - expected)) <= 1e-12


@pytest.mark.parametrize("k,sigma", KGONS_C6)
def test_population_loss_equals_theory_at_every_kgon(k, sigma):
    w = _kgon_flat(k, 6, sigma)
    assert abs(population_loss(w).item() - float(T.kgon_loss(k, 6, sigma))) <= 1e-14
    W, b = T.kgon_critical_point(k, 6, sigma)
    loss, grad = population_loss_and_grad(w)
    assert np.max(np.abs(grad.numpy() - T.population_loss_gradient(W, b))) <= 1e-13
    assert abs(loss.item() - T.population_loss(W, b)) <= 1e-14


@pytest.mark.parametrize("k,sigma", [(5, 0), (5, 1), (6, 0)])
def test_traced_loss_hessian_equals_theory_at_analytic_kgons(k, sigma):
    w = _kgon_flat(k, 6, sigma)
    H = torch.autograd.functional.hessian(_population_loss_traced, w)
    W, b = T.kgon_critical_point(k, 6, sigma)
    assert np.max(np.abs(H.numpy() - T.population_loss_hessian(W, b))) <= 1e-12


def test_population_loss_is_batched_over_leading_dimensions():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 12, generator=gen, dtype=torch.float64)
    batched = population_loss(w)
    assert batched.shape == (3, 4)
    rows = torch.stack([torch.stack([population_loss(w[i, j]) for j in range(4)]) for i in range(3)])
    # the same loss; batched BLAS calls may sum in another order (a few ulps, by CPU)
    torch.testing.assert_close(batched, rows, rtol=1e-14, atol=1e-15)
    assert population_loss.batched is True
    g = _grad(population_loss, w)
    assert torch.allclose(g[1, 2], _grad(population_loss, w[1, 2]), rtol=0, atol=1e-15)


def test_dead_columns_add_one_third_over_c_each():
    c = 5
    w = torch.zeros(3 * c, dtype=torch.float64)
    w[2 * c:] = -0.3  # every column dead
    assert population_loss(w).item() == pytest.approx(1 / 3, abs=1e-15)
    w4 = _kgon_flat(4, 4, 0)  # zero loss at c = 4
    assert population_loss(w4).item() == pytest.approx(0.0, abs=1e-15)


def test_population_loss_rejects_bad_dimension():
    with pytest.raises(ValueError, match="3c"):
        population_loss(torch.zeros(7, dtype=torch.float64))


def test_flatten_and_unflatten_round_trip_in_theory_order():
    W = torch.arange(12.0).reshape(2, 6)
    b = torch.arange(100.0, 106.0)
    w = flatten_params(W, b)
    assert w.tolist() == T.flatten_params(W.numpy(), b.numpy()).tolist()
    W2, b2 = unflatten_params(w)
    assert torch.equal(W2, W) and torch.equal(b2, b)


# ---------------------------------------------------------------------------------------------
# sampled data, the module, SGD
# ---------------------------------------------------------------------------------------------


def test_sample_inputs_are_scaled_basis_vectors():
    gen = torch.Generator().manual_seed(1)
    x = sample_inputs(6, 5000, shape=(2,), generator=gen)
    assert x.shape == (2, 5000, 6)
    assert torch.all((x > 0).sum(-1) == 1)
    mu = x.sum(-1)
    assert 0 < mu.min() and mu.max() < 1
    counts = (x > 0).sum((0, 1)).double()
    assert torch.all((counts / counts.sum() - 1 / 6).abs() < 0.02)
    with pytest.raises(ValueError, match="positive int"):
        sample_inputs(6, 0)


def test_empirical_loss_tends_to_population_loss():
    gen = torch.Generator().manual_seed(2)
    w = _kgon_flat(5, 6, 1) + 0.1 * torch.randn(18, generator=gen, dtype=torch.float64)
    x = sample_inputs(6, 200_000, generator=gen)
    W, b = unflatten_params(w)
    per_sample = ((x - torch.relu(x @ W.T @ W + b)) ** 2).sum(-1)
    se = per_sample.std().item() / math.sqrt(x.shape[0])
    assert abs(empirical_loss(w, x).item() - population_loss(w).item()) <= 4 * se
    assert empirical_loss_potential(x)(w.unsqueeze(0)).shape == (1,)


def test_empirical_gradient_matches_autograd_and_module():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(4, 18, generator=gen, dtype=torch.float64)
    x = sample_inputs(6, 50, shape=(4,), generator=gen)
    loss, grad = empirical_loss_gradient(w, x)
    wg = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(empirical_loss(wg, x).sum(), wg)
    assert torch.allclose(grad, auto, rtol=0, atol=1e-13)
    assert torch.allclose(loss, empirical_loss(w, x), rtol=0, atol=1e-15)
    model = ChenTMS.from_flat(w[0])
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(flat, w[0])
    assert ChenTMS.loss_fn(model(x[0]), x[0]).item() == pytest.approx(loss[0].item(), abs=1e-14)


def test_full_batch_sgd_epoch_is_one_gradient_step():
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(3, 18, generator=gen, dtype=torch.float64)
    x = sample_inputs(6, 40, shape=(3,), generator=gen)
    rec = sgd_trajectories(w0, x, lr=0.01, batch_size=40, num_epochs=2, record_every=1, generator=gen)
    assert rec.shape == (3, 3, 18)
    _, g0 = empirical_loss_gradient(w0, x)
    w1 = w0 - 0.01 * g0
    assert torch.allclose(rec[1], w1, rtol=0, atol=1e-14)
    _, g1 = empirical_loss_gradient(w1, x)
    assert torch.allclose(rec[2], w1 - 0.01 * g1, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="same R"):
        sgd_trajectories(w0, x[:2], lr=0.01, batch_size=4, num_epochs=1)


def test_sgd_from_a_4gon_with_a_positive_extra_bias_reaches_the_4_plus_level():
    # one extra column with a clearly positive bias: SGD moves it to 1/(2c), the 4⁺ plateau
    W, b = T.kgon_critical_point(4, 6, 0)
    b[4] = 0.02
    b[5] = -0.5
    gen = torch.Generator().manual_seed(5)
    x = sample_inputs(6, 1000, shape=(2,), generator=gen)
    w0 = torch.tensor(T.flatten_params(W, b)).expand(2, -1)
    rec = sgd_trajectories(w0, x, lr=0.005, batch_size=20, num_epochs=30, record_every=30, generator=gen)
    final = population_loss(rec[-1])
    assert torch.all((final - 5 / 48).abs() < 1e-3)
    assert kgon_labels(rec[-1]).tolist() == ["4+", "4+"]


# ---------------------------------------------------------------------------------------------
# the k-gon classifier
# ---------------------------------------------------------------------------------------------


def test_convex_hull_vertices_agree_with_qhull():
    rng = np.random.default_rng(6)
    for _ in range(300):
        c = int(rng.integers(3, 9))
        pts = rng.normal(size=(c, 2))
        mask = convex_hull_vertex_mask(torch.tensor(pts), norm_tol=0.0).numpy()
        expected = np.zeros(c, dtype=bool)
        expected[ConvexHull(pts).vertices] = True
        assert np.array_equal(mask, expected)


def test_convex_hull_edge_points_and_short_columns_are_not_vertices():
    square = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1], [0.5, 0.5], [0.01, 0.0]],
                          dtype=torch.float64)
    mask = convex_hull_vertex_mask(square, norm_tol=0.1)
    assert mask.tolist() == [True, True, True, True, False, False]
    two = torch.tensor([[1.0, 0], [-1.0, 0], [0.0, 0.0]], dtype=torch.float64)
    assert convex_hull_vertex_mask(two).tolist() == [True, True, False]


@pytest.mark.parametrize("k,sigma", KGONS_C6)
def test_kgon_type_names_every_critical_point_under_symmetries(k, sigma):
    w = _kgon_flat(k, 6, sigma)
    assert tuple(int(v) for v in kgon_type(w)) == (k, sigma)
    W, b = unflatten_params(w)
    gen = torch.Generator().manual_seed(k * 10 + sigma)
    theta = 2.0
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                       dtype=torch.float64)
    reflect = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    perm = torch.randperm(6, generator=gen)
    moved = flatten_params((reflect @ rot @ W)[:, perm], b[perm])
    moved = moved + 1e-3 * torch.randn(18, generator=gen, dtype=torch.float64)
    assert tuple(int(v) for v in kgon_type(moved)) == (k, sigma)
    assert kgon_labels(torch.stack([w, moved])).tolist() == [kgon_label(k, sigma)] * 2


def test_kgon_label_format():
    assert kgon_label(5, 0) == "5" and kgon_label(4, 2) == "4++"


# ---------------------------------------------------------------------------------------------
# escaped chains, LLC at many points
# ---------------------------------------------------------------------------------------------


def _trace(loss: np.ndarray, init_loss: float) -> SamplingTrace:
    z = np.zeros_like(loss)
    return SamplingTrace(loss=loss, init_loss=init_loss, grad_norm=z, distance=z, drift_norm=z,
                         noise_norm=z, hyper=SGLDHyperparameters(1e-3, 10.0, 1.0),
                         num_burnin_steps=0, num_steps_bw_draws=1,
                         kept_chains=list(range(loss.shape[0])),
                         final_params=torch.arange(loss.shape[0] * 2.0).reshape(-1, 2))


def test_escaped_chains_are_those_below_init_more_than_the_fraction():
    loss = np.ones((4, 100))
    loss[1, :5] = 0.5  # exactly 5%: not escaped
    loss[2, :6] = 0.5  # 6%: escaped
    loss[3, 50:] = 0.2  # escaped
    trace = _trace(loss, init_loss=0.9)
    assert escaped_chains(trace) == [2, 3]
    assert escaped_chains(trace, fraction=0.5) == []
    kept = without_chains(trace, [2, 3])
    assert kept.num_chains == 2 and kept.kept_chains == [0, 1]
    assert torch.equal(kept.final_params, trace.final_params[:2])
    with pytest.raises(ValueError, match="fraction"):
        escaped_chains(trace, fraction=1.5)
    with pytest.raises(ValueError, match="every chain"):
        without_chains(trace, [0, 1, 2, 3])


def test_llc_at_points_matches_the_localized_quadratic_target():
    # two points with different quadratic losses, centred at different places
    a = torch.tensor([[1.0, 4.0], [0.5, 2.0]], dtype=torch.float64)
    centers = torch.tensor([[0.3, -0.2], [1.0, 2.0]], dtype=torch.float64)

    def loss_fn(w):  # (P, C, 2) -> (P, C)
        z = w - centers.unsqueeze(1)
        return 0.5 * (a.unsqueeze(1) * z * z).sum(-1)

    nbeta, gamma = 100.0, 10.0
    res = llc_at_points(loss_fn, centers, nbeta=nbeta, step_size=1e-4, localization=gamma,
                        num_chains=400, num_draws=400, num_burnin_steps=300, seed=0)
    for p in range(2):
        target = localized_llc(a[p].tolist(), nbeta=nbeta, localization=gamma)
        assert abs(res.llc_mean[p] - target) <= 4 * res.mcse[p] + 0.01 * target
    assert not res.escaped.any()
    with pytest.raises(ValueError, match="num_chains"):
        llc_at_points(loss_fn, centers, nbeta=1.0, step_size=1e-3, localization=0.0,
                      num_chains=1, num_draws=10)


# ---------------------------------------------------------------------------------------------
# parallel tempering with MALA
# ---------------------------------------------------------------------------------------------


def _double_well(w):
    x = w[..., 0]
    return 0.25 * (x * x - 1) ** 2 + 0.05 * x


def test_tempered_mala_puts_the_exact_mass_in_each_well():
    ns = [0.5, 2.0, 8.0, 32.0]
    init = torch.full((64, 4, 1), 1.0, dtype=torch.float64)  # every replica starts in the right well
    out = tempered_posterior_mala(_double_well, ns, init, num_steps=1500, num_burnin_steps=300,
                                  record_every=5, seed=0)
    assert out.draws.shape == (300, 64, 4, 1)
    for r, n in enumerate(ns):
        def dens(x, n=n):
            return math.exp(-n * (0.25 * (x * x - 1) ** 2 + 0.05 * x) - 0.5 * x * x)
        left = quad(dens, -10, 0)[0]
        right = quad(dens, 0, 10)[0]
        exact = left / (left + right)
        per_ladder = (out.draws[..., r, 0] < 0).double().mean(0).numpy()
        se = per_ladder.std(ddof=1) / math.sqrt(per_ladder.size)
        assert abs(per_ladder.mean() - exact) <= 4 * se + 0.01, (n, per_ladder.mean(), exact)
    assert np.all(out.acceptance > 0.4) and np.all(out.swap_rate > 0.2)


def test_tempered_mala_samples_a_gaussian_posterior_exactly():
    # L = ½ w², prior N(0, I): p_n = N(0, 1/(n + 1)) in every coordinate; no swaps needed
    def quadratic(w):
        return 0.5 * (w * w).sum(-1)

    init = torch.zeros(200, 2, 3, dtype=torch.float64)
    out = tempered_posterior_mala(quadratic, [1.0, 9.0], init, num_steps=500,
                                  num_burnin_steps=200, record_every=5, seed=1)
    for r, n in enumerate([1.0, 9.0]):
        var = out.draws[:, :, r].pow(2).mean().item()
        assert var == pytest.approx(1 / (n + 1), rel=0.05)


def test_tempered_mala_rejects_bad_shapes():
    with pytest.raises(ValueError, match="ladders"):
        tempered_posterior_mala(_double_well, [1.0, 2.0], torch.zeros(3, 1), num_steps=1,
                                num_burnin_steps=0)


# ---------------------------------------------------------------------------------------------
# the Elhage model
# ---------------------------------------------------------------------------------------------


def test_elhage_batch_sparsity_and_loss():
    gen = torch.Generator().manual_seed(7)
    model = ElhageTMS(5, 2, torch.tensor([1.0, 0.1]), 0.9 ** torch.arange(5.0), generator=gen)
    x = model.generate_batch(20_000, gen)
    assert x.shape == (20_000, 2, 5)
    on = (x > 0).float().mean((0, 2))
    assert on[0].item() == pytest.approx(1.0, abs=1e-3) and on[1].item() == pytest.approx(0.1, abs=0.01)
    W, b = model.W.detach(), model.b.detach()
    out = torch.relu(torch.einsum("bin,imn,imk->bik", x, W, W) + b)
    manual = (((x - out) ** 2) * model.importance).sum(-1).mean(0)
    assert torch.allclose(model.loss_per_instance(x), manual, rtol=1e-5)
    with pytest.raises(ValueError, match="feature_probability"):
        ElhageTMS(5, 2, torch.tensor([0.0]))


def test_dimensions_per_feature_on_known_geometries():
    angles = torch.arange(5) * 2 * math.pi / 5
    pentagon = torch.stack([angles.cos(), angles.sin()]).double()
    assert torch.allclose(dimensions_per_feature(pentagon), torch.full((5,), 0.4, dtype=torch.float64))
    pair = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    assert dimensions_per_feature(pair).tolist() == [0.5, 0.5, 1.0, 0.0]


def test_elhage_dense_two_features_become_orthogonal():
    gen = torch.Generator().manual_seed(8)
    model = ElhageTMS(2, 2, torch.tensor([1.0, 1.0]), generator=gen)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors
    try:
        train_elhage(model, steps=300, batch_size=128, lr=3e-2, weight_decay=0.0, generator=gen)
    finally:
        torch.set_num_threads(previous)
    dims = dimensions_per_feature(model.W.detach())
    assert torch.all((dims - 1).abs() < 0.05)


# ---------------------------------------------------------------------------------------------
# experiments: helpers and smoke tests
# ---------------------------------------------------------------------------------------------


def test_discrete_quadratic_llc_is_the_ar1_stationary_value():
    from experiments.tms_kgon_llc import discrete_quadratic_llc

    eig = [0.0, 0.5, 2.0]
    small = discrete_quadratic_llc(eig, nbeta=100.0, localization=1.0, step_size=1e-9)
    assert small == pytest.approx(localized_llc(eig, nbeta=100.0, localization=1.0), rel=1e-7)
    h = 1e-3 * (200.0 + 1.0) / 2
    exact = 0.5 * 200 / ((200 + 1) * (1 - h / 2)) + 0.5 * 50 / ((50 + 1) * (1 - 1e-3 * 51 / 4))
    assert discrete_quadratic_llc(eig, nbeta=100.0, localization=1.0, step_size=1e-3) == pytest.approx(exact)


def test_bayesian_helpers():
    from experiments.tms_bayesian_transition import crossing, largest_root, laplace_log_evidence

    ns = np.array([100.0, 200.0, 400.0, 800.0])
    f5 = np.array([0.8, 0.6, 0.3, 0.1])
    f6 = np.array([0.1, 0.3, 0.6, 0.8])
    nc = crossing(ns, f5, f6)
    odds = np.log(f6 / f5)
    expected = math.exp(math.log(200) + (0 - odds[1]) * (math.log(400) - math.log(200)) / (odds[2] - odds[1]))
    assert nc == pytest.approx(expected)
    assert largest_root(lambda x: (x - 3) * (x - 30), 1.0, 100.0) == pytest.approx(30.0)
    # doubling the dead set's mass moves log Z by exactly log 2
    assert laplace_log_evidence(5, 6, 500.0, 0.02) - laplace_log_evidence(5, 6, 500.0, 0.01) == \
        pytest.approx(math.log(2))


def test_sgd_plateau_segmentation():
    from experiments.tms_sgd_plateaus import plateaus

    labels = np.array(["4"] * 10 + ["4+"] * 3 + ["5"] * 12)
    losses = np.concatenate([np.full(10, 0.11), np.full(3, 0.1), np.full(12, 0.07)])
    losses[9] = 0.5  # leaving the plateau: trimmed from its median
    losses[13:15] = 0.09  # still settling: trimmed
    segs = plateaus(labels, losses, min_len=5, skip=2)
    assert [(s[0], s[1], s[2]) for s in segs] == [("4", 0, 10), ("5", 13, 25)]
    assert segs[0][3] == 0.11 and segs[1][3] == pytest.approx(0.07)


def test_validate_tms_cases_are_the_three_kgons():
    from toymodels.validation.tms import cases

    cs = cases(scale=0.02)
    assert [c.llc for c in cs] == [T.kgon_learning_coefficient(5, 6, 0),
                                  T.kgon_learning_coefficient(5, 6, 1),
                                  T.kgon_learning_coefficient(6, 6, 0)]
    for case in cs:
        target = case.target()
        assert 0.97 * float(case.llc) < target < float(case.llc)
    result = cs[0].run()  # runs end to end at a tiny budget
    assert result.num_chains == 4 and math.isfinite(result.llc_mean)
    with pytest.raises(ValueError, match="scale"):
        cases(scale=0)


def test_smoke_tms_kgon_llc(tmp_path):
    from experiments.tms_kgon_llc import Config, main

    res = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "k.png"))
    assert (tmp_path / "tms_kgon_llc.json").exists() and (tmp_path / "k.png").exists()
    assert {r["point"] for r in res["rows"]} == {"5", "5+", "6"}


def test_smoke_tms_sgd_plateaus(tmp_path):
    from experiments.tms_sgd_plateaus import Config, main

    res = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "s.png"))
    assert (tmp_path / "tms_sgd_plateaus.json").exists() and (tmp_path / "s.png").exists()
    assert sum(res["final_counts"].values()) == 6


def test_smoke_tms_bayesian_transition(tmp_path):
    from experiments.tms_bayesian_transition import Config, main

    res = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "b.png"))
    assert (tmp_path / "tms_bayesian_transition.json").exists() and (tmp_path / "b.png").exists()
    assert res["crossing_theory"] == pytest.approx(601, abs=1)


def test_smoke_tms_superposition(tmp_path):
    from experiments.tms_superposition import Config, main

    res = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "p.png"))
    assert (tmp_path / "tms_superposition.json").exists() and (tmp_path / "p.png").exists()
    assert len(res["final_loss"]) == 6


def test_population_loss_works_under_torch_func_transforms():
    w = _kgon_flat(6, 6, 0) + 0.05
    W, b = T.unflatten_params(w.numpy(), 6)
    g = torch.func.grad(population_loss)(w)
    assert np.max(np.abs(g.numpy() - T.population_loss_gradient(W, b))) <= 1e-13
    batch = torch.stack([w, 2 * w])
    assert torch.allclose(torch.func.vmap(population_loss)(batch), population_loss(batch), rtol=0, atol=0)
    with torch.no_grad():
        assert population_loss(w).item() == pytest.approx(T.population_loss(W, b), abs=1e-14)
