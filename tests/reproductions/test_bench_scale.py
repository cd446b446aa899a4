"""Smoke test of experiments/bench_scale.py, and the plain baselines it times against."""

import json

import torch
import torch.nn.functional as F

from experiments.bench_scale import Config, main, run_floor, run_vmap_loop, workload


def test_smoke_bench_scale(tmp_path):
    cfg = Config.quick_config(out_dir=tmp_path, figure=tmp_path / "bench_scale.png", devinterp=False)
    report = main(cfg)
    saved = json.loads((tmp_path / "bench_scale.json").read_text())
    assert [row["draws"] for row in saved["toy"]] == list(cfg.toy_draws)
    row = saved["networks"][0]
    assert row["workload"] == "mlp_1e4" and row["parameters"] == 9550
    assert {row["toymodels"]["value"]["strategy"], row["toymodels_other"]["value"]["strategy"]} == {"vmap", "loop"}
    assert row["vs_floor"] > 0 and report["networks"][0]["chains"] == 2


def test_baselines_sample_the_same_chain_as_each_other():
    # the per-chain floor and the vmap loop take the same step on the same minibatches; with the
    # same noise stream they are the same chain, so their loss traces (hence λ̂) agree to rounding
    model, x, y, loss_fn, batch = workload("mlp_1e4", 0)
    model = model.double()
    x = x.double()
    batches = torch.randint(len(x), (1, 6, batch), generator=torch.Generator().manual_seed(3))
    kw = dict(chains=1, draws=6, eps=1e-4, nbeta=100.0, gamma=10.0, seed=5, batches=batches)
    floor = run_floor(model, x, y, F.cross_entropy, batch, **kw)
    plain = run_vmap_loop(model, x, y, F.cross_entropy, batch, **kw)
    assert abs(floor["llc_mean"] - plain["llc_mean"]) < 1e-8 * max(1.0, abs(floor["llc_mean"]))
