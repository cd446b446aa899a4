"""How a network's chains are evaluated: vmapped or looped, chunked for memory, compiled or not.

The strategies are exact rewrites of one another: same minibatches (drawn once for all chains),
same losses and gradients up to the summation order of the matrix products. Checked in float64
on every device present (the ``device`` fixture: the CPU, and CUDA when there is one).
"""

import pytest
import torch
import torch.nn.functional as F

from toymodels import ModuleObjective, SGLDHyperparameters, estimate_llc, run_chains
from toymodels.objectives.module import EAGER_CHUNK_BYTES, LOOP_MAX_CHAINS, LOOP_WORK_THRESHOLD

F64 = torch.float64


def _classifier(device, width=16, n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.Tanh(), torch.nn.Linear(width, 3))
    model = model.to(device=device, dtype=F64)
    inputs = torch.randn(n, 5, generator=g, dtype=F64).to(device)
    targets = torch.randint(0, 3, (n,), generator=g).to(device)
    return model.eval(), inputs, targets


@pytest.mark.parametrize("batch_size", [None, 16])
def test_loop_and_vmap_give_the_same_losses_and_gradients(device, batch_size):
    model, x, y = _classifier(device)
    out = {}
    for strategy in ("vmap", "loop"):
        objective = ModuleObjective(model, x, y, F.cross_entropy, batch_size=batch_size,
                                    chain_strategy=strategy, compile=False)
        params = objective.center + 0.1 * torch.randn(5, objective.dim, dtype=F64,
                                                      generator=torch.Generator().manual_seed(1)).to(device)
        out[strategy] = objective.loss_and_grad(params, torch.Generator(device=device).manual_seed(2))
    torch.testing.assert_close(out["loop"][0], out["vmap"][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out["loop"][1], out["vmap"][1], rtol=1e-10, atol=1e-13)
    # the gradient is the loss's: a central difference along one coordinate of chain 3
    objective = ModuleObjective(model, x, y, F.cross_entropy, chain_strategy="loop", compile=False)
    w = objective.center.clone().unsqueeze(0)
    h = 1e-6
    plus, minus = w.clone(), w.clone()
    plus[0, 4] += h
    minus[0, 4] -= h
    slope = (objective.full_loss(plus) - objective.full_loss(minus)) / (2 * h)
    grad = objective.loss_and_grad(w, None)[1][0, 4]
    assert abs(float(slope) - float(grad)) < 1e-8


def test_sgld_runs_agree_across_strategies_and_chunks(device):
    model, x, y = _classifier(device)
    hyper = SGLDHyperparameters(step_size=1e-4, nbeta=50.0, localization=1.0)
    traces = {}
    for name, options in {"vmap": dict(chain_strategy="vmap"), "loop": dict(chain_strategy="loop"),
                          "chunked": dict(chain_strategy="vmap", memory_limit=None)}.items():
        objective = ModuleObjective(model, x, y, F.cross_entropy, batch_size=16, compile=False, **options)
        if name == "chunked":  # a limit that leaves room for 3 of the 8 chains' activations at once
            objective.memory_plan(8, 40)
            plan = objective.memory_plan(8, 40)
            per_chain = plan["activations_per_chain"]
            objective.memory_limit = plan["bytes"] - 8 * per_chain + 3 * per_chain
        traces[name] = run_chains(objective, hyper=hyper, num_chains=8, num_draws=40, seed=5)
        if name == "chunked":
            assert objective.chunk_chains == 3
    for name in ("loop", "chunked"):
        assert abs(traces[name].loss - traces["vmap"].loss).max() < 1e-9, name


def test_auto_strategy_reads_shapes_only():
    model, x, y = _classifier("cpu", width=4, n=64)
    small = ModuleObjective(model, x, y, F.cross_entropy, compile=False)
    assert small.dim * 64 < LOOP_WORK_THRESHOLD
    assert small.chain_strategy_for(8) == "vmap"
    wide = torch.nn.Sequential(torch.nn.Linear(5, 2048), torch.nn.Tanh(), torch.nn.Linear(2048, 3)).double()
    big = ModuleObjective(wide, x.repeat(4, 1), y.repeat(4), F.cross_entropy, compile=False)
    assert big.dim * 256 >= LOOP_WORK_THRESHOLD
    assert big.chain_strategy_for(8) == "loop"
    assert big.chain_strategy_for(LOOP_MAX_CHAINS + 1) == "vmap"  # many chains amortise vmap's overhead
    with pytest.raises(ValueError, match="chain_strategy"):
        ModuleObjective(model, x, y, F.cross_entropy, chain_strategy="threads")


def test_activation_bytes_measure_what_the_backward_pass_keeps():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(40, 1).double()
    x, y = torch.randn(200, 40, generator=g, dtype=F64), torch.randn(200, 1, generator=g, dtype=F64)
    full = ModuleObjective(model, x, y, F.mse_loss, compile=False).activation_bytes()
    half = ModuleObjective(model, x, y, F.mse_loss, batch_size=100, compile=False).activation_bytes()
    # a linear layer keeps its input (b × 40 float64) for the weight gradient; mse keeps the residual
    assert full >= 200 * 40 * 8
    assert 1.8 < full / half < 2.1


def test_eager_chunks_bound_the_largest_intermediate_and_change_no_number(monkeypatch):
    # 2000 samples × 64 hidden units × 8 bytes = 1 MiB per chain for the hidden activations: the
    # cache rule takes 4 chains a pass, and 10 chains as 3 equal passes (4, 4, 2 would be uneven)
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)).double()
    x, y = torch.randn(2000, 3, generator=g, dtype=F64), torch.randn(2000, 1, generator=g, dtype=F64)
    objective = ModuleObjective(model, x, y, F.mse_loss, compile=False, chain_strategy="vmap")
    per_chain = 2000 * 64 * 8
    assert objective.eager_chunk(10) == 10 // -(-10 // (EAGER_CHUNK_BYTES // per_chain)) + 1 == 4
    assert objective._largest_activation_bytes == per_chain  # the shared data are not counted
    assert objective.eager_chunk(2) == 2
    params = objective.center + 0.1 * torch.randn(10, objective.dim, generator=g, dtype=F64)
    chunked = objective.loss_and_grad(params, None)
    monkeypatch.setattr("toymodels.objectives.module.EAGER_CHUNK_BYTES", 2**40)
    assert objective.eager_chunk(10) == 10
    whole = objective.loss_and_grad(params, None)
    for a, b in zip(chunked, whole):  # bit for bit: each chain's gradient is its own loss's
        assert torch.equal(a, b)


