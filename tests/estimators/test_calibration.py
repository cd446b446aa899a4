"""calibrate(): the bias-law fit, the choice rule, and the choice on a case with a known exact bias."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels import estimate_llc
from toymodels.estimators.calibration import (
    CalibrationResult,
    calibrate,
    choose_step_size,
    fit_step_size_bias,
    relative_bias,
)
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential

F64 = torch.float64
W2 = normal_crossing_potential([1])  # K = w², so U = (2t + γ)/2 · w²: SGLD's bias is exact


def sgld_relative_bias(eps: float, kappa: float) -> float:
    """SGLD on a Gaussian of curvature κ: variance 1/(κ(1 − εκ/4)), so λ̂ is off by this factor − 1."""
    return 1 / (1 - eps * kappa / 4) - 1


@settings(deadline=None, max_examples=30)
@given(lam0=st.floats(0.1, 50.0), s=st.floats(-500.0, 2000.0), model=st.sampled_from(["gaussian", "linear"]))
def test_fit_recovers_an_exact_bias_law(lam0, s, model):
    eps = 1e-4 * 2.0 ** np.arange(6)
    fit0 = dict(model=model, rel_slope=s)
    if model == "gaussian" and np.any(s * eps >= 0.9):
        return
    est = lam0 * (1 + np.array([relative_bias(fit0, e) for e in eps]))
    fit = fit_step_size_bias(eps, est, 1e-3 * np.abs(est), model=model)
    assert fit["used"].all()
    assert fit["llc_zero_step"] == pytest.approx(lam0, rel=1e-9)
    assert fit["rel_slope"] == pytest.approx(s, rel=1e-7, abs=1e-6)


def test_fit_drops_large_steps_where_the_law_bends():
    eps = 1e-4 * 2.0 ** np.arange(7)
    truth = 1.0 + 50 * eps + 4e6 * eps ** 3  # a cubic term that only the largest steps see
    fit = fit_step_size_bias(eps, truth, np.full(7, 1e-3), model="linear")
    assert not fit["used"][-1] and fit["used"][:4].all()
    assert fit["llc_zero_step"] == pytest.approx(1.0, abs=3e-3)


def test_fit_with_noise_covers_the_truth():
    rng = np.random.default_rng(0)
    eps = 1e-4 * 2.0 ** np.arange(6)
    true = 0.5 / (1 - 400 * eps)
    z0, zs = [], []
    for _ in range(200):
        se = 0.01 * true
        fit = fit_step_size_bias(eps, true + se * rng.standard_normal(6), se)
        z0.append((fit["llc_zero_step"] - 0.5) / fit["llc_zero_step_se"])
        zs.append((fit["rel_slope"] - 400) / fit["rel_slope_se"])
    # standard errors are honest: z-scores have sd ≈ 1 (within sampling error of 200 fits)
    assert 0.8 < np.std(z0) < 1.25 and 0.8 < np.std(zs) < 1.25


def test_choice_rule_formula_and_cap():
    fit = dict(model="gaussian", llc_zero_step=1.0, llc_zero_step_se=0.01, rel_slope=100.0,
               rel_slope_se=10.0, used=np.array([True, True, True]))
    eps, reason = choose_step_size(fit, [1e-3, 2e-3, 4e-3], tolerance=0.01)
    exact = 0.01 / (1.01 * 120.0)
    assert eps <= exact and eps == pytest.approx(exact, rel=0.02)  # rounded down, 2 digits
    assert relative_bias(dict(model="gaussian", rel_slope=120.0), eps) <= 0.01 + 1e-12
    assert "1%" in reason
    flat = dict(fit, rel_slope=0.0, rel_slope_se=1e-3)
    eps, reason = choose_step_size(flat, [1e-3, 2e-3, 4e-3], tolerance=0.01)
    assert eps == 4e-3 and "capped" in reason


def test_calibrated_step_has_at_most_the_tolerated_bias_on_an_exact_gaussian():
    """K = w², t = 1000, γ = 1: κ = 2001 and SGLD's bias at ε is exactly εκ/4/(1 − εκ/4)."""
    t, gamma = 1000.0, 1.0
    kappa = 2 * t + gamma
    cal = calibrate(W2, init=torch.zeros(1, dtype=F64), nbeta=t, localization=gamma, seed=3)
    choice = cal.choice()
    true_bias = sgld_relative_bias(choice.step_size, kappa)
    assert true_bias <= cal.tolerance
    assert true_bias >= cal.tolerance / 8  # and not absurdly conservative
    # the stability scan found the edge below the divergence limit εκ = 4
    assert choice.step_size_max * kappa < 4
    assert choice.llc_zero_step == pytest.approx(0.5 * t / (t + gamma / 2), rel=0.05)


