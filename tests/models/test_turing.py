"""toymodels.models.turing against theory.turing: the torch potential, its coordinates and prior, SGLD."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from experiments.turing_programs_as_singularities import Config, main
from toymodels.validation.turing import cases, machine_potential, sampled_simplices
from toymodels.validation import ValidationCase
from theory.turing import (
    code_from_flat,
    detect_a,
    detect_a_task,
    machine_pairs,
    parity,
    parity_task,
    potential,
    single_step_llc,
    single_step_llc_dirichlet,
    uniform_code,
    vertex_code,
    vertex_expansion,
)
from toymodels import estimate_llc
from toymodels.models.turing import NoisyCodePotential, annealed_chain_init

PAIR_CASES = [(m, p.task, p.T) for p in machine_pairs() for m in (p.first, p.second)]
PAIR_IDS = [f"pair{i // 2}-{'ab'[i % 2]}" for i in range(len(PAIR_CASES))]


def _full_code(machine, task, T, pot, p_active):
    """A theory NoisyCode whose sampled simplices are ``p_active`` and the rest uniform."""
    shape = machine.shape
    flat = [float(v) for v in uniform_code(shape).flat()]
    k = 0
    for s in sampled_simplices(shape, task, T):
        o, size = shape.simplex_offsets[s], shape.simplex_sizes[s]
        flat[o : o + size] = p_active[k : k + size]
        k += size
    assert k == pot.num_entries
    # renormalise each simplex in float64 so theory's sum-to-one check holds to 1e-12
    for o, size in zip(shape.simplex_offsets, shape.simplex_sizes):
        total = math.fsum(flat[o : o + size])
        flat[o : o + size] = [v / total for v in flat[o : o + size]]
    return code_from_flat(shape, flat)


def _sampled_index(machine, task, T, simplex, entry):
    """Where entry ``entry`` of theory's simplex ``simplex`` sits in the sampled coordinates."""
    sampled = sampled_simplices(machine.shape, task, T)
    return sum(machine.shape.simplex_sizes[s] for s in sampled if s < simplex) + entry


# ---------------------------------------------------------------------------------------------
# the potential equals theory's K
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine, task, T", PAIR_CASES, ids=PAIR_IDS)
def test_potential_equals_theory_at_random_codes(machine, task, T):
    pot, vertex = machine_potential(machine, task, T)
    s = pot.sample_prior(5, 123)
    values = pot(s)
    for row, value in zip(s, values):
        p = pot.barycentric(row).tolist()
        exact = potential(_full_code(machine, task, T, pot, p), task, T)
        assert float(value) == pytest.approx(exact, rel=1e-10, abs=1e-12)


def test_potential_equals_theory_on_the_one_step_oracle_setting():
    """Clift et al. arXiv 2103.16080: K = -(1/2) log(1 - u_A) - (1/2) log(1 - u_B)."""
    pot, vertex = machine_potential(detect_a(), detect_a_task((1,)), 1)
    assert pot.simplex_sizes == (2, 2) and pot.num_examples == 2
    # simplex 0 is the next state of (A, reject): (reject, accept); simplex 1 that of (B, reject)
    u_a, u_b = 0.3, 0.1
    p = torch.tensor([u_a, 1 - u_a, 1 - u_b, u_b], dtype=torch.float64)
    s = torch.log(p) + 0.7  # any common shift per simplex gives the same code
    assert float(pot(s)) == pytest.approx(-0.5 * math.log1p(-u_a) - 0.5 * math.log1p(-u_b),
                                          rel=1e-14)


@pytest.mark.parametrize("machine, task, T", PAIR_CASES, ids=PAIR_IDS)
def test_vertex_is_a_zero_with_theory_first_order_slopes(machine, task, T):
    """K(vertex) = 0, and moving mass eps from the classical entry to an error entry raises K
    by c_i eps + O(eps^2), c_i the first-order coefficient of theory.turing.vertex_expansion
    (0 for irrelevant coordinates)."""
    pot, vertex = machine_potential(machine, task, T)
    assert abs(float(pot(vertex))) < 1e-15
    expansion = vertex_expansion(machine, task, T)
    sampled = set(sampled_simplices(machine.shape, task, T))
    classical_entries = vertex_code(machine).simplices
    eps = 1e-7
    checked = 0
    for coord in expansion.coordinates:
        if coord.simplex not in sampled:
            assert coord.index not in expansion.potential_first_order  # K cannot see it
            continue
        p = pot.barycentric(vertex).clone()
        c = classical_entries[coord.simplex].index(1)
        p[_sampled_index(machine, task, T, coord.simplex, coord.entry)] += eps
        p[_sampled_index(machine, task, T, coord.simplex, c)] -= eps
        slope = float(pot(pot.coordinates_of(p))) / eps
        expected = float(expansion.potential_first_order.get(coord.index, 0))
        assert slope == pytest.approx(expected, abs=1e-5)
        checked += 1
    assert checked > len(expansion.relevant)


