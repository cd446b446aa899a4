"""Tests for in-context linear regression: exact risks (theory.icl), predictors and sampler
(toymodels.models.icl), the transformer (toymodels.models.transformer), and smoke runs of the experiments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from theory import icl as theory_icl
from toymodels.models.icl import (
    InContextRegression,
    ModelEnsemble,
    dmmse_predictions,
    icl_mse,
    log_spaced_steps,
    nested_task_pool,
    position_risks,
    ridge_predictions,
    sample_icl_batch,
    sample_tasks,
    warmup_cosine_lr,
)
from toymodels.models.transformer import ICLTransformer, ICLTransformerConfig, tokenize_icl

# ---------------------------------------------------------------------------------------------
# theory.icl: exact risks


def test_first_position_ridge_risk_is_dim_plus_noise():
    for dim, s2 in [(1, 0.5), (4, 0.125), (8, 0.25)]:
        assert theory_icl.ridge_bayes_risk(1, dim, s2) == dim + s2
        assert theory_icl.first_position_bayes_risk(dim, s2) == dim + s2


@pytest.mark.parametrize("dim, s2", [(1, 0.3), (4, 0.125), (5, 2.0)])
def test_second_position_ridge_risk_matches_chi_square_integral(dim, s2):
    # One context pair: tr(I + xxᵀ/σ²)⁻¹ = D - 1 + σ²/(σ² + ||x||²) with ||x||² ~ χ²_D.
    expected_g, _ = integrate.quad(lambda q: s2 / (s2 + q) * stats.chi2(dim).pdf(q), 0, np.inf, epsrel=1e-13)
    assert theory_icl.ridge_bayes_risk(2, dim, s2) == pytest.approx(s2 + dim - 1 + expected_g, rel=1e-10)


@pytest.mark.parametrize("num_context, dim", [(9, 3), (20, 4), (30, 6)])
def test_small_noise_limit_is_inverse_wishart_mean(num_context, dim):
    # E tr(I + XᵀX/σ²)⁻¹ = σ² E tr (XᵀX)⁻¹ + O(σ⁴) and E (XᵀX)⁻¹ = I/(n - D - 1).
    s2 = 1e-7
    value = theory_icl.expected_trace_posterior_covariance(num_context, dim, s2)
    assert value / s2 == pytest.approx(dim / (num_context - dim - 1), rel=1e-4)


def test_published_mean_ridge_risk():
    # Hoogland et al. 2024 (D = 4, K = 8, σ² = 0.125): ridge's loss averaged over positions ≈ 1.659.
    assert theory_icl.ridge_mean_bayes_risk(8, 4, 0.125) == pytest.approx(1.659, abs=5e-4)


@pytest.mark.parametrize(
    "num_context, dim, s2",
    [(1, 4, 0.125), (3, 4, 0.125), (4, 4, 0.125), (6, 4, 0.5), (7, 8, 0.25), (12, 5, 0.125), (15, 8, 0.125), (30, 10, 0.01)],
)
def test_expected_trace_matches_monte_carlo(num_context, dim, s2):
    rng = np.random.default_rng(1000 * num_context + dim)
    samples = 20000
    x = rng.standard_normal((samples, num_context, dim))
    precision = np.einsum("snd,sne->sde", x, x) / s2 + np.eye(dim)
    traces = np.trace(np.linalg.inv(precision), axis1=1, axis2=2)
    standard_error = traces.std() / math.sqrt(samples)
    exact = theory_icl.expected_trace_posterior_covariance(num_context, dim, s2)
    assert abs(traces.mean() - exact) < 3 * standard_error


@settings(deadline=None, max_examples=15)
@given(dim=st.integers(1, 6), s2=st.floats(0.01, 4.0), num_examples=st.integers(2, 10))
def test_ridge_risks_decrease_from_prior_to_noise(dim, s2, num_examples):
    risks = theory_icl.ridge_bayes_risks(num_examples, dim, s2)
    assert risks[0] == dim + s2
    assert all(later < earlier for earlier, later in zip(risks, risks[1:]))
    assert all(r > s2 for r in risks)


def test_dmmse_first_position_risks():
    pool = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
    mean = pool.mean(axis=0)
    spread = ((pool - mean) ** 2).sum(axis=1).mean()
    assert theory_icl.dmmse_first_position_risk(pool, 0.25) == pytest.approx(0.25 + spread, rel=1e-15)
    assert theory_icl.dmmse_first_position_risk(pool[:1], 0.25) == 0.25
    assert theory_icl.dmmse_first_position_risk_gaussian_tasks(pool, 0.25) == pytest.approx(
        0.25 + 2 + mean @ mean, rel=1e-15
    )


def test_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="position"):
        theory_icl.ridge_bayes_risk(0, 4, 0.125)
    with pytest.raises(ValueError, match="noise_variance"):
        theory_icl.ridge_bayes_risk(2, 4, 0.0)
    with pytest.raises(ValueError, match="dim"):
        theory_icl.ridge_bayes_risk(2, 0, 0.1)
    with pytest.raises(ValueError, match="task_pool"):
        theory_icl.dmmse_first_position_risk(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="Monte Carlo"):
        theory_icl.expected_trace_posterior_covariance(20, 12, 0.1)


# ---------------------------------------------------------------------------------------------
# toymodels.models.icl: tasks and sampler


@settings(deadline=None, max_examples=20)
@given(small=st.integers(1, 600), extra=st.integers(0, 600), seed=st.integers(0, 5))
def test_task_pools_are_nested(small, extra, seed):
    big = nested_task_pool(small + extra, 3, seed, dtype=torch.float64)
    assert torch.equal(nested_task_pool(small, 3, seed, dtype=torch.float64), big[:small])


def test_task_pools_differ_by_seed_and_look_gaussian():
    pool = nested_task_pool(4096, 4, 0, dtype=torch.float64)
    assert not torch.equal(pool[:10], nested_task_pool(10, 4, 1, dtype=torch.float64))
    # Mean and variance of 16384 standard normals: |mean| < 4 SE, variance within 4 SE.
    assert abs(pool.mean().item()) < 4 / math.sqrt(pool.numel())
    assert abs(pool.var().item() - 1) < 4 * math.sqrt(2 / pool.numel())


def test_sample_tasks_respects_pool_sizes():
    pool = nested_task_pool(64, 4, 7, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    tasks = sample_tasks([1, 8, 64, None], 2000, generator, dim=4, task_pool=pool, dtype=torch.float64)
    assert tasks.shape == (4, 2000, 4)
    assert torch.equal(tasks[0], pool[0].expand(2000, 4))
    for row, m in [(1, 8), (2, 64)]:
        used = {tuple(t) for t in tasks[row].tolist()}
        allowed = {tuple(t) for t in pool[:m].tolist()}
        assert used <= allowed and len(used) == m  # every task of the pool appears in 2000 draws
    assert not any(tuple(t) in {tuple(p) for p in pool.tolist()} for t in tasks[3].tolist())


def test_sampling_is_reproducible_and_uses_no_global_rng():
    task = InContextRegression(num_tasks=16)
    state = torch.random.get_rng_state()
    first = task.sample(32, torch.Generator().manual_seed(3))
    second = task.sample(32, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_sample_icl_batch_labels_follow_the_task():
    generator = torch.Generator().manual_seed(0)
    tasks = torch.randn(5000, 3, generator=generator, dtype=torch.float64)
    batch = sample_icl_batch(tasks, 6, 0.5, generator)
    noise = batch.ys - (batch.xs @ tasks.unsqueeze(-1)).squeeze(-1)
    assert abs(noise.var().item() - 0.5) < 4 * 0.5 * math.sqrt(2 / noise.numel())


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        InContextRegression(num_tasks=0)
    with pytest.raises(ValueError, match="noise_variance"):
        InContextRegression(noise_variance=-1.0)
    with pytest.raises(ValueError, match="nested_task_pool"):
        sample_tasks([10], 4, torch.Generator(), dim=2, task_pool=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="task_pool"):
        sample_tasks([3], 4, torch.Generator(), dim=2)


# ---------------------------------------------------------------------------------------------
# toymodels.models.icl: exact predictors


def _sequences(num, dim=4, k=8, s2=0.125, seed=0, num_tasks=None):
    task = InContextRegression(dim=dim, num_examples=k, noise_variance=s2, num_tasks=num_tasks)
    return task, task.sample(num, torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_ridge_predictions_match_a_direct_solve():
    task, batch = _sequences(20)
    predictions = ridge_predictions(batch.xs, batch.ys, task.noise_variance)
    for b in range(20):
        for k in range(task.num_examples):
            x, y = batch.xs[b, :k], batch.ys[b, :k]
            w = torch.linalg.solve(x.T @ x + task.noise_variance * torch.eye(task.dim, dtype=x.dtype), x.T @ y)
            assert predictions[b, k].item() == pytest.approx((batch.xs[b, k] @ w).item(), abs=1e-12)
    assert torch.all(predictions[:, 0] == 0)


def test_dmmse_predictions_match_a_direct_posterior_mean():
    task, batch = _sequences(10, num_tasks=5, seed=2)
    pool = task.task_pool(torch.float64)
    predictions = dmmse_predictions(batch.xs, batch.ys, pool, task.noise_variance)
    for b in range(10):
        for k in range(task.num_examples):
            log_lik = torch.tensor(
                [-((batch.ys[b, :k] - batch.xs[b, :k] @ t) ** 2).sum().item() / (2 * task.noise_variance) for t in pool],
                dtype=torch.float64,
            )
            posterior = torch.exp(log_lik - log_lik.max())
            posterior /= posterior.sum()
            expected = batch.xs[b, k] @ (posterior @ pool)
            assert predictions[b, k].item() == pytest.approx(expected.item(), abs=1e-12)


def test_dmmse_chunking_and_single_task_pool():
    task, batch = _sequences(300, num_tasks=50, seed=3)
    pool = task.task_pool(torch.float64)
    whole = dmmse_predictions(batch.xs, batch.ys, pool, task.noise_variance)
    chunked = dmmse_predictions(batch.xs, batch.ys, pool, task.noise_variance, max_elements=1000)
    torch.testing.assert_close(whole, chunked, rtol=0, atol=1e-13)
    single = dmmse_predictions(batch.xs, batch.ys, pool[:1], task.noise_variance)
    torch.testing.assert_close(single, batch.xs @ pool[0], rtol=0, atol=1e-13)


def test_ridge_monte_carlo_risk_matches_exact_risk_per_position():
    task, batch = _sequences(40000, seed=4)
    mean, se = position_risks(ridge_predictions(batch.xs, batch.ys, task.noise_variance), batch.ys)
    exact = torch.tensor(theory_icl.ridge_bayes_risks(task.num_examples, task.dim, task.noise_variance), dtype=torch.float64)
    assert torch.all((mean - exact).abs() < 3 * se), (mean, exact, se)


def test_dmmse_monte_carlo_first_position_risks_match_exact():
    task, batch = _sequences(40000, num_tasks=6, seed=5)
    pool = task.task_pool(torch.float64)
    fresh = task.sample(40000, torch.Generator().manual_seed(6), gaussian_tasks=True, dtype=torch.float64)
    for data, exact in [
        (batch, theory_icl.dmmse_first_position_risk(pool.numpy(), task.noise_variance)),
        (fresh, theory_icl.dmmse_first_position_risk_gaussian_tasks(pool.numpy(), task.noise_variance)),
    ]:
        mean, se = position_risks(dmmse_predictions(data.xs, data.ys, pool, task.noise_variance), data.ys)
        assert abs(mean[0].item() - exact) < 3 * se[0].item()
    # On its own pool with M = 1, dMMSE knows the task: the risk is σ² at every position.
    single = InContextRegression(num_tasks=1)
    data = single.sample(40000, torch.Generator().manual_seed(7), dtype=torch.float64)
    errors = (dmmse_predictions(data.xs, data.ys, single.task_pool(torch.float64), 0.125) - data.ys).square()
    assert abs(errors.mean().item() - 0.125) < 3 * errors.std().item() / math.sqrt(errors.numel())


def test_bayes_optimal_decomposition():
    """E(f - y)² = E(ridge - y)² + E(f - ridge)² for any f of the context when ridge is the
    posterior mean (M = ∞), i.e. the cross term E[(f - ridge)(ridge - y)] vanishes; same for
    dMMSE on its own pool."""
    model = ICLTransformer(ICLTransformerConfig(d_model=16, num_layers=1, num_heads=2, d_mlp=16)).double()
    task, batch = _sequences(40000, seed=8)
    pool = nested_task_pool(4, 4, 0, dtype=torch.float64)
    ridge = ridge_predictions(batch.xs, batch.ys, task.noise_variance)
    with torch.no_grad():
        network = model(tokenize_icl(batch.xs, batch.ys))
    for other in (network, dmmse_predictions(batch.xs, batch.ys, pool, task.noise_variance)):
        cross = (other - ridge) * (ridge - batch.ys)  # (N, K)
        assert torch.all(cross.mean(0).abs() < 3 * cross.std(0) / math.sqrt(cross.shape[0]))
        lhs = (other - batch.ys).square().mean(0)
        rhs = (ridge - batch.ys).square().mean(0) + (other - ridge).square().mean(0)
        torch.testing.assert_close(lhs - rhs, 2 * cross.mean(0), rtol=0, atol=1e-10)
    pooled = InContextRegression(num_tasks=4)
    data = pooled.sample(40000, torch.Generator().manual_seed(9), dtype=torch.float64)
    best = dmmse_predictions(data.xs, data.ys, pool, 0.125)
    cross = (ridge_predictions(data.xs, data.ys, 0.125) - best) * (best - data.ys)
    assert torch.all(cross.mean(0).abs() < 3 * cross.std(0) / math.sqrt(cross.shape[0]))


def test_predictors_reject_bad_shapes():
    with pytest.raises(ValueError, match="xs must have shape"):
        ridge_predictions(torch.zeros(3, 8, 4), torch.zeros(3, 7), 0.1)
    with pytest.raises(ValueError, match="task_pool"):
        dmmse_predictions(torch.zeros(3, 8, 4), torch.zeros(3, 8), torch.zeros(5, 3), 0.1)
    with pytest.raises(ValueError, match="same shape"):
        position_risks(torch.zeros(3, 8), torch.zeros(3, 7))


# ---------------------------------------------------------------------------------------------
# toymodels.models.transformer


def test_tokenize_layout():
    xs = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)
    ys = -torch.arange(1, 7, dtype=torch.float64).reshape(2, 3)
    tokens = tokenize_icl(xs, ys)
    assert tokens.shape == (2, 5, 3)
    torch.testing.assert_close(tokens[1, 2], torch.tensor([0.0, 8.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(tokens[1, 3], torch.tensor([-5.0, 0.0, 0.0], dtype=torch.float64))


def test_transformer_is_causal_and_shaped():
    config = ICLTransformerConfig(dim=3, num_examples=5, d_model=16, num_layers=2, num_heads=4, d_mlp=8)
    model = ICLTransformer(config, torch.Generator().manual_seed(0)).double()
    generator = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    ys = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    out = model(tokenize_icl(xs, ys))
    assert out.shape == (4, 5)
    for k in range(5):
        # Changing y_k and anything later must leave predictions 1..k unchanged (k is 0-based here).
        xs2, ys2 = xs.clone(), ys.clone()
        ys2[:, k:] += 1.0
        xs2[:, k + 1 :] += 1.0
        out2 = model(tokenize_icl(xs2, ys2))
        torch.testing.assert_close(out2[:, : k + 1], out[:, : k + 1], rtol=0, atol=1e-12)
        if k + 1 < 5:
            assert not torch.allclose(out2[:, k + 1], out[:, k + 1])


def test_transformer_init_uses_only_its_generator():
    config = ICLTransformerConfig(d_model=16, num_heads=2, d_mlp=16)
    state = torch.random.get_rng_state()
    a = ICLTransformer(config, torch.Generator().manual_seed(5))
    b = ICLTransformer(config, torch.Generator().manual_seed(5))
    c = ICLTransformer(config, torch.Generator().manual_seed(6))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if "ln" not in name:
            assert not torch.equal(pa, pc), name


def test_transformer_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="must divide d_model"):
        ICLTransformerConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="d_model"):
        ICLTransformerConfig(d_model=0)
    with pytest.raises(ValueError, match="tokenize_icl"):
        ICLTransformer(ICLTransformerConfig(d_model=16))(torch.zeros(2, 16, 5))


# ---------------------------------------------------------------------------------------------
# toymodels.models.icl: ensembles and schedules


def _small_ensemble(seeds, dtype=torch.float32):
    config = ICLTransformerConfig(d_model=16, num_layers=2, num_heads=2, d_mlp=16)
    return ModelEnsemble(lambda generator: ICLTransformer(config, generator).to(dtype), seeds)


def test_ensemble_forward_equals_members():
    ensemble = _small_ensemble([0, 1, 2])
    batch = InContextRegression().sample(12, torch.Generator().manual_seed(0))
    tokens = tokenize_icl(batch.xs, batch.ys).reshape(3, 4, 15, 5)
    out = ensemble(tokens)
    for e, seed in enumerate([0, 1, 2]):
        alone = ICLTransformer(ensemble._member_template.config, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(out[e], alone(tokens[e]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[e], ensemble.member(e)(tokens[e]), rtol=1e-5, atol=1e-6)


def test_one_adam_on_stacked_parameters_equals_independent_adams():
    # float64: Adam's first steps are ≈ lr·sign(g), so float32 rounding of near-zero gradient
    # entries would be amplified into visible differences.
    ensemble = _small_ensemble([3, 4], torch.float64)
    optimiser = torch.optim.Adam(ensemble.params.values(), lr=1e-2)
    members = [ensemble.member(e) for e in range(2)]
    member_optimisers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in members]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = InContextRegression().sample(16, generator, dtype=torch.float64)
        tokens = tokenize_icl(batch.xs, batch.ys).reshape(2, 8, 15, 5)
        ys = batch.ys.reshape(2, 8, 8)
        loss = (ensemble(tokens) - ys).square().mean(dim=(1, 2)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        for e, (m, opt) in enumerate(zip(members, member_optimisers)):
            opt.zero_grad()
            icl_mse(m(tokens[e]), ys[e]).backward()
            opt.step()
    for e, m in enumerate(members):
        for name, p in m.named_parameters():
            torch.testing.assert_close(ensemble.params[name][e], p, rtol=1e-8, atol=1e-10)
    snapshot = ensemble.snapshot()
    with torch.no_grad():
        for p in ensemble.params.values():
            p.zero_()
    ensemble.load(snapshot)
    assert all(torch.equal(ensemble.params[n], snapshot[n]) for n in snapshot)


def test_schedules():
    lrs = [warmup_cosine_lr(s, peak_lr=1.0, num_steps=100, warmup_steps=10) for s in range(101)]
    assert lrs[9] == 1.0 and lrs[0] == pytest.approx(0.1)
    assert lrs[100] == pytest.approx(0.01)
    assert all(b <= a for a, b in zip(lrs[9:], lrs[10:]))
    steps = log_spaced_steps(10000, 20)
    assert steps[0] == 0 and steps[-1] == 10000 and steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[3:], steps[4:])]
    assert max(ratios) < 2.0


# ---------------------------------------------------------------------------------------------
# experiments: smoke runs on a tiny budget


def test_smoke_icl_stages(tmp_path):
    from experiments import icl_stages

    cfg = icl_stages.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "stages.png")
    result = icl_stages.main(cfg)
    assert (tmp_path / "icl_stages.json").exists() and (tmp_path / "stages.png").exists()
    assert result["first_position_bayes_risk"] == 4.125
    records = result["checkpoints"]
    assert records[0]["step"] == 0 and records[-1]["step"] == result["config"]["num_steps"]
    for r in records:
        # The Rao-Blackwellised first-position loss can never fall below the Bayes risk D + σ².
        assert r["first_position_loss"] >= 4.125
        assert math.isfinite(r["llc_mean"]) and len(r["loss_per_position"]) == 8
    assert set(result["targets"]) == {
        "first_position_within_2_percent", "mean_loss_within_10_percent_of_ridge", "llc_grows_5x"
    }


def test_smoke_icl_task_diversity(tmp_path):
    from experiments import icl_task_diversity

    cfg = icl_task_diversity.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "div.png")
    result = icl_task_diversity.main(cfg)
    assert (tmp_path / "icl_task_diversity.json").exists() and (tmp_path / "div.png").exists()
    assert result["pool_sizes"] == ["1", "16", "∞"]
    final = result["checkpoints"][-1]
    num_members = len(result["members"])
    assert len(final["loss_gaussian"]) == num_members == len(result["llc"])
    # For M = ∞, dMMSE_∞ is ridge: the two distances coincide exactly.
    for e, member in enumerate(result["members"]):
        if member["pool_size"] == "∞":
            assert final["dist_dmmse_pool"][e] == final["dist_ridge_pool"][e]
    # dMMSE_1 on its own pool is exact up to noise: its pool loss is near σ².
    assert abs(result["reference_losses"]["1"]["dmmse_pool"] - 0.125) < 0.05
    assert len(result["pca"]["explained_variance_ratio"]) == 2


def test_transient_ridge_test_on_synthetic_curves():
    from experiments.icl_task_diversity import transient_ridge

    dip = np.array([[4.5, 3.0, 3.3], [4.4, 3.1, 3.4]])  # falls, then both seeds rise by 0.3
    t_min, rise, spread, side, transient = transient_ridge(dip, threshold=4.0)
    assert t_min == 1 and rise == pytest.approx(0.3) and spread == pytest.approx(0.0, abs=1e-12)
    assert transient and side.tolist() == [False, True, True]
    # the same rise, but one seed falls while the other rises: not beyond 3× the spread
    noisy = np.array([[4.5, 3.0, 3.9], [4.4, 3.1, 2.8]])
    assert not transient_ridge(noisy, threshold=4.0)[4]
    # monotone decrease: the minimum is the last checkpoint
    assert not transient_ridge(np.array([[4.5, 3.0, 2.0], [4.4, 3.1, 2.1]]), threshold=4.0)[4]
    # nothing below the threshold (the model never beats dMMSE_M or the zero predictor)
    assert transient_ridge(dip, threshold=2.5)[0] is None
    # one seed: no spread, so no claim
    assert not transient_ridge(dip[:1], threshold=4.0)[4]
