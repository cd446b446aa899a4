"""estimate_llc: one code path for potentials and networks; bad input; divergence; seeds."""

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from toymodels import DivergenceError, estimate_llc
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential

SMALL = dict(num_chains=4, num_draws=20, step_size=1e-3, progress=False)


def linear_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 3, bias=False)).double()


def net_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = x @ torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.1 + torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, y


def test_network_and_potential_paths_agree():
    """The same loss given as an nn.Module with data and as a flat potential gives the same numbers."""
    model = linear_net()
    x, y = net_data()
    loss_fn = torch.nn.functional.mse_loss
    a = estimate_llc(model, data=(x, y), loss_fn=loss_fn, nbeta=50.0, seed=7, **SMALL)
    shapes = [p.shape for p in model.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def potential(w):
        w1 = w[:6].view(shapes[0])
        w2 = w[6:].view(shapes[1])
        return loss_fn(x @ w1.T @ w2.T, y)

    b = estimate_llc(potential, init=w0, nbeta=50.0, seed=7, **SMALL)
    np.testing.assert_allclose(a.loss_trace, b.loss_trace, rtol=1e-10)
    assert a.init_loss == pytest.approx(b.init_loss, rel=1e-12)
    assert a.llc_mean == pytest.approx(b.llc_mean, rel=1e-8)


def test_default_nbeta_is_n_over_log_n_of_the_dataset_not_the_batch():
    model = linear_net()
    x, y = net_data(n=300)
    res = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, batch_size=30, **SMALL)
    assert res.nbeta == pytest.approx(300 / math.log(300))
    assert "n=300" in res.nbeta_source
    given = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, nbeta=12.0, **SMALL)
    assert given.nbeta == 12.0 and given.nbeta_source == "given"


def test_dataloader_gives_the_same_result_as_tensors():
    model = linear_net()
    x, y = net_data(n=64)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    a = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, seed=3, **SMALL)
    b = estimate_llc(model, data=loader, loss_fn=torch.nn.functional.mse_loss, seed=3, **SMALL)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)


def test_same_seed_same_numbers_and_other_seed_other_numbers():
    pot = normal_crossing_potential([1, 2])
    w0 = torch.zeros(2, dtype=torch.float64)
    kw = dict(init=w0, nbeta=100.0, localization=1.0, **SMALL)
    a, b, c = estimate_llc(pot, seed=11, **kw), estimate_llc(pot, seed=11, **kw), estimate_llc(pot, seed=12, **kw)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    assert a.llc_mean == b.llc_mean
    assert not np.array_equal(a.loss_trace, c.loss_trace)
    # minibatches are drawn from the same generator
    model = linear_net()
    x, y = net_data()
    r1 = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, batch_size=16, seed=5, **SMALL)
    r2 = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, batch_size=16, seed=5, **SMALL)
    np.testing.assert_array_equal(r1.loss_trace, r2.loss_trace)


def test_burn_in_is_excluded_and_schedule_is_respected():
    pot = quadratic_potential(torch.eye(2, dtype=torch.float64))
    w0 = torch.zeros(2, dtype=torch.float64)
    full = estimate_llc(pot, init=w0, nbeta=10.0, num_chains=3, num_draws=30, num_burnin_steps=0,
                        num_steps_bw_draws=1, step_size=1e-2, seed=1, progress=False)
    later = estimate_llc(pot, init=w0, nbeta=10.0, num_chains=3, num_draws=5, num_burnin_steps=10,
                         num_steps_bw_draws=4, step_size=1e-2, seed=1, progress=False)
    assert later.loss_trace.shape == (3, 5)
    # draws are the losses at steps 10, 14, 18, 22, 26 of the same random path
    np.testing.assert_array_equal(later.loss_trace, full.loss_trace[:, 10:30:4])
    assert later.llc_mean == pytest.approx(later.nbeta * (later.loss_trace.mean() - later.init_loss))


