"""What a user waits for (issue 19; no paper figure): end-to-end time of ``estimate_llc`` on the toy, and on the networks researchers bring, against devinterp 1.3.2, a plain vmap loop and a plain per-chain loop.

Two tables, every number measured in this one process, one after another, with ``num_threads``
torch threads (1 by default, as the targets are stated):

1. **End to end on the toy** — the 24-parameter two-layer linear network 4→3→4 of
   ``experiments/bench_llc.py`` (1000 samples, full batch, MSE), ``num_chains`` chains, short and
   long runs (``toy_draws``). ``estimate_llc`` as users call it (numeric step, default
   ``compile="auto"``: the run decides at its start whether compiling pays, and the compile time
   is *included*), against a **plain vmap loop**: ``torch.func.vmap`` of ``functional_call`` over
   the chains, one reverse pass, the SGLD update, nothing else.
2. **Users' networks** — an MLP 784→12→10 (9,550 parameters), an MNIST-shaped MLP 784→128→10 (101,770 parameters, cross-entropy,
   minibatch 256), an MLP 784→1024→256→10 (1,068,810 parameters, minibatch 256) and a small
   causal transformer (2 layers, width 64, context 32, vocabulary 64: 109,632 parameters,
   next-token loss, minibatch 64), at 4 and 8 chains × ``draws`` draws, against
   * **devinterp** 1.3.2's ``estimate_learning_coeff_with_summary`` called as its users call it
     (a shuffled ``DataLoader`` of the batch size, ``SGLD``, ``cores=1``), when the ``bench``
     extra is installed;
   * the **floor**: a plain per-chain loop — one model copy per chain, minibatches cut before the
     clock starts, ``loss.backward()`` and in-place updates ``w ← w − (ε/2)(nβ∇L + γ(w − w*)) +
     √ε ξ``, the loss recorded each step (the least any SGLD implementation must do);
   * a **plain vmap loop**, as above, over minibatches;
   * ``estimate_llc`` with the chain strategy the shape rule did *not* choose (``"vmap"`` or
     ``"loop"``), to show what the rule is worth.

   Inputs are synthetic (Gaussian images, labels from a random teacher; token sequences from a
   random bigram table): the time of a step does not depend on what the data mean.

Peak memory is the peak resident set size of the process during each call (Linux: the
``VmHWM`` counter, reset before each call through ``/proc/self/clear_refs``), so it includes
everything the process holds — read the differences between methods, not the absolute values.
The machine may be shared: the load average is recorded; ratios are between runs of one process.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels import ModuleObjective, default_nbeta, estimate_llc

TOY_TARGET_LONG = 4.0  # issue 19: end to end ≥ 4× the vmap loop at 1000 chains × 2000 draws
DEVINTERP_TARGET_SMALL = 3.0  # ≥ 3× devinterp where the model has ≤ 10⁵ parameters
FLOOR_TARGET = 1.25  # within 1.25× of the per-chain loop


@dataclass
class Config(ExperimentConfig):
    """End-to-end and users'-network benchmark (issue 19)."""

    seed: int = 0
    """seed of the data, the models and every sampler"""
    toy_chains: int = 1000
    """chains of the end-to-end toy table"""
    toy_draws: tuple[int, ...] = (200, 2000)
    """draws of its short and long runs"""
    workloads: tuple[str, ...] = ("mlp_1e4", "mlp_1e5", "mlp_1e6", "transformer_1e5")
    """users' networks to time"""
    chains: tuple[int, ...] = (4, 8)
    """chains of the users'-network table"""
    draws: int = 200
    """draws of each users'-network run"""
    devinterp: bool = True
    """time devinterp 1.3.2 when it is installed (the 'bench' extra)"""
    step_size: float = 1e-5
    """ε of every network run (small enough that no chain diverges; the time does not depend on it)"""
    localization: float = 100.0
    """γ of every network run"""

    QUICK = dict(toy_chains=16, toy_draws=(5, 20), workloads=("mlp_1e4",), chains=(2,), draws=5)


