"""Benchmark of the compiled objective's two memory layouts (no paper figure): samples innermost against features innermost.

``CompiledLossAndGrad`` stores a full-batch network's activations with the sample axis innermost
when the data have at most ``NARROW_DATA`` numbers per sample (``layout="samples"``), and in the
natural order otherwise (``layout="features"``). This script is the evidence for that rule: it
compiles both layouts for a set of small networks on full-batch data and times one loss-and-gradient
call over all chains (CPU time, median of 5 blocks), alternating the two layouts so that a change
in the machine's speed hits both alike. The ratio ``features / samples`` (CPU seconds per call) is what the rule is about;
above 1 the samples layout is faster.

Networks (float32, ``n`` samples, Gaussian inputs unless said):

* ``linear 4-3-4``: the 24-parameter linear network of ``bench_llc.py`` (a), mean-squared error;
* ``TMS 6-2``: ``ReLU(x WᵀW + b)`` on sparse uniform inputs (``toymodels.models.tms.ChenTMS``);
* ``DLN 5-4-3-5``: a three-layer linear network, mean-squared error;
* ``MLP 2-32-32-1``: tanh, biases, mean-squared error;
* ``softplus 3-3-2``: biases, Huber loss;
* ``classifier 4-16-3``: ReLU, biases, cross-entropy on integer labels;
* ``MLP 20-20-20``: tanh, biases, mean-squared error;
* ``wide 64-8-1`` and ``wide 256-16-1``: ReLU, biases, mean-squared error (the rule's boundary).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels.models.tms import ChenTMS
from toymodels.objectives import CompiledLossAndGrad, ModuleObjective


BLOCKS = 5  # timed blocks per layout and network


@dataclass
class Config(ExperimentConfig):
    """Compiled-objective layout benchmark."""

    seed: int = 0
    """seed of the data and of the initial parameters"""
    num_threads: int = 2
    """torch intra-op threads"""
    num_chains: int = 256
    """chains per call"""
    num_samples: int = 1000
    """n, the dataset size"""
    repeats: int = 40
    """timed calls per layout and network (after two warm-up calls), in 5 blocks; the median block
    counts"""
    networks: tuple[str, ...] = ()
    """names of the networks to time (empty: all of them)"""

    QUICK = dict(num_chains=8, repeats=2, num_samples=100, networks=("linear 4-3-4", "classifier 4-16-3"))


def networks(n: int, seed: int) -> dict[str, tuple]:
    """``name -> (model, inputs, targets, loss_fn)``, float32, full batch."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def mlp(*widths, act=nn.Tanh, bias=True):
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(widths) - 2 and act is not None:
                layers.append(act())
        model = nn.Sequential(*layers)
        with torch.no_grad():  # seeded from g, not from torch's global generator
            for p in model.parameters():
                p.copy_(randn(*p.shape) / max(p.shape[-1], 1) ** 0.5)
        return model

    sparse = torch.rand(n, 6, generator=g) * (torch.rand(n, 6, generator=g) < 0.3)
    x434 = randn(n, 4)
    out = {
        "linear 4-3-4": (mlp(4, 3, 4, act=None, bias=False), x434, x434 @ randn(4, 4), F.mse_loss),
        "TMS 6-2": (ChenTMS(randn(2, 6), -0.1 * torch.ones(6)), sparse, sparse, ChenTMS.loss_fn),
        "DLN 5-4-3-5": (mlp(5, 4, 3, 5, act=None, bias=False), randn(n, 5), randn(n, 5), F.mse_loss),
        "MLP 2-32-32-1": (mlp(2, 32, 32, 1), randn(n, 2), randn(n, 1), F.mse_loss),
        "softplus 3-3-2": (mlp(3, 3, 2, act=nn.Softplus), randn(n, 3), randn(n, 2), F.huber_loss),
        "classifier 4-16-3": (mlp(4, 16, 3, act=nn.ReLU), randn(n, 4),
                              torch.randint(3, (n,), generator=g), F.cross_entropy),
        "MLP 20-20-20": (mlp(20, 20, 20), randn(n, 20), randn(n, 20), F.mse_loss),
        "wide 64-8-1": (mlp(64, 8, 1, act=nn.ReLU), randn(n, 64), randn(n, 1), F.mse_loss),
        "wide 256-16-1": (mlp(256, 16, 1, act=nn.ReLU), randn(n, 256), randn(n, 1), F.mse_loss),
    }
    return out


