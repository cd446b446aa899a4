"""result.diagnose(): each finding fires on a run built to show it, and not on a healthy run."""

import numpy as np
import pytest
import torch

from toymodels import estimate_llc
from toymodels import ESCAPE_FRACTION, diagnose
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential

F64 = torch.float64
W2 = normal_crossing_potential([1])


def _run(pot=W2, dim=1, **kw):
    args = dict(init=torch.zeros(dim, dtype=F64), nbeta=100.0, localization=1.0, step_size=1e-3,
                num_chains=16, num_draws=400, num_burnin_steps=200, progress=False)
    args.update(kw)
    return estimate_llc(pot, **args)


def test_a_healthy_run_has_no_problem():
    # κ = 201, εκ/4 = 0.005: small bias; mixed; precise
    res = _run(step_size=1e-4, num_burnin_steps=2000, num_draws=2000, num_chains=32)
    diagnosis = res.diagnose(echo=None)
    assert diagnosis.ok, str(diagnosis)
    assert "step_size_too_large" not in diagnosis.codes()
    x = 1e-4 * 201 / 4
    assert diagnosis.numbers["step_bias_proxy"] == pytest.approx(x / (1 - x), rel=0.1)


def test_drift_to_noise_ratio_measures_the_exact_gaussian_bias():
    """At εκ/4 = x = 0.1 SGLD's λ̂ is x/(1 − x) = 11.1% high, and at stationarity
    E||(ε/2)κw||² / E||√ε ξ||² = (εκ²/4)·Var(w) = x/(1 − x) too: the ratio *is* the bias."""
    eps = 0.4 / 201
    res = _run(step_size=eps, num_chains=64)
    diagnosis = diagnose(res)
    assert "step_size_too_large" in diagnosis.codes()
    assert diagnosis.numbers["step_bias_proxy"] == pytest.approx(0.1 / 0.9, rel=0.05)
    exact = 0.5 * 100 / (100 + 0.5)
    assert res.llc_mean / exact - 1 == pytest.approx(0.1 / 0.9, abs=4 * res.mcse / exact)
    assert diagnosis.numbers["mala_acceptance"] < 0.99


def test_a_point_that_is_not_a_minimum_is_negative_and_escaped():
    # double well: w* = 0.3 sits on the slope, the minima are at ±1
    pot = lambda w: (w[0] ** 2 - 1) ** 2  # noqa: E731
    res = _run(pot, init=torch.tensor([0.3], dtype=F64), nbeta=50.0, step_size=1e-3)
    codes = diagnose(res).codes()
    assert "negative_estimate" in codes and "escaped" in codes
    assert (res.fraction_below_init > ESCAPE_FRACTION).all()
    assert not diagnose(res).ok


def test_unconverged_chains_are_reported():
    # chains started far apart on a slowly mixing (small ε, weak γ) quadratic disagree
    start = torch.linspace(-3, 3, 8, dtype=F64).unsqueeze(1)
    res = _run(quadratic_potential(torch.eye(1, dtype=F64) * 0.01), nbeta=1.0, localization=0.0,
               step_size=1e-3, num_chains=8, num_draws=200, num_burnin_steps=0, chain_init=start)
    assert "not_converged" in diagnose(res).codes()


def test_localization_that_dominates_is_reported():
    res = _run(localization=1e4, step_size=1e-5)
    diagnosis = diagnose(res)
    assert "localization_dominates" in diagnosis.codes()
    assert diagnosis.numbers["localization_to_gradient"] > 1


def test_dropped_chains_and_mala_acceptance():
    def pot(w):  # finite only for w < 1: the chain started beyond diverges at once
        return torch.where(w[0] < 1.0, w[0] ** 2, torch.full_like(w[0], float("nan")))

    start = torch.tensor([[0.0], [5.0], [0.1], [0.0]], dtype=F64)
    res = _run(pot, step_size=1e-4, num_chains=4, chain_init=start, on_divergence="drop")
    assert res.dropped_chains and "diverged" in diagnose(res).codes()
    mala = _run(sampler="mala", step_size=0.5)
    acc = float(np.mean(mala.acceptance_rate))
    assert acc < 0.4
    # below 5% the chains hardly move: a problem, not a warning
    assert ("mala_stuck" if acc < 0.05 else "mala_acceptance_low") in diagnose(mala).codes()


def test_printed_findings_say_what_to_change(tmp_path, capsys):
    res = _run(step_size=0.4 / 201)
    res.diagnose()
    out = capsys.readouterr().out
    assert "→" in out and "step size" in out.lower()
    fig = res.plot_diagnostics(tmp_path / "diag.png")
    assert len(fig.axes) >= 6 and (tmp_path / "diag.png").stat().st_size > 0
