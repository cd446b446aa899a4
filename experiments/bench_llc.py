"""Sampler throughput benchmark (issue 3, item 8; no paper figure): toymodels' generic SGLD path against a per-chain loop and devinterp 1.3.2.

Problems:

* (a) a two-layer linear network 4→3→4 without bias (24 parameters) at a true factorisation
  ``W₂W₁ = u vᵀ`` of a rank-1 teacher; ``n`` inputs ``x ~ N(0, I₄)``, targets ``u vᵀ x`` plus
  Gaussian noise; mean-squared-error loss, full-batch gradients;
* (b) an exact 18-parameter potential, the normal crossing ``K(w) = Σ_{j<6} w_{3j}² w_{3j+1}⁴
  w_{3j+2}²`` (``toymodels.models.potentials.normal_crossing_potential``; λ = 6 · 1/4 = 3/2).

Each cell of the table is a rate in chain-steps per wall-clock second (one SGLD step of one chain,
loss and gradient included) for one number of chains, measured in this process for:

* ``toymodels``: ``ModuleObjective`` (the path every ``nn.Module`` takes; no special case for
  linear networks) compiled, at steady state (the seconds to compile are reported apart), and the
  same objective eager; for (b) the batched ``PotentialObjective``;
* ``loop``: a plain per-chain loop, one model copy per chain, ``loss.backward()`` and in-place
  parameter updates with the same step, data and hyperparameters;
* ``devinterp``: ``devinterp.slt.sampler.estimate_learning_coeff_with_summary`` 1.3.2 called as
  its users call it — the model, a standard ``DataLoader`` over the same data (one full batch),
  ``SGLD`` with the same ``lr = ε``, ``nbeta`` and ``localization`` — when the ``bench`` extra is
  installed; otherwise that column is skipped with a note.

Baselines run their chains one after another, so their rate does not depend on the number of
chains: to keep the benchmark within minutes they are timed on as many chains and draws as fit
into ``seconds_per_cell`` and the JSON records how many. The machine may be shared: the ratios are
taken between runs in one process, and CPU seconds are recorded beside wall seconds.

The peak memory of ``estimate_llc``'s path (``make_objective`` → ``run_sgld`` with the default
compile policy → ``llc_from_trace``) on (a) with ``memory_chains × memory_draws`` is measured in a
fresh subprocess as its peak resident set size (``ru_maxrss``; everything the process holds:
Python, torch, the compiler, the recorded traces).
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels import default_nbeta, llc_from_trace
from toymodels.models.potentials import normal_crossing_potential
from toymodels.objectives import ModuleObjective, PotentialObjective, make_objective
from toymodels.sampling import SGLDHyperparameters, run_sgld

TARGET_CHAIN_STEPS_PER_SECOND = 100_000  # issue 3, item 8: (a) at 1000 chains, float32, 2 cores
TARGET_PEAK_BYTES = 2**30  # ≤ 1 GB for 1000 chains × 2000 draws on (a)


@dataclass
class Config(ExperimentConfig):
    """Sampler throughput benchmark (issue 3, item 8)."""

    seed: int = 0
    """seed of the data and of every sampler"""
    num_threads: int = 2
    """torch intra-op threads for every method (the target is stated for 2 cores)"""
    chains: tuple[int, ...] = (1, 16, 256, 1000)
    """numbers of chains in the table"""
    seconds_per_cell: float = 4.0
    """wall-clock budget of each timed run (after a short warm-up)"""
    dtype: str = "float32"
    """float32 or float64, for the network (a)"""
    num_samples: int = 1000
    """n, the dataset size of (a)"""
    noise_std: float = 0.1
    """standard deviation of the Gaussian noise on the targets of (a)"""
    network_step_size: float = 1e-3
    """ε for (a); nβ is the default n / log n"""
    network_localization: float = 1.0
    """γ for (a)"""
    potential_step_size: float = 1e-4
    """ε for (b)"""
    potential_nbeta: float = 1000.0
    """nβ for (b)"""
    potential_localization: float = 1.0
    """γ for (b)"""
    compiled: bool = True
    """also time the compiled network objective (compilation takes seconds; off in quick mode)"""
    devinterp: bool = True
    """time devinterp when it is installed"""
    memory: bool = True
    """measure the peak memory of a long run on (a) (in a subprocess)"""
    memory_chains: int = 1000
    """chains of the peak-memory run on (a)"""
    memory_draws: int = 2000
    """draws of the peak-memory run on (a)"""

    QUICK = dict(chains=(1, 16), seconds_per_cell=0.2, compiled=False, memory_chains=16, memory_draws=20)


# ----------------------------------------------------------------------------- problems


def network_problem(cfg: Config):
    """(a): model at a true factorisation of a rank-1 teacher, inputs, targets."""
    dtype = getattr(torch, cfg.dtype)
    g = torch.Generator().manual_seed(cfg.seed)
    u = torch.randn(4, generator=g, dtype=torch.float64)
    v = torch.randn(4, generator=g, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 4, bias=False))
    with torch.no_grad():  # W₁ = e₁ vᵀ, W₂ = u e₁ᵀ, so W₂W₁ = u vᵀ exactly
        model[0].weight.zero_()
        model[0].weight[0] = v.to(torch.float32)
        model[1].weight.zero_()
        model[1].weight[:, 0] = u.to(torch.float32)
    model = model.to(dtype)
    x = torch.randn(cfg.num_samples, 4, generator=g, dtype=torch.float64)
    y = x @ torch.outer(u, v).T + cfg.noise_std * torch.randn(cfg.num_samples, 4, generator=g,
                                                               dtype=torch.float64)
    return model, x.to(dtype), y.to(dtype)


POTENTIAL_EXPONENTS = [[1, 2, 1]] * 6  # 18 variables, λ = 6 · min(1/2, 1/4, 1/2) = 3/2


class PotentialModule(torch.nn.Module):
    """(b) as an ``nn.Module`` for the baselines: one 18-vector parameter, the input is ignored."""

    def __init__(self, potential, init: torch.Tensor):
        super().__init__()
        self.potential = potential
        self.w = torch.nn.Parameter(init.clone())

    def forward(self, x):  # noqa: ARG002 - a potential has no data
        return self.potential(self.w)


# ----------------------------------------------------------------------------- timing


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def time_toymodels(objective, hyper, num_chains: int, budget: float, seed: int) -> dict:
    """Steady-state rate of ``run_sgld`` on a built objective: a warm-up, then a timed run."""
    kwargs = dict(hyper=hyper, num_chains=num_chains, seed=seed, progress=False,
                  on_divergence="drop")
    start = _clock()
    run_sgld(objective, num_draws=5, **kwargs)  # warm-up (vmap caches, allocator)
    wall, _ = _since(start)
    draws = int(min(20_000, max(5, budget / max(wall / 5, 1e-6))))
    start = _clock()
    trace = run_sgld(objective, num_draws=draws, **kwargs)
    wall, cpu = _since(start)
    return dict(chain_steps=num_chains * draws, wall_seconds=wall, cpu_seconds=cpu,
                measured_chains=num_chains, measured_draws=draws,
                rate=num_chains * draws / wall, dropped_chains=len(trace.dropped_chains))


def time_per_chain_loop(model, loss_of, hyper, num_chains: int, budget: float, seed: int) -> dict:
    """A plain loop: chain after chain, ``backward()`` and an in-place SGLD update per step."""
    g = torch.Generator().manual_seed(seed)
    eps, nbeta, gamma = hyper.step_size, hyper.nbeta, hyper.localization
    noise_scale = math.sqrt(eps)

    def run_chain(steps: int) -> None:
        m = copy.deepcopy(model)
        params = [p for p in m.parameters() if p.requires_grad]
        centers = [p.detach().clone() for p in params]
        losses = torch.empty(steps)
        for step in range(steps):
            for p in params:
                p.grad = None
            loss = loss_of(m)
            loss.backward()
            with torch.no_grad():
                for p, c in zip(params, centers):
                    p.add_(nbeta * p.grad + gamma * (p - c), alpha=-0.5 * eps)
                    p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype), alpha=noise_scale)
                losses[step] = loss.detach()

    start = _clock()
    run_chain(5)  # warm-up, and the cost of one step
    wall, _ = _since(start)
    steps = int(min(2000, max(5, budget / max(wall / 5, 1e-6))))
    chains = 0
    start = _clock()
    while chains < num_chains:
        run_chain(steps)
        chains += 1
        if _since(start)[0] > budget:
            break
    wall, cpu = _since(start)
    return dict(chain_steps=chains * steps, wall_seconds=wall, cpu_seconds=cpu,
                measured_chains=chains, measured_draws=steps, rate=chains * steps / wall)


def devinterp_available() -> str:
    """``""`` when devinterp 1.3.2 can be imported, else why not."""
    try:
        import devinterp  # noqa: F401
        from importlib.metadata import version

        found = version("devinterp")
    except Exception as exc:  # noqa: BLE001
        return f"devinterp not installed ({type(exc).__name__}); install the 'bench' extra"
    if found != "1.3.2":
        return f"devinterp {found} installed, the benchmark compares with 1.3.2"
    return ""


def time_devinterp(model, loader, evaluate, hyper, num_chains: int, budget: float, seed: int) -> dict:
    """devinterp's ``estimate_learning_coeff_with_summary`` as its users call it."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    def sample(chains: int, draws: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # devinterp warns about burn-in, nbeta, deprecations
            return estimate_learning_coeff_with_summary(
                copy.deepcopy(model), loader=loader, evaluate=evaluate, sampling_method=SGLD,
                optimizer_kwargs=dict(lr=hyper.step_size, nbeta=hyper.nbeta,
                                      localization=hyper.localization),
                num_chains=chains, num_draws=draws, num_burnin_steps=0, num_steps_bw_draws=1,
                cores=1, seed=seed, device="cpu", verbose=False, online=False)

    start = _clock()
    sample(1, 5)  # warm-up, and the cost of one step (with the per-call set-up)
    wall, _ = _since(start)
    per_step = wall / 5
    chains = max(1, min(num_chains, int(budget / (per_step * 50))))
    draws = int(min(2000, max(5, budget / (per_step * chains))))
    start = _clock()
    result = sample(chains, draws)
    wall, cpu = _since(start)
    return dict(chain_steps=chains * draws, wall_seconds=wall, cpu_seconds=cpu,
                measured_chains=chains, measured_draws=draws, rate=chains * draws / wall,
                llc_mean=float(result.get("llc/mean", float("nan"))))


