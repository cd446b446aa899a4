"""Smoke test of the sampler benchmark, and checks of the compiled network objective it times."""

import json

import pytest
import torch
import torch.nn.functional as F

from experiments.bench_llc import Config, format_table, main, network_problem
from toymodels.objectives import CompiledLossAndGrad, ModuleObjective
from toymodels.objectives.compiled import bmm_for_small_or_shared as _bmm_for_small_or_shared
from toymodels.objectives.compiled import bmm_samples_innermost as _bmm_samples_innermost
from toymodels.sampling import SGLDHyperparameters, run_sgld


def test_smoke_bench_llc(tmp_path):
    cfg = Config.quick_config(out_dir=tmp_path, figure=tmp_path / "bench.png", num_threads=1,
                              devinterp=False)
    out = main(cfg)
    saved = json.loads((tmp_path / "bench_llc.json").read_text())
    assert (tmp_path / "bench.png").exists()
    assert {(r["problem"], r["chains"]) for r in saved["rows"]} == {
        ("a", 1), ("a", 16), ("b", 1), ("b", 16)}
    for row in out["rows"]:
        for key in ("toymodels_eager", "loop"):
            cell = row[key]
            assert cell["rate"] > 0
            assert cell["chain_steps"] == cell["measured_chains"] * cell["measured_draws"]
    memory = out["memory"]
    assert memory["chains"] == 16 and memory["draws"] == 20
    # five float64 records of chains × draws
    assert memory["trace_bytes"] == 5 * 8 * 16 * 20
    assert memory["peak_rss_bytes"] >= memory["rss_before_sampling_bytes"] > 0
    assert "devinterp column off" in format_table(out["rows"], out["devinterp_note"])


def test_smoke_bench_layouts(tmp_path):
    from experiments.bench_layouts import Config as LayoutConfig
    from experiments.bench_layouts import main as layouts_main

    cfg = LayoutConfig.quick_config(out_dir=tmp_path, figure=tmp_path / "layouts.png", num_threads=1)
    out = layouts_main(cfg)
    saved = json.loads((tmp_path / "bench_layouts.json").read_text())
    assert (tmp_path / "layouts.png").exists()
    assert set(saved["rows"]) == {"linear 4-3-4", "classifier 4-16-3"}
    for row in out["rows"].values():
        assert row["samples_ms"] > 0 and row["features_ms"] > 0
        assert row["ratio"] == pytest.approx(row["features_ms"] / row["samples_ms"])
        assert row["rule"] == "samples"  # 4 numbers per sample, full batch


def _random_params(objective, chains, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(chains, objective.dim, generator=g, dtype=objective.dtype)
    return objective.center + 0.3 * noise


def _compare(eager, compiled, params, seed=5):
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    loss_e, grad_e = eager.loss_and_grad(params, g1)
    loss_c, grad_c = compiled.loss_and_grad(params, g2)
    assert compiled.compile_status.startswith("compiled"), compiled.compile_status
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_c, grad_e, rtol=1e-12, atol=1e-14)
    # both paths drew the same minibatches from the generator
    assert torch.equal(g1.get_state(), g2.get_state())


def test_compiled_objective_matches_eager_in_float64(monkeypatch):
    """Same losses, gradients and SGLD draws (to rounding); chunks of 2 chains, the last padded."""
    monkeypatch.setattr(CompiledLossAndGrad, "CHUNK_BYTES", 2 * 100 * 4 * 8)  # 2 chains per chunk
    model, x, y = network_problem(Config(dtype="float64", num_samples=100))
    eager = ModuleObjective(model, x, y, F.mse_loss, compile=False)
    compiled = ModuleObjective(model, x, y, F.mse_loss, compile=True)
    _compare(eager, compiled, _random_params(eager, 7))
    assert "4 chunk(s) of 2 chains, samples innermost" in compiled.compile_status

    hyper = SGLDHyperparameters(step_size=1e-3, nbeta=20.0, localization=1.0)
    runs = {}
    for mode in ("auto", True, False):  # the compiled graph is the same: a cache hit
        objective = ModuleObjective(model, x, y, F.mse_loss, compile=mode)
        runs[mode] = run_sgld(objective, hyper=hyper, num_chains=7, num_draws=30, seed=3)
        if mode == "auto":  # a short run never reaches the work that pays for compiling
            assert objective.compile_status == "eager"
    assert (runs["auto"].loss == runs[False].loss).all()
    assert abs(runs[True].loss - runs[False].loss).max() < 1e-10


@pytest.mark.slow
def test_compiled_minibatch_objective_matches_eager_in_float64():
    model, x, y = network_problem(Config(dtype="float64", num_samples=200))
    eager = ModuleObjective(model, x, y, F.mse_loss, batch_size=50, compile=False)
    compiled = ModuleObjective(model, x, y, F.mse_loss, batch_size=50, compile=True)
    _compare(eager, compiled, _random_params(eager, 300))