def test_batched_equals_single_and_gradient_is_exact():
    pot, _ = machine_potential(parity(), parity_task((2,)), 2)
    s = pot.sample_prior(4, 7)
    batched = pot(s)
    single = torch.stack([pot(row) for row in s])
    assert batched.shape == (4,)
    assert torch.equal(batched, single)
    x = s[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: pot(z), (x,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda z: pot.log_prior(z), (x,), eps=1e-6, atol=1e-7)


@settings(deadline=None, max_examples=20)
@given(st.lists(st.floats(-30, 5), min_size=4, max_size=4), st.floats(-3, 3))
def test_potential_depends_on_the_code_only(values, shift):
    """Adding a constant to one simplex's coordinates moves only the scale ell, not p or K."""
    pot, _ = machine_potential(detect_a(), detect_a_task((1,)), 1)
    s = torch.tensor(values, dtype=torch.float64)
    moved = s.clone()
    moved[:2] += shift
    assert torch.allclose(pot.barycentric(s), pot.barycentric(moved), atol=1e-15, rtol=1e-12)
    assert float(pot(moved)) == pytest.approx(float(pot(s)), rel=1e-12, abs=1e-15)
    assert torch.allclose(pot.scales(moved)[0], pot.scales(s)[0] + shift, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the change of variables: the prior pushes forward to Dirichlet(alpha) x N(0, 1)
# ---------------------------------------------------------------------------------------------


def _single_simplex(alpha):
    k = len(alpha)
    # a potential on one simplex; its K is irrelevant here (one monomial: entry 0)
    return NoisyCodePotential([k], [1], [[0]], [0], [1.0], concentration=alpha)


@pytest.mark.parametrize("alpha", [(1.0, 1.0), (1.0, 1.0, 1.0), (10.0, 0.5, 0.5), (2.5, 1.0, 0.7)])
def test_log_prior_is_dirichlet_times_normal_after_the_jacobian(alpha):
    """log phi(s) - log Z + log|det d(s)/d(p_1..p_{k-1}, ell)| = log Dir(p) + log N(ell), where
    the Jacobian is computed by autograd, independently of the docstring's prod p_i^{-1}."""
    pot = _single_simplex(alpha)
    k = len(alpha)
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.dirichlet(alpha)
        ell = rng.standard_normal()

        def s_of(z):  # (p_1..p_{k-1}, ell) -> s
            head, scale = z[: k - 1], z[k - 1]
            full = torch.cat([head, (1 - head.sum()).reshape(1)])
            return torch.log(full) + scale

        z = torch.tensor(list(p[: k - 1]) + [ell], dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(s_of, z)
        log_det = torch.linalg.slogdet(jac)[1]
        s = s_of(z)
        lhs = float(pot.log_prior(s)) - pot.log_prior_normalizer() + float(log_det)
        rhs = stats.dirichlet.logpdf(p, alpha) + stats.norm.logpdf(ell)
        assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("alpha", [(1.0, 1.0, 1.0), (10.0, 1.0, 0.5)])
def test_prior_draws_have_dirichlet_moments(alpha):
    pot = _single_simplex(alpha)
    n = 40000
    s = pot.sample_prior(n, 1)
    log_p = pot.log_barycentric(s).numpy()
    a = np.asarray(alpha)
    # E[log p_i] = psi(alpha_i) - psi(sum alpha) (Dirichlet); ell ~ N(0, 1)
    expected = special.digamma(a) - special.digamma(a.sum())
    se = log_p.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(log_p.mean(axis=0) - expected) < 4 * se)
    ell = pot.scales(s).numpy()[:, 0]
    assert abs(ell.mean()) < 4 / math.sqrt(n) and abs(ell.var() - 1) < 4 * math.sqrt(2 / n)


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------


def test_lambda_hat_matches_the_one_step_oracle_at_small_budget():
    """A cheap statistical check (the accurate ones are the validation cases)."""
    pot, vertex = machine_potential(detect_a(), detect_a_task((1,)), 1)
    nbeta = 100.0
    start = annealed_chain_init(pot, vertex, nbeta=nbeta, num_chains=200, step_size=0.2,
                                steps_per_rung=100, seed=3)
    result = estimate_llc(pot, init=vertex, nbeta=nbeta, step_size=0.1, num_chains=200,
                          num_burnin_steps=300, num_draws=400, log_prior=pot.log_prior,
                          chain_init=start, seed=4, progress=False)
    exact = float(single_step_llc(2, 2, 100))
    assert result.init_loss == 0.0
    assert abs(result.llc_mean - exact) < 4 * result.mcse
    assert result.mcse < 0.03 * exact  # the check has teeth


def test_annealed_chain_init_reaches_the_vertex_scale():
    pot, vertex = machine_potential(detect_a(), detect_a_task((1,)), 1)
    start = annealed_chain_init(pot, vertex, nbeta=1e4, num_chains=64, step_size=0.2,
                                steps_per_rung=50, seed=0)
    assert start.shape == (64, pot.dim) and torch.isfinite(start).all()
    # at t = 1e4 the error probabilities are ~ 2/t: t K is O(lambda), not O(t)
    assert float(1e4 * pot(start).mean()) < 10


@pytest.mark.slow
@pytest.mark.parametrize("alpha_c, alpha_e, nbeta", [(1.0, 1.0, 1000.0), (10.0, 1.0, 1000.0),
                                                     (1.0, 0.5, 1000.0)])
def test_lambda_hat_within_three_percent_of_dirichlet_oracle(alpha_c, alpha_e, nbeta):
    pot, vertex = machine_potential(detect_a(), detect_a_task((1,)), 1, alpha_c, alpha_e)
    start = annealed_chain_init(pot, vertex, nbeta=nbeta, num_chains=1000, step_size=0.2, seed=1)
    result = estimate_llc(pot, init=vertex, nbeta=nbeta, step_size=0.1, num_chains=1000,
                          num_burnin_steps=1000, num_draws=2000, log_prior=pot.log_prior,
                          chain_init=start, seed=2, progress=False)
    exact = single_step_llc_dirichlet(2, 2, nbeta, alpha_c, alpha_e)
    assert abs(result.llc_mean / exact - 1) < 0.03
    assert abs(result.llc_mean - exact) < 3 * result.mcse


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------


def test_bad_input_fails_with_advice():
    good = dict(simplex_sizes=[2], coefficients=[1], factor_indices=[[0]], monomial_example=[0],
                example_weights=[1.0])
    NoisyCodePotential(**good)
    for change, match in [
        (dict(simplex_sizes=[1]), ">= 2 entries"),
        (dict(coefficients=[0]), "positive"),
        (dict(factor_indices=[[3]]), "must lie in 0..2"),
        (dict(example_weights=[0.5]), "sum to 1"),
        (dict(monomial_example=[1]), "monomial_example"),
        (dict(coefficients=[1, 1]), "one entry per monomial"),
        (dict(concentration=[1.0, -1.0]), "concentration"),
    ]:
        with pytest.raises(ValueError, match=match):
            NoisyCodePotential(**{**good, **change})
    with pytest.raises(ValueError, match="no monomial"):
        NoisyCodePotential([2], [1], [[0]], [0], [0.5, 0.5])
    pot = NoisyCodePotential(**good)
    with pytest.raises(ValueError, match="last dimension is 2"):
        pot(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_chains"):
        pot.sample_prior(0, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        pot.coordinates_of([0.5, 0.6])
    with pytest.raises(ValueError, match="ratio"):
        annealed_chain_init(pot, torch.zeros(2, dtype=torch.float64), nbeta=10, num_chains=2,
                            step_size=0.1, ratio=1.0)


# ---------------------------------------------------------------------------------------------
# validation cases and the experiment
# ---------------------------------------------------------------------------------------------


def test_validation_cases_have_exact_targets():
    found = cases(scale=0.01)
    assert len(found) == 4 and all(isinstance(c, ValidationCase) for c in found)
    assert [float(c.llc) for c in found] == [2.0, 4.0, 2.0, 1.0]
    targets = [c.target() for c in found]
    assert targets[0] == pytest.approx(2 * 1000 / 1002, rel=1e-14)
    assert targets[1] == pytest.approx(float(single_step_llc(2, 3, 100)), rel=1e-14)
    assert targets[2] == pytest.approx(1000 / 510, rel=1e-14)  # t / (t/2 + alpha_c)
    assert 0.99 < targets[3] < 1.0
    with pytest.raises(ValueError, match="scale"):
        cases(0)


def test_smoke_turing_programs_as_singularities(tmp_path):
    cfg = Config.quick_config(out_dir=tmp_path, figure=tmp_path / "turing.png")
    report = main(cfg)
    assert (tmp_path / "turing_programs_as_singularities.json").exists()
    assert (tmp_path / "turing.png").stat().st_size > 0
    assert [r["nbeta"] for r in report["single_step"]] == [10.0, 100.0]
    for row in report["single_step"]:
        assert row["exact"] == pytest.approx(float(single_step_llc(2, 2, int(row["nbeta"]))))
        assert math.isfinite(row["estimate"]) and row["mcse"] > 0
    (pair,) = report["pairs"]
    assert [m["lambda_exact"] for m in pair["machines"]] == [8.0, 9.0]
    assert pair["free_energy"][0]["delta_F_exact"] == pytest.approx(-math.log(100))
    with pytest.raises(ValueError, match="increasing"):
        Config(single_step_nbetas=(10.0, 5.0))