# ----------------------------------------------------------------------------- memory


@uses_threads
def memory_probe(cfg: Config) -> dict:
    """Run ``estimate_llc``'s path on (a) and report this process's peak resident set size."""
    model, x, y = network_problem(cfg)
    rss_before = _peak_rss_bytes()
    objective = make_objective(model, data=(x, y), loss_fn=F.mse_loss)
    hyper = SGLDHyperparameters(step_size=cfg.network_step_size, nbeta=default_nbeta(cfg.num_samples),
                                localization=cfg.network_localization)
    start = time.perf_counter()
    trace = run_sgld(objective, hyper=hyper, num_chains=cfg.memory_chains,
                     num_draws=cfg.memory_draws, seed=cfg.seed, progress=False, on_divergence="drop")
    result = llc_from_trace(trace, num_samples=cfg.num_samples)
    seconds = time.perf_counter() - start
    trace_bytes = sum(a.nbytes for a in (trace.loss, trace.grad_norm, trace.distance,
                                         trace.drift_norm, trace.noise_norm))
    return dict(chains=cfg.memory_chains, draws=cfg.memory_draws,
                peak_rss_bytes=_peak_rss_bytes(), rss_before_sampling_bytes=rss_before,
                trace_bytes=int(trace_bytes), seconds=seconds,
                chain_steps_per_second=cfg.memory_chains * cfg.memory_draws / seconds,
                compile_status=objective.compile_status, llc_mean=result.llc_mean,
                llc_mcse=result.mcse, dropped_chains=len(result.dropped_chains))


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_in_subprocess(cfg: Config) -> dict:
    """:func:`memory_probe` in a fresh interpreter, so that nothing else inflates its peak."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "figure")}
    payload = json.dumps(fields)
    code = ("import json, sys; from experiments.bench_llc import Config, memory_probe; "
            "d = json.loads(sys.argv[1]); d['chains'] = tuple(d['chains']); "
            "print('MEMORY' + json.dumps(memory_probe(Config(**d))))")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True,
                          cwd=root, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("MEMORY"):
            return json.loads(line[len("MEMORY"):])
    raise RuntimeError(f"the memory probe failed:\n{done.stderr[-3000:]}")


# ----------------------------------------------------------------------------- main


@uses_threads
def main(cfg: Config) -> dict:
    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    if not cfg.chains or any(c < 1 for c in cfg.chains):
        raise ValueError(f"chains must be positive integers, got {cfg.chains}")
    return _main(cfg)


def _main(cfg: Config) -> dict:
    load_start = os.getloadavg()
    devinterp_note = devinterp_available() if cfg.devinterp else "devinterp column off (--no-devinterp)"

    # (a) the network
    model, x, y = network_problem(cfg)
    nbeta_a = default_nbeta(cfg.num_samples)
    hyper_a = SGLDHyperparameters(cfg.network_step_size, nbeta_a, cfg.network_localization)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=cfg.num_samples, shuffle=True)

    def evaluate_a(m, data):
        return F.mse_loss(m(data[0]), data[1])

    # (b) the potential
    potential = normal_crossing_potential(POTENTIAL_EXPONENTS)
    init_b = torch.zeros(potential.dim, dtype=torch.float64)
    hyper_b = SGLDHyperparameters(cfg.potential_step_size, cfg.potential_nbeta, cfg.potential_localization)
    module_b = PotentialModule(potential, init_b)
    dummy = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1), torch.zeros(1, 1)),
                                        batch_size=1)

    rows = []
    eager_a = ModuleObjective(model, x, y, F.mse_loss, compile=False)
    for chains in cfg.chains:
        row = dict(problem="a", chains=chains)
        if cfg.compiled:
            compiled_a = ModuleObjective(model, x, y, F.mse_loss, compile=True)
            start = time.perf_counter()
            ok = compiled_a.compile(chains)
            row["compile_seconds"] = time.perf_counter() - start
            row["compile_status"] = compiled_a.compile_status
            if ok:
                row["toymodels_compiled"] = time_toymodels(compiled_a, hyper_a, chains, cfg.seconds_per_cell, cfg.seed)
        row["toymodels_eager"] = time_toymodels(eager_a, hyper_a, chains, cfg.seconds_per_cell, cfg.seed)
        row["loop"] = time_per_chain_loop(model, lambda m: F.mse_loss(m(x), y), hyper_a, chains,
                                          cfg.seconds_per_cell, cfg.seed)
        if cfg.devinterp and not devinterp_note:
            row["devinterp"] = time_devinterp(model, loader, evaluate_a, hyper_a, chains,
                                              cfg.seconds_per_cell, cfg.seed)
        rows.append(row)
        _print_row(row)

    objective_b = PotentialObjective(potential, init_b)
    for chains in cfg.chains:
        row = dict(problem="b", chains=chains)
        row["toymodels_eager"] = time_toymodels(objective_b, hyper_b, chains, cfg.seconds_per_cell, cfg.seed)
        row["loop"] = time_per_chain_loop(module_b, lambda m: m(None), hyper_b, chains,
                                          cfg.seconds_per_cell, cfg.seed)
        if cfg.devinterp and not devinterp_note:
            row["devinterp"] = time_devinterp(module_b, dummy, lambda m, data: m(data[0]), hyper_b,
                                              chains, cfg.seconds_per_cell, cfg.seed)
        rows.append(row)
        _print_row(row)

    memory = memory_in_subprocess(cfg) if cfg.memory else None
    load_end = os.getloadavg()

    headline = _headline(rows, memory, cfg)
    table = format_table(rows, devinterp_note)
    print(table)
    print(headline["text"])
    out = dict(config=asdict(cfg),
               machine=dict(cpu_count=os.cpu_count(), torch_threads=cfg.num_threads,
                            torch_version=torch.__version__, load_average_start=load_start,
                            load_average_end=load_end),
               derived=dict(network_nbeta=nbeta_a), devinterp_note=devinterp_note, rows=rows, memory=memory, headline=headline)
    paths = output_paths(cfg, "bench_llc")
    write_json(paths.json, out)
    _figure(rows, paths.figure)
    return out


METHODS = (("toymodels_compiled", "compiled"), ("toymodels_eager", "eager"), ("loop", "loop"),
           ("devinterp", "devinterp"))


def _best_toymodels(row: dict) -> float:
    rates = [row[k]["rate"] for k in ("toymodels_compiled", "toymodels_eager") if k in row]
    return max(rates) if rates else float("nan")


def format_table(rows: list[dict], devinterp_note: str = "") -> str:
    """Chain-steps per second of every method, and toymodels' best over each baseline.

    A second block gives CPU microseconds per chain-step, which a shared machine inflates less
    than wall-clock time.
    """
    head = (f"{'problem':8s} {'chains':>6s} " + " ".join(f"{label:>10s}" for _, label in METHODS)
            + f" {'×loop':>8s} {'×devinterp':>10s}")
    lines = []
    blocks = (("chain-steps per wall-clock second (toymodels = best of compiled and eager)",
               lambda c: c["rate"], "10.0f", max),
              ("CPU µs per chain-step (ratios: baseline over best toymodels)",
               lambda c: 1e6 * c["cpu_seconds"] / c["chain_steps"], "10.1f", min))
    for title, value, fmt, best_of in blocks:
        lines += [title, head]
        for row in rows:
            cells = [format(value(row[key]), fmt) if key in row else f"{'—':>10s}" for key, _ in METHODS]
            ours = [value(row[k]) for k in ("toymodels_compiled", "toymodels_eager") if k in row]
            best = best_of(ours) if ours else float("nan")
            ratios = []
            for key in ("loop", "devinterp"):
                if key not in row:
                    ratios.append(float("nan"))
                elif best_of is max:
                    ratios.append(best / value(row[key]))
                else:
                    ratios.append(value(row[key]) / best)
            lines.append(f"{row['problem']:8s} {row['chains']:6d} " + " ".join(cells)
                         + f" {ratios[0]:8.1f} {ratios[1]:10.1f}")
    if devinterp_note:
        lines.append(f"devinterp: {devinterp_note}")
    return "\n".join(lines)


def _print_row(row: dict) -> None:
    parts = [f"{label} {row[key]['rate']:.0f}/s" for key, label in METHODS if key in row]
    print(f"({row['problem']}) {row['chains']:5d} chains: " + ", ".join(parts), flush=True)


def _headline(rows: list[dict], memory: dict, cfg: Config) -> dict:
    largest = max(cfg.chains)
    row = next(r for r in rows if r["problem"] == "a" and r["chains"] == largest)
    key = "toymodels_compiled" if "toymodels_compiled" in row else "toymodels_eager"
    rate = row[key]["rate"]
    cpu_per_step = row[key]["cpu_seconds"] / row[key]["chain_steps"]
    text = (f"(a) {largest} chains, {cfg.dtype}, {cfg.num_threads} thread(s), {key}: {rate:,.0f} "
            f"chain-steps/s (target {TARGET_CHAIN_STEPS_PER_SECOND:,}); "
            f"{cpu_per_step * 1e6:.1f} CPU µs per chain-step, i.e. {1 / cpu_per_step:,.0f} "
            f"chain-steps per CPU-second; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores")
    out = dict(method=key, chains=largest, chain_steps_per_second=rate,
               cpu_seconds_per_chain_step=cpu_per_step, target=TARGET_CHAIN_STEPS_PER_SECOND,
               meets_target=bool(rate >= TARGET_CHAIN_STEPS_PER_SECOND))
    if memory is not None:
        text += (f"\npeak memory, {memory['chains']} chains × {memory['draws']} draws on (a): "
                 f"{memory['peak_rss_bytes'] / 2**20:,.0f} MiB resident (target ≤ "
                 f"{TARGET_PEAK_BYTES / 2**30:.0f} GiB; {memory['rss_before_sampling_bytes'] / 2**20:,.0f} "
                 f"MiB before sampling; traces {memory['trace_bytes'] / 2**20:.0f} MiB; "
                 f"{memory['compile_status']})")
        out.update(peak_rss_bytes=memory["peak_rss_bytes"],
                   meets_memory_target=bool(memory["peak_rss_bytes"] <= TARGET_PEAK_BYTES))
    out["text"] = text
    return out


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, problem, title in zip(axes, ("a", "b"), ("(a) 4→3→4 linear network, n = 1000",
                                                     "(b) 18-parameter normal crossing")):
        sub = [r for r in rows if r["problem"] == problem]
        for (key, label), color in zip(METHODS, ("C0", "C1", "C2", "C3")):
            points = [(r["chains"], r[key]["rate"]) for r in sub if key in r]
            if points:
                ax.plot(*zip(*points), marker="o", color=color, label=label)
        if problem == "a":
            ax.axhline(TARGET_CHAIN_STEPS_PER_SECOND, color="k", ls="--", lw=1, label="target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chains")
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylabel("chain-steps per second")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
