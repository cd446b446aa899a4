"""The relaxation rule: doubling blocks until the chains stop drifting (toymodels.estimators.relaxation)."""

import numpy as np
import torch

from toymodels import SGLDHyperparameters, relax
from toymodels.estimators.calibration import Schedule
from toymodels.objectives import PotentialObjective
from toymodels.estimators.relaxation import block_change, settled

F64 = torch.float64


def test_settled_tells_drift_from_noise():
    rng = np.random.default_rng(0)
    before = 1.0 + 0.1 * rng.standard_normal(200)
    still = 1.0 + 0.1 * rng.standard_normal(200)  # same law: small and not significant
    risen = 1.2 + 0.1 * rng.standard_normal(200)  # a 20% rise, measured precisely
    noisy = 1.2 + 3.0 * rng.standard_normal(4)  # a 20% rise drowned in noise: not small
    assert settled(block_change(before, still))
    assert not settled(block_change(before, risen))
    assert not settled(block_change(before[:4], noisy))
    assert settled(block_change(np.ones(3), np.ones(3)))  # frozen: nothing moved


def test_relaxation_reaches_the_far_end_of_a_localized_flat_direction():
    """K = x² with y flat, γ = 1: y relaxes as an Ornstein–Uhlenbeck process (E y² → 1/γ), in
    Langevin time of order 1/γ; the relaxation must run that long, not stop when x has settled."""
    potential = lambda w: w[..., 0] ** 2  # noqa: E731
    potential.batched = True
    objective = PotentialObjective(potential, torch.zeros(2, dtype=F64))
    out = relax(objective, hyper=SGLDHyperparameters(1e-3, 100.0, 1.0), num_chains=200, seed=0)
    assert out.relaxed and out.langevin_time >= 1.0
    # x² relaxes at rate ~nβ and y² at rate γ: at the end E[y²] is near 1/γ = 1
    y2 = float((out.states[:, 1] ** 2).mean())
    assert 0.75 < y2 < 1.3  # 200 chains: the sampling sd of the mean of y² is about 0.1


def test_without_localization_a_flat_direction_does_not_stall_the_relaxation():
    potential = lambda w: w[..., 0] ** 2  # noqa: E731 - y is flat and, with γ = 0, improper
    potential.batched = True
    objective = PotentialObjective(potential, torch.zeros(2, dtype=F64))
    out = relax(objective, hyper=SGLDHyperparameters(1e-3, 100.0, 0.0), num_chains=64, seed=0,
                max_steps=50_000)
    assert out.relaxed and out.steps < 50_000


def test_schedule_reads_as_the_keyword_arguments():
    s = Schedule(num_burnin_steps=10, num_draws=20, num_steps_bw_draws=3, step_size=1e-3,
                 autocorrelation_steps=5.0, target_mcse=0.01, predicted_mcse=0.01,
                 short_of_target=False)
    assert dict(**s) == s.kwargs() == dict(num_burnin_steps=10, num_draws=20, num_steps_bw_draws=3)
    assert s["num_draws"] == 20