def test_result_fields_and_json(tmp_path):
    res = estimate_llc(normal_crossing_potential([1]), init=torch.zeros(1), nbeta=10.0, num_chains=3,
                       num_draws=30, step_size=1e-2, progress=False)
    assert res.llc_per_chain.shape == (3,)
    assert res.loss_trace.shape == (3, 30)
    assert res.llc_mean == pytest.approx(res.llc_per_chain.mean())
    assert res.llc_std == pytest.approx(res.llc_per_chain.std(ddof=1))
    assert math.isfinite(res.mcse) and math.isfinite(res.ess) and math.isfinite(res.rhat)
    res.to_json(tmp_path / "r.json")
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded["llc_mean"] == res.llc_mean and loaded["num_chains"] == 3
    assert "λ̂" in res.summary()
    res.plot_trace(path=tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 0


def test_float32_and_float64_both_run():
    for dtype in (torch.float32, torch.float64):
        res = estimate_llc(normal_crossing_potential([1, 1]), init=torch.zeros(2, dtype=dtype), nbeta=10.0,
                           localization=1.0, num_chains=2, num_draws=10, step_size=1e-3, progress=False)
        assert res.trace.final_params.dtype == dtype


def test_divergence_names_the_chains_and_the_step():
    # w⁴ at a huge step size: every chain explodes within a few steps
    with pytest.raises(DivergenceError) as err:
        estimate_llc(normal_crossing_potential([2]), init=torch.ones(1, dtype=torch.float64), nbeta=1e4,
                     step_size=1.0, num_chains=3, num_draws=100, progress=False)
    message = str(err.value)
    assert "chain 0 at step" in message and "lower step_size" in message
    assert err.value.chains == [0, 1, 2]
    assert all(s < 10 for s in err.value.steps)


def test_divergence_drop_keeps_only_finite_chains():
    # a potential that is finite only for w < 1: chains started beyond it diverge at once
    def pot(w):
        return torch.where(w[0] < 1.0, w[0] ** 2, torch.full_like(w[0], float("nan")))

    start = torch.tensor([[0.0], [5.0], [0.1], [7.0]], dtype=torch.float64)
    res = estimate_llc(pot, init=torch.zeros(1, dtype=torch.float64), nbeta=10.0, step_size=1e-4,
                       num_chains=4, num_draws=20, chain_init=start, on_divergence="drop", progress=False)
    assert res.dropped_chains == [1, 3]
    assert res.divergence_steps == [0, 0]
    assert res.num_chains == 2 and np.isfinite(res.loss_trace).all()
    with pytest.raises(DivergenceError, match="chain 1 at step 0"):
        estimate_llc(pot, init=torch.zeros(1, dtype=torch.float64), nbeta=10.0, step_size=1e-4,
                     num_chains=4, num_draws=20, chain_init=start, progress=False)


POT = normal_crossing_potential([1, 1])
W0 = torch.zeros(2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=-1e-3), "step_size"),
        (dict(num_chains=0), "num_chains"),
        (dict(num_draws=0), "num_draws"),
        (dict(num_burnin_steps=-1), "num_burnin_steps"),
        (dict(num_steps_bw_draws=0), "num_steps_bw_draws"),
        (dict(localization=-1.0), "localization"),
        (dict(nbeta=0.0), "nbeta"),
        (dict(nbeta=-5.0), "nbeta"),
        (dict(init=torch.zeros(2, 1)), "flat parameter vector"),
        (dict(on_divergence="ignore"), "on_divergence"),
        (dict(seed="x"), "seed"),
        (dict(batch_size=4), "batch_size is for networks"),
        (dict(data=(torch.zeros(2), torch.zeros(2))), "data and loss_fn are for networks"),
        (dict(chain_init=torch.zeros(3, 2)), "chain_init"),
    ],
)
def test_bad_arguments_fail_before_sampling(kwargs, match):
    args = dict(init=W0, nbeta=10.0, num_chains=2, num_draws=5, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        estimate_llc(POT, **args)


def test_potential_needs_nbeta_and_init():
    with pytest.raises(ValueError, match="nbeta is required"):
        estimate_llc(POT, init=W0, progress=False)
    with pytest.raises(ValueError, match="init"):
        estimate_llc(POT, nbeta=1.0, progress=False)


def test_potential_returning_a_vector_is_refused():
    with pytest.raises(ValueError, match="scalar"):
        estimate_llc(lambda w: w * 2, init=W0, nbeta=1.0, progress=False)


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="nbta"):
        estimate_llc(POT, init=W0, nbta=1.0)


def test_network_input_errors():
    model = linear_net()
    x, y = net_data(n=10)
    mse = torch.nn.functional.mse_loss
    with pytest.raises(ValueError, match="same length"):
        estimate_llc(model, data=(x, y[:5]), loss_fn=mse, progress=False)
    with pytest.raises(ValueError, match="loss_fn"):
        estimate_llc(model, data=(x, y), progress=False)
    with pytest.raises(ValueError, match="scalar batch-mean"):
        estimate_llc(model, data=(x, y), loss_fn=lambda o, t: (o - t) ** 2, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        estimate_llc(model, data=(x, y), loss_fn=mse, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="init is for potentials"):
        estimate_llc(model, data=(x, y), loss_fn=mse, init=W0, progress=False)
    with pytest.raises(ValueError, match="unknown parameter names"):
        estimate_llc(model, data=(x, y), loss_fn=mse, restrict_to=["nope"], progress=False)
    with pytest.raises(ValueError, match="loss at init"):
        bad = linear_net()
        with torch.no_grad():
            bad[0].weight.fill_(float("nan"))
        estimate_llc(bad, data=(x, y), loss_fn=mse, progress=False, **{k: v for k, v in SMALL.items() if k != "progress"})


def test_restricted_sampling_moves_only_the_named_layer():
    model = linear_net()
    x, y = net_data()
    res = estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, restrict_to=["1"], **SMALL)
    final = res.trace.final_params
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(final[:, :6], w0[:6].expand(4, 6), rtol=0, atol=0)
    assert not torch.equal(final[:, 6:], w0[6:].expand(4, 6))


def test_model_is_not_modified():
    model = linear_net()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = net_data()
    estimate_llc(model, data=(x, y), loss_fn=torch.nn.functional.mse_loss, **SMALL)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q)