def test_grid_over_nbeta_gives_one_choice_each_and_feeds_estimate_llc(tmp_path):
    cal = calibrate(W2, init=torch.zeros(1, dtype=F64), nbeta=[100.0, 1000.0], localization=1.0,
                    num_chains=16, num_draws=200, num_burnin_steps=200, max_rounds=1, seed=0)
    small_t, large_t = cal.choice(nbeta=100.0), cal.choice(nbeta=1000.0)
    # the curvature grows with t, so the stable and the chosen step sizes shrink
    assert large_t.step_size_max < small_t.step_size_max
    assert large_t.step_size < small_t.step_size
    with pytest.raises(ValueError, match="several"):
        cal.step_size
    res = estimate_llc(W2, init=torch.zeros(1, dtype=F64), nbeta=1000.0, localization=1.0,
                       step_size="auto", calibration=cal, num_chains=4, num_draws=20, progress=False)
    assert res.step_size == large_t.step_size and res.calibration["sampler"] == "sgld"
    assert cal.settings(nbeta=1000.0)["step_size"] == large_t.step_size
    schedule = cal.schedule(100, rel_mcse=0.02, nbeta=1000.0)
    looser = cal.schedule(100, rel_mcse=0.08, nbeta=1000.0)
    assert looser.num_draws * looser.num_steps_bw_draws < schedule.num_draws * schedule.num_steps_bw_draws
    assert schedule.reasons["num_draws"].startswith("an MCSE of 2%")
    cal.plot(tmp_path / "cal.png")
    assert (tmp_path / "cal.png").stat().st_size > 0
    cal.to_json(tmp_path / "cal.json")
    assert json.loads((tmp_path / "cal.json").read_text())["choices"][1]["nbeta"] == 1000.0
    assert "ε =" in cal.summary()


def test_estimate_llc_auto_calibrates_by_itself():
    res = estimate_llc(quadratic_potential(torch.eye(2, dtype=F64)), init=torch.zeros(2, dtype=F64),
                       nbeta=50.0, localization=1.0, step_size="auto", num_chains=8, num_draws=50,
                       progress=False)
    assert res.calibration is not None and res.step_size == res.calibration["choices"][0]["step_size"]
    assert 0 < res.step_size < 4 / 51  # below SGLD's divergence limit εκ = 4


def test_mala_auto_adapts_to_the_acceptance_target():
    res = estimate_llc(W2, init=torch.zeros(1, dtype=F64), nbeta=1000.0, localization=1.0,
                       step_size="auto", sampler="mala", num_chains=64, num_draws=200,
                       num_burnin_steps=300, progress=False)
    assert 0.7 < float(np.mean(res.acceptance_rate)) < 0.9
    cal = calibrate(W2, init=torch.zeros(1, dtype=F64), nbeta=1000.0, localization=1.0, sampler="mala",
                    num_chains=32, num_draws=100, num_burnin_steps=200)
    assert cal.choice().predicted_bias == 0.0 and math.isfinite(cal.step_size)


@pytest.mark.parametrize("kwargs, match", [
    (dict(tolerance=0.0), "tolerance"),
    (dict(tolerance=1.5), "tolerance"),
    (dict(num_step_sizes=1), "num_step_sizes"),
    (dict(initial_step_size=-1.0), "initial_step_size"),
    (dict(nbeta=[]), "nbeta"),
    (dict(localization=-1.0), "localization"),
    (dict(step_sizes=[1e-3, -1e-3]), "step_sizes"),
])
def test_calibrate_bad_input(kwargs, match):
    args = dict(init=torch.zeros(1, dtype=F64), nbeta=10.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        calibrate(W2, **args)


def test_auto_step_size_bad_input():
    kw = dict(init=torch.zeros(1, dtype=F64), nbeta=10.0, num_chains=2, num_draws=5, progress=False)
    with pytest.raises(ValueError, match="'auto'"):
        estimate_llc(W2, step_size="fast", **kw)
    cal = CalibrationResult(sampler="mala", rule="", tolerance=0.01, choices=[], table=[], seconds=0.0)
    with pytest.raises(ValueError, match="calibrate again"):
        estimate_llc(W2, step_size="auto", calibration=cal, **kw)


def test_smoke_time_to_accuracy(tmp_path):
    from experiments.time_to_accuracy import Config, main

    # devinterp runs in its own environment (minutes to import and run): pointed elsewhere here,
    # its column is skipped with a note, which is what the experiment does without it
    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "tta.png",
                                      cases=("normal_crossing",), devinterp_python=str(tmp_path / "none")))
    rows = report["cases"]["normal_crossing"]["rows"]
    assert {"toymodels default", "toymodels calibrated", "toymodels MALA"} <= {r["method"] for r in rows}
    assert "skipped" in rows[-1]["note"]
    assert (tmp_path / "time_to_accuracy.json").exists() and (tmp_path / "tta.png").stat().st_size > 0