def test_compile_failure_or_disagreement_falls_back_to_eager(monkeypatch):
    """A failing compiler, or a compiled result that disagrees with eager, leaves the eager path."""
    model, x, y = network_problem(Config(dtype="float64", num_samples=50))
    eager = ModuleObjective(model, x, y, F.mse_loss, compile=False)
    params = _random_params(eager, 3)
    want = eager.loss_and_grad(params, None)

    def fail(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(CompiledLossAndGrad, "__init__", fail)
    objective = ModuleObjective(model, x, y, F.mse_loss, compile=True)
    got = objective.loss_and_grad(params, None)
    assert objective.compile_status == "eager (compilation failed, RuntimeError: no C++ compiler)"
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert objective.compile(5) is False  # one failure is final

    def fake_init(self, objective, num_chains, dtype, device, layout=None):  # no compiling here
        self.objective, self.batched_data, self.chunk, self.num_chunks = objective, False, num_chains, 1

    monkeypatch.setattr(CompiledLossAndGrad, "__init__", fake_init)
    monkeypatch.setattr(CompiledLossAndGrad, "__call__",
                        lambda self, p, *data: (torch.zeros(p.shape[0], dtype=p.dtype),
                                                torch.zeros_like(p)))
    objective = ModuleObjective(model, x, y, F.mse_loss, compile=True)
    got = objective.loss_and_grad(params, None)
    assert "compiled losses differ from eager" in objective.compile_status
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def _bmm_operands(shape_a, shape_b, shared):
    """float64 operands of a bmm; the shared one is expanded with batch stride 0, as vmap does."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(shape_a, generator=g, dtype=torch.float64)
    b = torch.randn(shape_b, generator=g, dtype=torch.float64)
    if shared == "a":
        a = a[:1].expand(shape_a)
    if shared == "b":
        b = b[:1].expand(shape_b)
    return a, b


@pytest.mark.parametrize("shape_a, shape_b, shared", [
    ((5, 40, 3), (5, 3, 4), None),     # small contraction: product and sum
    ((5, 4, 40), (5, 40, 3), "a"),     # shared left operand (stride-0 batch): one mm
    ((5, 40, 30), (5, 30, 20), "b"),   # shared right operand: one mm
    ((5, 30, 20), (5, 20, 25), None),  # neither: left to BLAS
])
def test_bmm_rewrites_are_exact(shape_a, shape_b, shared):
    a, b = _bmm_operands(shape_a, shape_b, shared)
    got = _bmm_for_small_or_shared(a, b)
    if got is NotImplemented:
        assert shape_a[2] > CompiledLossAndGrad.SMALL_CONTRACTION and shared is None
        return
    torch.testing.assert_close(got, torch.bmm(a, b), rtol=1e-13, atol=1e-13)


def _small_networks(name):
    """Full-batch float64 problems with biases, activations and losses other than the benchmark's."""
    from toymodels.models.tms import ChenTMS

    g = torch.Generator().manual_seed(0)
    if name == "tms":  # ReLU(x Wᵀ W + b), a bias added after the small contraction
        W = torch.randn(2, 6, generator=g, dtype=torch.float64)
        x = torch.rand(200, 6, generator=g, dtype=torch.float64)
        return ChenTMS(W, -0.1 * torch.ones(6, dtype=torch.float64)), x, x, ChenTMS.loss_fn
    torch.manual_seed(0)  # the layers' default initialisation
    if name == "classifier":  # integer targets, cross-entropy
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        x = torch.randn(200, 4, generator=g, dtype=torch.float64)
        return model.double(), x, torch.randint(3, (200,), generator=g), F.cross_entropy
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Softplus(), torch.nn.Linear(3, 2))
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    return model.double(), x, torch.randn(200, 2, generator=g, dtype=torch.float64), F.huber_loss


@pytest.mark.parametrize("name, layout", [
    ("tms", "samples"),
    ("classifier", "samples"),
    ("tms", "features"),
    pytest.param("huber", "samples", marks=pytest.mark.slow),
])
def test_compiled_layouts_match_eager_in_float64(name, layout):
    """Both layouts compute the eager losses and gradients, to rounding, on networks with biases."""
    model, x, y, loss_fn = _small_networks(name)
    objective = ModuleObjective(model, x, y, loss_fn, compile=False)
    compiled = CompiledLossAndGrad(objective, 5, torch.float64, torch.device("cpu"), layout=layout)
    params = _random_params(objective, 5)
    want_losses, want_grads = objective.loss_and_grad(params, None)
    losses, grads = compiled(params)
    torch.testing.assert_close(losses, want_losses, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads, want_grads, rtol=1e-12, atol=1e-14)


