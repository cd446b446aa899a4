"""The sampler's reused work buffers (:class:`~toymodels.sampling.integrator.Scratch`) change no number.

A run reuses the noise, the gradient, ``w − w*`` and (when it keeps only its current state) two
alternating position buffers from step to step. Reuse must be invisible: the same seed gives the
same trace, bit for bit, as a run that allocates every tensor afresh, and a buffer is never
overwritten while something still reads it (an observable's values, a kernel's state).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toymodels import ModuleObjective, SGLDHyperparameters, run_chains
from toymodels.sampling.integrator import Scratch


def _objective(chain_strategy):
    g = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    with torch.no_grad():  # the same network every call (the default init reads the global RNG)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    y = torch.randn(64, 2, generator=g, dtype=torch.float64)
    return ModuleObjective(model, x, y, F.mse_loss, batch_size=16, compile=False,
                           chain_strategy=chain_strategy)


def _fresh_scratch(monkeypatch):
    """Every buffer a fresh tensor and no recycled position: the run as it was without reuse."""
    monkeypatch.setattr(Scratch, "like", lambda self, name, tensor: torch.empty_like(tensor))
    monkeypatch.setattr(Scratch, "position_after", lambda self, position: None)


def _run(sampler, chain_strategy, observables=None):
    return run_chains(_objective(chain_strategy), hyper=SGLDHyperparameters(1e-3, 50.0, 10.0),
                      num_chains=3, num_draws=40, num_burnin_steps=5, seed=11, sampler=sampler,
                      observables=observables)


OBSERVABLES = {"first_two": lambda w: w[:2], "norm": lambda w: (w * w).sum()}


@pytest.mark.parametrize("chain_strategy", ["vmap", "loop"])
@pytest.mark.parametrize("sampler", ["sgld", "rmsprop_sgld", "sgnht"])
def test_reused_buffers_give_the_trace_of_fresh_ones(monkeypatch, sampler, chain_strategy):
    reused = _run(sampler, chain_strategy)
    reused_obs = _run(sampler, chain_strategy, OBSERVABLES)  # positions not recycled here
    _fresh_scratch(monkeypatch)
    fresh = _run(sampler, chain_strategy)
    fresh_obs = _run(sampler, chain_strategy, OBSERVABLES)
    for a, b in ((reused, fresh), (reused_obs, fresh_obs)):
        for field in ("loss", "grad_norm", "distance", "drift_norm", "noise_norm"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert torch.equal(a.final_params, b.final_params)
    # an observable that is a view of the position holds each draw's own values
    for name in OBSERVABLES:
        np.testing.assert_array_equal(reused_obs.observables[name], fresh_obs.observables[name])
    assert not np.array_equal(reused_obs.observables["first_two"][:, 0],
                              reused_obs.observables["first_two"][:, -1])


def test_position_buffers_alternate_and_never_hold_the_position():
    scratch = Scratch(recycle_positions=True)
    position = torch.zeros(2, 5)
    seen = []
    for _ in range(4):
        new = scratch.position_after(position)
        assert new.untyped_storage().data_ptr() != position.untyped_storage().data_ptr()
        seen.append(new.untyped_storage().data_ptr())
        position = new
    assert seen[0] == seen[2] and seen[1] == seen[3] and seen[0] != seen[1]
    assert Scratch().position_after(position) is None  # off unless the caller says so
    # a new shape, dtype or device gets a new buffer
    assert scratch.like("noise", torch.zeros(2, 5)).shape == (2, 5)
    assert scratch.like("noise", torch.zeros(3, 5, dtype=torch.float64)).dtype == torch.float64