def time_layouts(model, inputs, targets, loss_fn, *, chains: int, repeats: int, seed: int) -> dict:
    """CPU milliseconds per call of each layout, interleaved, and the layout the rule picks."""
    objective = ModuleObjective(model, inputs, targets, loss_fn, compile=False)
    compiled = {layout: CompiledLossAndGrad(objective, chains, torch.float32, torch.device("cpu"),
                                            layout=layout)
                for layout in ("samples", "features")}
    g = torch.Generator().manual_seed(seed)
    params = objective.center + 0.1 * torch.randn(chains, objective.dim, generator=g)
    for fn in compiled.values():  # warm-up
        fn(params)
        fn(params)
    # blocks of calls, the layouts alternating; the median block resists a transient slowdown
    per_call = {layout: [] for layout in compiled}
    calls = max(1, repeats // BLOCKS)
    for _ in range(BLOCKS):
        for layout, fn in compiled.items():
            start = time.process_time()
            for _ in range(calls):
                fn(params)
            per_call[layout].append((time.process_time() - start) / calls)
    ms = {layout: 1e3 * statistics.median(times) for layout, times in per_call.items()}
    return dict(parameters=objective.dim, per_sample=max(inputs[0].numel(), targets[0].numel()),
                samples_ms=ms["samples"], features_ms=ms["features"],
                ratio=ms["features"] / ms["samples"],
                rule=CompiledLossAndGrad.choose_layout(objective))


@uses_threads
def main(cfg: Config) -> dict:
    problems = networks(cfg.num_samples, cfg.seed)
    unknown = set(cfg.networks) - set(problems)
    if unknown:
        raise ValueError(f"unknown networks {sorted(unknown)}; choose from {list(problems)}")
    if cfg.networks:
        problems = {k: problems[k] for k in cfg.networks}
    rows = {}
    for name, problem in problems.items():
        rows[name] = time_layouts(*problem, chains=cfg.num_chains, repeats=cfg.repeats, seed=cfg.seed)
        print(f"  {name}: {rows[name]['ratio']:.2f}", flush=True)
    print(format_table(rows, cfg))
    out = dict(config=asdict(cfg), narrow_data=CompiledLossAndGrad.NARROW_DATA, rows=rows)
    paths = output_paths(cfg, "bench_layouts")
    write_json(paths.json, out)
    plot(rows, cfg, paths.figure)
    return out


def format_table(rows: dict, cfg: Config) -> str:
    lines = [f"CPU ms per loss-and-gradient call, {cfg.num_chains} chains, n = {cfg.num_samples}, "
             f"{cfg.num_threads} thread(s); ratio = features / samples (> 1: samples faster)",
             f"{'network':20s} {'params':>6s} {'per sample':>10s} {'samples':>9s} {'features':>9s} "
             f"{'ratio':>6s}  rule"]
    for name, r in rows.items():
        lines.append(f"{name:20s} {r['parameters']:6d} {r['per_sample']:10d} {r['samples_ms']:9.2f} "
                     f"{r['features_ms']:9.2f} {r['ratio']:6.2f}  {r['rule']}")
    return "\n".join(lines)


def plot(rows: dict, cfg: Config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    ratios = [rows[k]["ratio"] for k in names]
    colors = ["tab:blue" if rows[k]["rule"] == "samples" else "tab:gray" for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names[::-1], ratios[::-1], color=colors[::-1])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("CPU time, features innermost / samples innermost")
    ax.set_title(f"compiled loss and gradient, {cfg.num_chains} chains, n = {cfg.num_samples}\n"
                 "blue: the rule picks samples innermost; gray: features")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
