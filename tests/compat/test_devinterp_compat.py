"""The devinterp 1.x compatibility layer: its keys, its defaults, its refusals, and its agreement
with the native estimator (draw for draw) and, where devinterp is importable, with devinterp."""

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from toymodels import estimate_llc
from toymodels.compat.devinterp import (
    devinterp_default_nbeta,
    estimate_learning_coeff,
    estimate_learning_coeff_with_summary,
    sampler_settings,
)


class Polynomial(torch.nn.Module):
    """``x ↦ x · Π w_i^{k_i}``, devinterp's normal-crossing test model (``test_utils.Polynomial``)."""

    def __init__(self, powers):
        super().__init__()
        self.register_buffer("powers", torch.tensor(powers, dtype=torch.float64))
        self.weights = torch.nn.Parameter(torch.zeros(len(powers), dtype=torch.float64))

    def forward(self, x):
        return x * torch.prod(self.weights ** self.powers)


def reduced_rank(seed=0, n=256, m=4, h=2):
    """A reduced-rank regression ``y = B A x + noise`` at a least-squares fit ``w*``, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, m, generator=g, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(m, h, bias=False), torch.nn.Linear(h, m, bias=False)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        y = model(x) + 0.1 * torch.randn(n, m, generator=g, dtype=torch.float64)
    return model, x, y


def mse_evaluate(model, batch):
    x, y = batch
    out = model(x)
    return F.mse_loss(out, y), {"output": out}


def loader_of(x, y, batch_size, shuffle=False):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


RUN = dict(num_chains=3, num_draws=40, seed=5, verbose=False)


def test_result_keys_and_shapes():
    model, x, y = reduced_rank()
    out = estimate_learning_coeff_with_summary(model, loader_of(x, y, 32), evaluate=mse_evaluate,
                                               optimizer_kwargs={"lr": 1e-4, "localization": 10.0},
                                               **RUN)
    assert set(out) == {"llc/mean", "llc/std", "llc-chain/0", "llc-chain/1", "llc-chain/2", "loss/trace"}
    assert out["loss/trace"].shape == (3, 40)
    per_chain = np.array([out[f"llc-chain/{c}"] for c in range(3)])
    assert out["llc/mean"] == pytest.approx(per_chain.mean(), rel=1e-12)
    assert out["llc/std"] == pytest.approx(per_chain.std(ddof=1), rel=1e-12)  # devinterp: torch.std


def test_default_nbeta_is_devinterps_batch_size_over_its_log():
    assert devinterp_default_nbeta(64) == pytest.approx(64 / math.log(64), rel=1e-15)
    with pytest.warns(UserWarning, match="batch size 1"):
        assert devinterp_default_nbeta(1) == 1.0
    model, x, y = reduced_rank()
    with torch.no_grad():
        init = float(F.mse_loss(model(x), y))
    out = estimate_learning_coeff_with_summary(model, loader_of(x, y, 32), evaluate=mse_evaluate,
                                               optimizer_kwargs={"lr": 1e-4, "localization": 10.0},
                                               init_loss=init, **RUN)
    # the per-chain values are nβ (mean loss − init_loss) with nβ = 32 / log 32, not n / log n
    for c in range(3):
        expected = 32 / math.log(32) * (out["loss/trace"][c].mean() - init)
        assert out[f"llc-chain/{c}"] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(callbacks=[lambda **kw: None]), "callbacks"),
    (dict(cores=2), "cores"),
    (dict(gpu_idxs=[0]), "gpu_idxs"),
    (dict(use_amp=True), "use_amp"),
    (dict(online=True), "online"),
    (dict(grad_accum_steps=2), "grad_accum_steps"),
    (dict(seed=[1, 2, 3]), "per-chain seeds"),
    (dict(optimizer_kwargs={"noise_level": 0.5}), "noise_level"),
    (dict(optimizer_kwargs={"bounding_box_size": 1.0}), "bounding_box_size"),
    (dict(optimizer_kwargs={"metrics": ["noise"]}), "diagnostic"),
    (dict(optimizer_kwargs={"optimize_over": torch.ones(3)}), "optimize_over_per_model_param"),
    (dict(optimizer_kwargs={"nbeta": 2.0, "temperature": 2.0}), "temperature"),
    (dict(optimizer_kwargs={"momentum": 0.9}), "not understood"),
    (dict(sampling_method=torch.optim.SGD), "SGLD or SGNHT"),
    (dict(sampling_method="langevin"), "SGLD or SGNHT"),
    (dict(optimize_over_per_model_param={"0.weight": torch.ones(2, 4, dtype=torch.bool)}), "missing"),
    (dict(optimize_over_per_model_param={"0.weight": torch.full((2, 4), 0.5),
                                         "1.weight": torch.ones(4, 2)}), "other than 0 and 1"),
])
def test_unsupported_arguments_are_refused_before_sampling(kwargs, match):
    model, x, y = reduced_rank()
    kwargs = {**dict(evaluate=mse_evaluate, **RUN), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        estimate_learning_coeff_with_summary(model, loader_of(x, y, 32), **kwargs)


def test_a_sum_valued_evaluate_is_refused():
    model, x, y = reduced_rank()
    with pytest.raises(ValueError, match="not a batch mean"):
        estimate_learning_coeff_with_summary(
            model, loader_of(x, y, 32), evaluate=lambda m, b: F.mse_loss(m(b[0]), b[1], reduction="sum"),
            **RUN)


def _fake_devinterp_class(name):
    cls = type(name, (), {})
    cls.__module__ = "devinterp.optim." + name.lower()
    return cls


def test_devinterp_optimizer_classes_map_by_name_and_factor_conventions():
    sgld = sampler_settings(_fake_devinterp_class("SGLD"),
                            {"lr": 3e-4, "localization": 7.0, "weight_decay": 0.5, "temperature": 9.0}, 16)
    assert (sgld["sampler"], sgld["step_size"], sgld["localization"], sgld["nbeta"]) == ("sgld", 3e-4, 7.0, 9.0)
    # weight decay λ adds λ w to the force: the prior log φ = −λ ||w||²/2
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    (grad,) = torch.autograd.grad(sgld["log_prior"](w), w)
    assert torch.equal(grad, -0.5 * w.detach())
    sgnht = sampler_settings(_fake_devinterp_class("SGNHT"), {"lr": 1e-3, "diffusion_factor": 0.05}, 16)
    # devinterp's SGNHT lr is the η = ε/2 of toymodels.sampling.SGNHT
    assert (sgnht["sampler"], sgnht["step_size"], sgnht["sampler_options"]) == ("sgnht", 2e-3, {"diffusion": 0.05})
    assert sgnht["nbeta"] == pytest.approx(16 / math.log(16))
    with pytest.raises(ValueError, match="no counterpart"):
        sampler_settings(_fake_devinterp_class("SGMCMC"), None, 16)


@pytest.mark.parametrize("sampler, options, native", [
    ("sgld", {"lr": 2e-4, "localization": 20.0}, dict(step_size=2e-4, localization=20.0)),
    ("sgnht", {"lr": 1e-4, "diffusion_factor": 0.1},
     dict(step_size=2e-4, sampler="sgnht", sampler_options={"diffusion": 0.1})),
])
def test_compat_equals_native_draw_for_draw(sampler, options, native):
    """Same seed, same minibatches (a loader without shuffling), the burn-in shifted so the draws
    fall on the last step of each block as in devinterp: the traces are the native ones."""
    model, x, y = reduced_rank()
    out = estimate_learning_coeff_with_summary(
        model, loader_of(x, y, 32), evaluate=mse_evaluate, sampling_method=sampler,
        optimizer_kwargs=options, num_burnin_steps=5, num_steps_bw_draws=3, **RUN)
    res = estimate_llc(model, data=(x, y), loss_fn=F.mse_loss, batch_size=32, nbeta=32 / math.log(32),
                       num_chains=3, num_draws=40, num_burnin_steps=5 + 3 - 1, num_steps_bw_draws=3,
                       seed=5, progress=False, **native)
    np.testing.assert_allclose(out["loss/trace"], res.loss_trace, rtol=1e-12)
    np.testing.assert_allclose([out[f"llc-chain/{c}"] for c in range(3)], res.llc_per_chain, rtol=1e-9)
    assert out["llc/mean"] == pytest.approx(res.llc_mean, rel=1e-9)


def test_evaluate_forms_and_masks_match_native():
    """A dict result, a bare tensor and ``evaluate=None`` (``model(batch)`` is the loss) give the
    same run; weight decay and a per-parameter mask equal the native prior and ``restrict_to``."""
    model, x, y = reduced_rank()
    masks = {"0.weight": torch.ones(2, 4, dtype=torch.bool), "1.weight": torch.zeros(4, 2, dtype=torch.bool)}
    masks["1.weight"][0] = True
    common = dict(optimizer_kwargs={"lr": 2e-4, "localization": 20.0, "weight_decay": 0.3},
                  optimize_over_per_model_param=masks, **RUN)
    a = estimate_learning_coeff_with_summary(model, loader_of(x, y, 32), evaluate=mse_evaluate, **common)

    class LossModel(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, batch):
            return F.mse_loss(self.inner(batch[0]), batch[1])

    b = estimate_learning_coeff_with_summary(model, loader_of(x, y, 32),
                                             evaluate=lambda m, d: {"loss": F.mse_loss(m(d[0]), d[1])}, **common)
    masks_wrapped = {"inner." + k: v for k, v in masks.items()}
    c = estimate_learning_coeff_with_summary(LossModel(model), loader_of(x, y, 32),
                                             **{**common, "optimize_over_per_model_param": masks_wrapped})
    mask = torch.cat([masks["0.weight"].reshape(-1), masks["1.weight"].reshape(-1)])
    res = estimate_llc(model, data=(x, y), loss_fn=F.mse_loss, batch_size=32, nbeta=32 / math.log(32),
                       step_size=2e-4, localization=20.0, restrict_to=mask,
                       log_prior=lambda w: -0.15 * (w * w).sum(), num_chains=3, num_draws=40,
                       num_burnin_steps=0, seed=5, progress=False)
    for out in (a, b, c):
        np.testing.assert_allclose(out["loss/trace"], res.loss_trace, rtol=1e-12)
    assert estimate_learning_coeff(model, loader_of(x, y, 32), evaluate=mse_evaluate, **common) == \
        pytest.approx(a["llc/mean"], rel=1e-12)


def test_init_loss_is_the_full_data_loss_unless_given():
    model, x, y = reduced_rank()
    out = estimate_learning_coeff_with_summary(model, loader_of(x, y, 32), evaluate=mse_evaluate,
                                               optimizer_kwargs={"lr": 1e-4, "localization": 10.0}, **RUN)
    with torch.no_grad():
        full = float(F.mse_loss(model(x), y))
    nbeta = 32 / math.log(32)
    assert out["llc-chain/0"] == pytest.approx(nbeta * (out["loss/trace"][0].mean() - full), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# against devinterp 1.3.2 itself, on its own test models (normal crossing and reduced rank)

def _normal_crossing_loader(powers, seed=42, n=1000):
    g = torch.Generator().manual_seed(seed)
    x = torch.normal(0.0, 2.0, size=(n,), generator=g)
    y = 0.25 * torch.randn(n, generator=g)
    return Polynomial(powers).float(), DataLoader(TensorDataset(x, y), batch_size=n, shuffle=False)


def _rrr_loader(seed=42, n=1000, m=5, h=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, m, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(m, h, bias=False), torch.nn.Linear(h, m, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        y = model(x) + 0.1 * torch.randn(n, m, generator=g)
    return model, DataLoader(TensorDataset(x, y), batch_size=100, shuffle=False)


def _evaluate_mse_1d(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y), {}


CASES = {
    "normal_crossing_[1,1]": (lambda: _normal_crossing_loader([1, 1]),
                              dict(lr=5e-4, localization=1.0, nbeta=1000 / math.log(1000))),
    "normal_crossing_[1,2]": (lambda: _normal_crossing_loader([1, 2]),
                              dict(lr=5e-4, localization=1.0, nbeta=1000 / math.log(1000))),
    "reduced_rank_5_3_5": (_rrr_loader, dict(lr=1e-4, localization=10.0)),
}


def compare_with_devinterp(name, num_chains=8, num_draws=1000, num_burnin_steps=500):
    """devinterp's and this layer's estimates on one case: (means, standard errors, seconds)."""
    from devinterp.optim import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary as devinterp_estimate

    make, options = CASES[name]
    run = dict(evaluate=_evaluate_mse_1d, sampling_method=SGLD, num_chains=num_chains,
               num_draws=num_draws, num_burnin_steps=num_burnin_steps, seed=1, verbose=False)
    out = {}
    for label, fn in (("devinterp", devinterp_estimate), ("compat", estimate_learning_coeff_with_summary)):
        model, loader = make()
        init = float(np.mean([_evaluate_mse_1d(model, b)[0].item() for b in loader]))
        start = time.perf_counter()
        # the full-data init loss for both (devinterp's first-num_chains-batches mean is the same
        # here only when they cover the data); both sample SGLD with the same lr, γ and nβ
        res = fn(model, loader, optimizer_kwargs=dict(options), init_loss=init, **run)
        out[label] = (res["llc/mean"], res["llc/std"] / math.sqrt(num_chains), time.perf_counter() - start)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_devinterp_within_standard_errors(name):
    pytest.importorskip("devinterp")
    out = compare_with_devinterp(name)
    (m1, s1, _), (m2, s2, _) = out["devinterp"], out["compat"]
    # 3 combined standard errors (chain-to-chain spread; the chains are independent)
    assert abs(m1 - m2) < 3 * math.hypot(s1, s2), out