def test_a_run_that_cannot_fit_is_refused_before_any_step():
    model, x, y = _classifier("cpu")
    objective = ModuleObjective(model, x, y, F.cross_entropy, memory_limit=10_000, compile=False)
    calls = []
    original = objective.loss_and_grad
    objective.loss_and_grad = lambda *a: calls.append(1) or original(*a)
    with pytest.raises(MemoryError, match="memory_limit"):
        estimate_llc(objective, step_size=1e-4, num_chains=64, num_draws=10, progress=False)
    assert calls == []
    with pytest.raises(ValueError, match="memory_limit"):
        ModuleObjective(model, x, y, F.cross_entropy, memory_limit=-1)


def test_compile_is_decided_once_from_the_run_length(monkeypatch):
    model, x, y = _classifier("cpu", width=4, n=500)  # 39 parameters
    decided = []
    objective = ModuleObjective(model, x, y, F.cross_entropy, compile="auto")
    monkeypatch.setattr(objective, "compile", lambda chains: decided.append(chains) or False)
    assert objective.prepare_run(1000, 200, 200)["compile"] == "eager"  # ≈ 8 s of estimated eager work: no
    assert decided == []
    assert objective.prepare_run(1000, 2000, 2000)["compile"] == "eager"  # asked, and it failed
    assert decided == [1000]
    wide = torch.nn.Sequential(torch.nn.Linear(5, 4096), torch.nn.Tanh(), torch.nn.Linear(4096, 3)).double()
    big = ModuleObjective(wide, x, y, F.cross_entropy, compile="auto")
    monkeypatch.setattr(big, "compile", lambda chains: decided.append(chains) or True)
    big.prepare_run(200, 10_000, 100)  # long, but wide layers are BLAS-bound: never compiled
    assert decided == [1000]