class _PairsOfInputs(torch.nn.Module):
    """A forward that needs contiguous inputs: ``x.view(-1, 2)`` merges the sample axis with the
    features, which fails on the samples-innermost copy."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.linear(x.view(-1, 2)).view(x.shape[0], -1)


def test_a_model_that_fails_with_samples_innermost_is_compiled_with_features_innermost():
    torch.manual_seed(0)
    model = _PairsOfInputs().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 2, generator=g, dtype=torch.float64)
    eager = ModuleObjective(model, x, y, F.mse_loss, compile=False)
    compiled = ModuleObjective(model, x, y, F.mse_loss, compile=True)
    params = _random_params(eager, 3)
    _compare(eager, compiled, params)
    assert "features innermost" in compiled.compile_status
    assert "samples innermost failed" in compiled.compile_status


def test_layout_rule_reads_only_shapes():
    """Samples innermost for full-batch data of ≤ NARROW_DATA numbers per sample, else features."""
    narrow = CompiledLossAndGrad.NARROW_DATA
    model = torch.nn.Linear(narrow, 1)
    x, y = torch.randn(20, narrow), torch.randn(20, 1)
    choose = CompiledLossAndGrad.choose_layout
    assert choose(ModuleObjective(model, x, y, F.mse_loss)) == "samples"
    assert choose(ModuleObjective(model, x, y, F.mse_loss, batch_size=5)) == "features"
    wide = torch.nn.Linear(narrow + 1, 1)
    assert choose(ModuleObjective(wide, torch.randn(20, narrow + 1), y, F.mse_loss)) == "features"
    objective = ModuleObjective(model, x, y, F.mse_loss, batch_size=5)
    with pytest.raises(ValueError, match="full-batch"):
        CompiledLossAndGrad(objective, 2, torch.float32, torch.device("cpu"), layout="samples")
    with pytest.raises(ValueError, match="layout must be"):
        CompiledLossAndGrad(objective, 2, torch.float32, torch.device("cpu"), layout="rows")


@pytest.mark.parametrize("shape_a, shape_b, shared", [
    ((5, 4, 40), (5, 40, 3), "a"),     # the data product X Wᵀ (and Xᵀ G): one mm, samples innermost
    ((5, 40, 30), (5, 30, 20), "b"),   # shared right operand: one mm
    ((5, 40, 3), (5, 3, 4), None),     # small contraction, the long axis first
    ((5, 3, 3), (5, 3, 40), None),     # small contraction, the long axis last
    ((5, 3, 40), (5, 40, 4), None),    # a weight gradient: long contraction into a small matrix
    ((5, 30, 20), (5, 20, 25), None),  # none of these: left to BLAS
])
def test_samples_innermost_bmm_rewrites_are_exact(shape_a, shape_b, shared):
    a, b = _bmm_operands(shape_a, shape_b, shared)
    got = _bmm_samples_innermost(a, b)
    if got is NotImplemented:
        assert shape_a == (5, 30, 20)
        return
    torch.testing.assert_close(got, torch.bmm(a, b), rtol=1e-13, atol=1e-13)
    if shape_a == (5, 40, 3) or shared == "a":  # the long axis (40) has stride 1
        assert got.stride(1) == 1


def test_bad_compile_argument_is_refused(monkeypatch):
    model, x, y = network_problem(Config(num_samples=10))
    with pytest.raises(ValueError, match="compile must be"):
        ModuleObjective(model, x, y, F.mse_loss, compile="yes")
    monkeypatch.setenv("TOYMODELS_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="TOYMODELS_COMPILE"):
        ModuleObjective(model, x, y, F.mse_loss)
    monkeypatch.setenv("TOYMODELS_COMPILE", "0")
    assert ModuleObjective(model, x, y, F.mse_loss).compile_mode == "never"
    with pytest.raises(ValueError, match="num_chains"):
        ModuleObjective(model, x, y, F.mse_loss).compile(0)


def test_bench_versus_commit_smoke(tmp_path):
    """Smoke: the commit comparison runs both checkouts and reports a ratio per cell."""
    from experiments.bench_versus_commit import Config as VersusConfig
    from experiments.bench_versus_commit import main as versus_main

    report = versus_main(VersusConfig.quick_config(commit="HEAD", chains=(4,), steps=5, out_dir=tmp_path))
    assert set(report["cells"]) == {f"{name} | 4 chains" for name in
                                    ("network eager", "network compiled", "potential")}
    assert all(cell["ratio"] > 0 for cell in report["cells"].values())
    assert (tmp_path / "bench_versus_commit.json").exists()