# ----------------------------------------------------------------------------- problems


class CausalTransformer(torch.nn.Module):
    """A small pre-norm causal transformer language model written with plain tensor operations
    (so that ``functional_call`` and ``vmap`` apply), returning next-token logits ``(b, T, V)``."""

    def __init__(self, vocab: int = 64, context: int = 32, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.embed = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Parameter(0.02 * torch.randn(context, width))
        self.blocks = torch.nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(torch.nn.ModuleDict(dict(
                norm1=torch.nn.LayerNorm(width), qkv=torch.nn.Linear(width, 3 * width),
                out=torch.nn.Linear(width, width), norm2=torch.nn.LayerNorm(width),
                up=torch.nn.Linear(width, 4 * width), down=torch.nn.Linear(4 * width, width))))
        self.norm = torch.nn.LayerNorm(width)
        self.unembed = torch.nn.Linear(width, vocab, bias=False)
        self.register_buffer("causal", torch.ones(context, context).tril().bool(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        h = self.embed(tokens) + self.position[:t]
        for block in self.blocks:
            q, k, v = block["qkv"](block["norm1"](h)).chunk(3, dim=-1)
            q, k, v = (z.reshape(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            scores = scores.masked_fill(~self.causal[:t, :t], float("-inf"))
            attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
            h = h + block["out"](attended)
            h = h + block["down"](F.gelu(block["up"](block["norm2"](h))))
        return self.unembed(self.norm(h))


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next token over every position of every sequence."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def workload(name: str, seed: int):
    """``(model, inputs, targets, loss_fn, batch_size)`` of a users'-network workload."""
    g = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the layers' default initialisation; restored below
    try:
        if name.startswith("mlp"):
            widths = {"mlp_1e4": (784, 12, 10), "mlp_1e5": (784, 128, 10),
                      "mlp_1e6": (784, 1024, 256, 10)}[name]
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            model = torch.nn.Sequential(*layers[:-1]).eval()
            n = 4096
            inputs = torch.randn(n, 784, generator=g)
            teacher = torch.randn(784, 10, generator=g)
            targets = (inputs @ teacher).argmax(1)
            return model, inputs, targets, F.cross_entropy, 256
        if name == "transformer_1e5":
            model = CausalTransformer().eval()
            n, t, vocab = 1024, 33, 64
            bigram = torch.randn(vocab, vocab, generator=g).mul(2).softmax(-1)
            tokens = torch.empty(n, t, dtype=torch.long)
            tokens[:, 0] = torch.randint(vocab, (n,), generator=g)
            for i in range(1, t):
                tokens[:, i] = torch.multinomial(bigram[tokens[:, i - 1]], 1, generator=g).squeeze(1)
            return model, tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous(), next_token_loss, 64
    finally:
        torch.random.set_rng_state(torch_state)
    raise ValueError(f"unknown workload {name!r}; known: mlp_1e4, mlp_1e5, mlp_1e6, transformer_1e5")


def toy_problem(seed: int, num_samples: int = 1000, noise_std: float = 0.1):
    """The 24-parameter 4→3→4 linear network of ``experiments/bench_llc.py`` (there: problem (a)),
    float32, at a true factorisation ``W₂W₁ = u vᵀ`` of a rank-1 teacher, with its data."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(4, generator=g, dtype=torch.float64)
    v = torch.randn(4, generator=g, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 4, bias=False))
    with torch.no_grad():  # W₁ = e₁ vᵀ, W₂ = u e₁ᵀ
        model[0].weight.zero_()
        model[0].weight[0] = v.float()
        model[1].weight.zero_()
        model[1].weight[:, 0] = u.float()
    x = torch.randn(num_samples, 4, generator=g, dtype=torch.float64)
    y = x @ torch.outer(u, v).T + noise_std * torch.randn(num_samples, 4, generator=g, dtype=torch.float64)
    return model, x.float(), y.float()


# ----------------------------------------------------------------------------- what is timed


def _reset_peak_memory() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_memory_bytes() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def timed(fn) -> dict:
    """Wall and CPU seconds and peak RSS of one call."""
    _reset_peak_memory()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return dict(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu,
                peak_rss_bytes=_peak_memory_bytes(), value=out)


def run_toymodels(model, x, y, loss_fn, batch_size, *, chains, draws, eps, nbeta, gamma, seed,
                  chain_strategy="auto"):
    objective = ModuleObjective(model, x, y, loss_fn, batch_size=batch_size, chain_strategy=chain_strategy)
    result = estimate_llc(objective, step_size=eps, nbeta=nbeta, localization=gamma, num_chains=chains,
                          num_draws=draws, num_burnin_steps=0, seed=seed, progress=False)
    # the sampling loop alone (compilation happens before it, in prepare_run): the steady state
    return dict(llc_mean=result.llc_mean, strategy=objective.chain_strategy_for(chains),
                compile=objective.compile_status, compile_seconds=objective.compile_seconds,
                sampling_seconds=result.trace.seconds,
                steady_chain_steps_per_second=chains * draws / result.trace.seconds)


def run_floor(model, x, y, loss_fn, batch_size, *, chains, draws, eps, nbeta, gamma, seed, batches=None):
    """The plain per-chain loop (``batches``: the minibatch indices, cut before the clock)."""
    models = [copy.deepcopy(model) for _ in range(chains)]
    centers = [[p.detach().clone() for p in m.parameters()] for m in models]
    g = torch.Generator().manual_seed(seed)
    losses = torch.empty(chains, draws)
    for c, (m, center) in enumerate(zip(models, centers)):
        params = list(m.parameters())
        for s in range(draws):
            if batches is None:
                loss = loss_fn(m(x), y)
            else:
                idx = batches[c, s]
                loss = loss_fn(m(x[idx]), y[idx])
            for p in params:
                p.grad = None
            loss.backward()
            losses[c, s] = loss.detach()
            with torch.no_grad():
                for p, p0 in zip(params, center):
                    drift = nbeta * p.grad + gamma * (p - p0)
                    p.add_(drift, alpha=-eps / 2).add_(torch.randn(p.shape, generator=g), alpha=math.sqrt(eps))
    return dict(llc_mean=float(nbeta * (losses.mean() - losses[:, 0].mean())))


def run_vmap_loop(model, x, y, loss_fn, batch_size, *, chains, draws, eps, nbeta, gamma, seed, batches=None):
    """A plain ``torch.func.vmap`` loop: all chains' parameters stacked, one reverse pass a step."""
    names = [n for n, _ in model.named_parameters()]
    center = {n: p.detach() for n, p in model.named_parameters()}
    params = {n: p.detach().unsqueeze(0).repeat((chains,) + (1,) * p.dim()) for n, p in center.items()}
    g = torch.Generator().manual_seed(seed)

    def loss_one(p, xb, yb):
        return loss_fn(functional_call(model, p, (xb,)), yb)

    full = vmap(loss_one, in_dims=(0, None, None))
    mini = vmap(loss_one, in_dims=(0, 0, 0))
    losses = torch.empty(draws, chains)
    for s in range(draws):
        leaves = {n: v.requires_grad_(True) for n, v in params.items()}
        value = full(leaves, x, y) if batches is None else mini(leaves, x[batches[:, s]], y[batches[:, s]])
        grads = torch.autograd.grad(value.sum(), [leaves[n] for n in names])
        losses[s] = value.detach()
        with torch.no_grad():
            params = {n: (leaves[n] - (eps / 2) * (nbeta * gr + gamma * (leaves[n] - center[n]))
                          + math.sqrt(eps) * torch.randn(gr.shape, generator=g)).detach()
                      for n, gr in zip(names, grads)}
    return dict(llc_mean=float(nbeta * (losses.mean() - losses[0].mean())))


def run_devinterp(model, x, y, loss_fn, batch_size, *, chains, draws, eps, nbeta, gamma, seed):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=batch_size or len(x), shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # devinterp warns about burn-in, nbeta, deprecations
        result = estimate_learning_coeff_with_summary(
            copy.deepcopy(model), loader=loader, evaluate=lambda m, data: loss_fn(m(data[0]), data[1]),
            sampling_method=SGLD, optimizer_kwargs=dict(lr=eps, nbeta=nbeta, localization=gamma),
            num_chains=chains, num_draws=draws, num_burnin_steps=0, num_steps_bw_draws=1, cores=1,
            seed=seed, device="cpu", verbose=False, online=False)
    return dict(llc_mean=float(result["llc/mean"]))


def devinterp_note() -> str:
    """``""`` when devinterp 1.3.2 can be imported, else why its column is empty."""
    try:
        from importlib.metadata import version

        import devinterp  # noqa: F401  (importable at all)
        found = version("devinterp")
    except Exception as exc:  # noqa: BLE001
        return f"devinterp not installed ({type(exc).__name__}): pip install -e '.[bench]'"
    return "" if found == "1.3.2" else f"devinterp {found} installed; the benchmark compares with 1.3.2"


# ----------------------------------------------------------------------------- main


@uses_threads
def main(cfg: Config) -> dict:
    if any(c < 1 for c in cfg.chains) or cfg.toy_chains < 1 or cfg.draws < 1 or min(cfg.toy_draws) < 1:
        raise ValueError("chains and draws must be positive integers")
    for name in cfg.workloads:
        workload(name, cfg.seed)  # an unknown name fails before anything is timed
    outputs = output_paths(cfg, "bench_scale")
    report = dict(config=dict(cfg.__dict__), load_average_start=os.getloadavg(), threads=torch.get_num_threads(),
                  toy=[], networks=[], devinterp_note=devinterp_note() if cfg.devinterp else "off")
    # --- 1. end to end on the toy
    model, x, y = toy_problem(cfg.seed)
    nbeta = default_nbeta(len(x))
    for draws in cfg.toy_draws:
        kw = dict(chains=cfg.toy_chains, draws=draws, eps=1e-3, nbeta=nbeta, gamma=1.0, seed=cfg.seed)
        ours = timed(lambda: run_toymodels(model, x, y, F.mse_loss, None, **kw))
        plain = timed(lambda: run_vmap_loop(model, x, y, F.mse_loss, None, **kw))
        row = dict(chains=cfg.toy_chains, draws=draws, toymodels=ours, vmap_loop=plain,
                   speedup=plain["seconds"] / ours["seconds"])
        report["toy"].append(row)
        print(f"toy {cfg.toy_chains} chains × {draws} draws: toymodels {ours['seconds']:.1f} s "
              f"({ours['value']['compile']}), vmap loop {plain['seconds']:.1f} s: {row['speedup']:.2f}×",
              flush=True)
        write_json(outputs.json, report)
    # --- 2. users' networks
    for name in cfg.workloads:
        model, x, y, loss_fn, batch = workload(name, cfg.seed)
        dim = sum(p.numel() for p in model.parameters())
        for chains in cfg.chains:
            g = torch.Generator().manual_seed(cfg.seed + 1)
            batches = torch.randint(len(x), (chains, cfg.draws, batch), generator=g)
            kw = dict(chains=chains, draws=cfg.draws, eps=cfg.step_size, nbeta=default_nbeta(len(x)),
                      gamma=cfg.localization, seed=cfg.seed)
            row = dict(workload=name, parameters=dim, batch_size=batch, chains=chains, draws=cfg.draws)
            # a two-draw run of each method first: the process's one-off costs (lazy imports, the
            # first vmap trace) are not what a run costs
            warm = dict(kw, draws=2)
            run_toymodels(model, x, y, loss_fn, batch, **warm)
            run_floor(model, x, y, loss_fn, batch, batches=batches, **warm)
            run_vmap_loop(model, x, y, loss_fn, batch, batches=batches, **warm)
            row["toymodels"] = timed(lambda: run_toymodels(model, x, y, loss_fn, batch, **kw))
            # the strategy "auto" did not choose, to show what the shape rule is worth
            other = "vmap" if row["toymodels"]["value"]["strategy"] == "loop" else "loop"
            row["toymodels_other"] = timed(lambda: run_toymodels(model, x, y, loss_fn, batch,
                                                                 chain_strategy=other, **kw))
            row["floor"] = timed(lambda: run_floor(model, x, y, loss_fn, batch, batches=batches, **kw))
            row["vmap_loop"] = timed(lambda: run_vmap_loop(model, x, y, loss_fn, batch, batches=batches, **kw))
            if cfg.devinterp and not report["devinterp_note"]:
                row["devinterp"] = timed(lambda: run_devinterp(model, x, y, loss_fn, batch, **kw))
            ours = row["toymodels"]["seconds"]
            row["vs_floor"] = ours / row["floor"]["seconds"]
            row["vs_vmap_loop"] = row["vmap_loop"]["seconds"] / ours
            if "devinterp" in row:
                row["vs_devinterp"] = row["devinterp"]["seconds"] / ours
            report["networks"].append(row)
            print(format_row(row), flush=True)
            write_json(outputs.json, report)
    report["load_average_end"] = os.getloadavg()
    write_json(outputs.json, report)
    print(format_tables(report))
    return report


def _mb(value) -> str:
    return "–" if value is None else f"{value / 2**20:.0f}"


def format_row(row: dict) -> str:
    di = row.get("devinterp")
    return (f"{row['workload']:16s} {row['parameters']:>9,d} {row['chains']:>2d}×{row['draws']:<4d} "
            f"toymodels {row['toymodels']['seconds']:7.2f} s ({row['toymodels']['value']['strategy']}) | "
            f"floor {row['floor']['seconds']:7.2f} s | vmap {row['vmap_loop']['seconds']:7.2f} s | "
            f"devinterp {'–' if di is None else format(di['seconds'], '7.2f')} s | "
            f"×floor {row['vs_floor']:.2f} | ×devinterp {row.get('vs_devinterp', float('nan')):.2f}")


def format_tables(report: dict) -> str:
    lines = ["", "End to end on the toy (compile included):",
             "| chains × draws | toymodels end to end (s) | of which compiling (s) | steady state "
             "(chain-steps/s) | vmap loop (s) | end-to-end speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in report["toy"]:
        ours = row["toymodels"]["value"]
        lines.append(f"| {row['chains']} × {row['draws']} | {row['toymodels']['seconds']:.1f} | "
                     f"{ours['compile_seconds']:.1f} | {ours['steady_chain_steps_per_second']:,.0f} | "
                     f"{row['vmap_loop']['seconds']:.1f} | {row['speedup']:.2f}× |")
    lines += ["", "Users' networks (wall seconds; peak RSS MiB in brackets):",
              "| workload | params | chains × draws | toymodels (auto: strategy) | other strategy | floor | "
              "vmap loop | devinterp | toymodels / floor | devinterp / toymodels |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["networks"]:
        cells = []
        for method in ("toymodels", "toymodels_other", "floor", "vmap_loop", "devinterp"):
            m = row.get(method)
            cell = "–" if m is None else f"{m['seconds']:.2f} [{_mb(m['peak_rss_bytes'])}]"
            if m is not None and method.startswith("toymodels"):
                cell += f" {m['value']['strategy']}"
            cells.append(cell)
        lines.append(f"| {row['workload']} | {row['parameters']:,} | {row['chains']} × {row['draws']} | "
                     + " | ".join(cells) + f" | {row['vs_floor']:.2f} | "
                     + (f"{row['vs_devinterp']:.2f}× |" if "vs_devinterp" in row else "– |"))
    lines.append(f"\nload average {report['load_average_start']} → {report.get('load_average_end')}; "
                 f"{report['threads']} thread(s). {report['devinterp_note']}")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main, Config)