def test_smoke_error_budget(tmp_path):
    from experiments.error_budget import Config, main, minibatch_exact_llc, regression_data

    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "eb.png"))
    assert (tmp_path / "error_budget.json").exists() and (tmp_path / "eb.png").stat().st_size > 0
    # the exact minibatch chain: full batch equals the AR(1) formula, and smaller batches add bias
    x, y = regression_data(200, 0)
    full = minibatch_exact_llc(x.numpy(), y.numpy(), nbeta=50.0, localization=1.0, step_size=1e-3,
                               batch_size=None)
    s = float((x * x).mean())
    kappa = 50.0 * s + 1.0
    assert full == pytest.approx(0.5 * 50.0 * s / (kappa * (1 - 1e-3 * kappa / 4)), rel=1e-12)
    small = minibatch_exact_llc(x.numpy(), y.numpy(), nbeta=50.0, localization=1.0, step_size=1e-3,
                                batch_size=2)
    assert small > full
    rows = report["step_size"]["rows"]
    assert all(r["exact_bias"] > 0 for r in rows)


def test_calibration_chains_start_on_chain_init():
    # no burn-in and four draws: the first draw is the starting point itself, so chains started at
    # w = 3 (nβ L = 9000) must show it in every grid row, and chains at w* must not
    kw = dict(init=torch.zeros(1, dtype=F64), nbeta=1000.0, localization=1.0, step_sizes=[1e-4, 5e-5],
              num_chains=4, num_draws=4, num_burnin_steps=0, max_rounds=1)
    far = calibrate(W2, chain_init=torch.full((2, 1), 3.0, dtype=F64), **kw)
    near = calibrate(W2, **kw)
    # the relaxation is what starts on them (the grid starts where it ended)
    first_block = lambda cal: cal.choice().relaxation["blocks"][0]  # noqa: E731
    assert first_block(far)["llc_mean"] > 1000
    assert first_block(near)["llc_mean"] < 10
    with pytest.raises(ValueError, match="chain_init must have shape"):
        calibrate(W2, chain_init=torch.zeros(3, dtype=F64), **kw)


def test_slowly_mixing_grid_points_from_relaxed_chains_enter_the_fit():
    """Excluding every grid point with R-hat > 1.1 left a tanh MLP's fit with one point at +25 %
    bias, which was then chosen; relaxed, slowly mixing points with a real ESS now count."""
    from toymodels.estimators.calibration.runs import usable as _usable

    row = dict(kept_chains=32, diverged_chains=0, rhat=1.2, ess=120.0, started_relaxed=True)
    assert _usable(row)
    assert not _usable(dict(row, started_relaxed=False))  # chains from w*: still held by the start
    assert not _usable(dict(row, ess=20.0)) and not _usable(dict(row, rhat=1.5))
    assert not _usable(dict(row, rhat=1.0, diverged_chains=1))


def test_one_usable_point_gives_the_smallest_step_and_says_it_is_unverified():
    fit = fit_step_size_bias([1e-3, 2e-3, 4e-3], [1.0, np.nan, np.nan], [0.01, 0.01, 0.01])
    eps, reason = choose_step_size(fit, [1e-3, 2e-3, 4e-3], tolerance=0.01)
    assert eps == 1e-3 and "unverified" in reason


def test_the_bias_grid_adds_no_round_once_max_seconds_is_spent():
    from toymodels import calibrate
    from toymodels.models.potentials import normal_crossing_potential

    common = dict(init=torch.zeros(2, dtype=torch.float64), nbeta=100.0, localization=1.0, num_chains=4,
                  num_draws=20, num_step_sizes=3, relax_max_steps=200, slope_precision=1e-6, seed=2)
    potential = normal_crossing_potential([1, 1])
    # a slope precision no grid reaches: without a deadline every round runs, with one only the first
    unbounded = calibrate(potential, max_rounds=3, **common)
    bounded = calibrate(potential, max_rounds=3, max_seconds=1e-6, **common)
    rounds = lambda result: max(row.get("round", 0) for row in result.table)  # noqa: E731
    assert rounds(unbounded) == 3
    assert rounds(bounded) == 1
    with pytest.raises(ValueError, match="max_seconds"):
        calibrate(potential, max_seconds=-1.0, **common)
