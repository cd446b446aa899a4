"""LLCResult.to_arviz(): ArviZ's diagnostics on the exported tree give the result's own numbers."""

import warnings

import numpy as np
import pytest
import torch

from toymodels import estimate_llc

pytest.importorskip("arviz_base")
arviz_stats = pytest.importorskip("arviz_stats")


def test_to_arviz_holds_the_llc_draws_and_reproduces_ess_mcse_rhat():
    result = estimate_llc(lambda w: (w ** 2).sum(-1), init=torch.zeros(3, dtype=torch.float64),
                          nbeta=100.0, step_size=1e-3, num_chains=4, num_draws=200,
                          num_burnin_steps=100, seed=0, progress=False)
    tree = result.to_arviz()
    llc = tree.posterior["llc"]
    assert llc.dims == ("chain", "draw") and llc.shape == (4, 200)
    np.testing.assert_array_equal(tree.sample_stats["loss"].values, result.loss_trace)
    assert float(llc.mean()) == pytest.approx(result.llc_mean, rel=1e-12)
    np.testing.assert_allclose(llc.mean("draw").values, result.llc_per_chain, rtol=1e-12)
    assert tree.posterior.attrs["nbeta"] == result.nbeta
    assert tree.posterior.attrs["init_loss"] == result.init_loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = tree.posterior.ds.azstats
        ess = float(stats.ess(method="mean")["llc"])
        mcse = float(stats.mcse(method="mean")["llc"])
        rhat = float(stats.rhat()["llc"])
    assert ess == pytest.approx(result.ess, rel=1e-12)
    assert mcse == pytest.approx(result.mcse, rel=1e-12)
    assert rhat == pytest.approx(result.rhat, rel=1e-12)
