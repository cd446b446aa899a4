"""Programs as singularities (Murfet & Troiani, arXiv 2504.08075): same function, different lambda.

The paper's claim (abstract and its detectA analysis) that two Turing machines computing the
same function can sit at singularities of different geometry, so that the Bayesian posterior
distinguishes them, measured here with SGLD against the exact expansion of theory.turing.

Two parts (Murfet & Troiani arXiv 2504.08075; toymodels.models.turing for the sampler's coordinates):

(a) The one-step detectA task (inputs ``A`` and ``B``, ``T = 1``, uniform Dirichlet(1) prior):
    the SGLD estimate ``lambda-hat = nbeta E[K]`` against the exact finite-temperature value
    ``theory.turing.single_step_llc(2, 2, nbeta) = 2 nbeta / (nbeta + 2)`` over a range of
    ``nbeta``; it tends to ``lambda = 2``.
(b) Each pair of ``theory.turing.machine_pairs()``: two machines with the same outputs on a task
    but different relevant error coordinates. The exact ``lambda`` of each vertex
    (``learning_coefficient_at_vertex``; barycentric convention, or the squared one with
    ``--error-concentration 0.5``, where every lambda is halved) beside ``lambda-hat`` at a few
    ``nbeta``, and the posterior preference between them: ``F_n = n L_n + lambda log n + O(1)``
    (Watanabe), both machines have ``L = 0``, so ``F_1 - F_2 = (lambda_1 - lambda_2) log n`` and
    the posterior odds of the first machine's neighbourhood against the second's are
    ``n^(lambda_2 - lambda_1)``, given from the exact and from the estimated ``lambda``.

How the potential is sampled (details in ``toymodels.models.turing``): the exact output polynomials of
``theory.turing.output_probability_polynomial`` become index arrays (``machine_potential``
below); each barycentric entry gets a log coordinate (a softmax per simplex) and the prior is
written so that its pushforward is exactly ``Dirichlet(alpha)`` on every simplex. In (a)
``alpha = 1`` everywhere and there is no localisation, which is the setting of the exact oracle.
In (b) the two machines of a pair may share one parameter space and one ``K``; the estimate at
a vertex needs a neighbourhood, and it is made by the prior: ``alpha_c =
classical_concentration`` on the machine's own (classical) entries and ``alpha_e =
error_concentration`` (1 by default) on every error entry. The local exponents are unchanged (``p_c^{alpha_c - 1}`` is smooth and positive at
the vertex), so ``lambda-hat -> lambda`` as ``nbeta`` grows, from below at a rate
``O(alpha_c / (nbeta q))`` (``q`` the smallest input probability), which is why (b) runs at
large ``nbeta``; log coordinates make large ``nbeta`` cost nothing extra. Chains reach each
``nbeta`` of a grid through an annealing ladder (``toymodels.models.turing.annealed_chain_init``), and
each later ``nbeta`` starts where the previous run ended, with its own burn-in.

Run: ``python -m experiments.turing_programs_as_singularities [--quick]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.turing import (
    detect_a,
    detect_a_task,
    learning_coefficient_at_vertex,
    machine_pairs,
    single_step_llc,
)
from toymodels import LLCResult, estimate_llc
from toymodels.models.turing import NoisyCodePotential, annealed_chain_init
from toymodels.validation.turing import machine_potential

__all__ = ["Config", "estimate_ladder", "main"]


#: Dirichlet parameter on the error entries -> coordinate convention of theory.turing
_CONVENTIONS = {1.0: "barycentric", 0.5: "squared"}


@dataclass
class Config(ExperimentConfig):
    """Hyperparameters of both parts; ``QUICK`` shrinks chains, draws and the nbeta grids."""

    seed: int = 0
    """seed of prior draws and SGLD noise (each run offsets it by its index)"""

    # (a) one-step detectA against the exact oracle
    single_step_nbetas: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
    """nbeta grid for part (a), increasing (chains anneal along it)"""
    single_step_chains: int = 500
    """SGLD chains in part (a)"""
    single_step_draws: int = 2000
    """draws per chain at each nbeta of part (a)"""
    single_step_burnin: int = 800
    """burn-in steps at each nbeta of part (a) (40 units of SGLD time: the transient of a jump
    by about 3 in nbeta relaxes in about 4)"""
    single_step_step_size: float = 0.05
    """SGLD step size in part (a) (log coordinates: one value serves every nbeta; measured bias
    at nbeta = 10 and 30: +1.8% and +1.3% at 0.2, +0.6% and +0.4% at 0.1, none visible at 0.05)"""

    # (b) pairs of machines with the same function
    pair_nbetas: tuple[float, ...] = (1e3, 1e4, 1e5)
    """nbeta values at which lambda-hat is measured for every machine of every pair"""
    pair_indices: tuple[int, ...] = (0, 1, 2, 3)
    """which entries of theory.turing.machine_pairs() to run"""
    classical_concentration: float = 10.0
    """Dirichlet alpha_c on each machine's classical entries: the localisation of part (b)"""
    error_concentration: float = 1.0
    """Dirichlet alpha_e on the error entries in part (b): 1 is the barycentric convention
    (each relevant coordinate gives 1 to lambda), 0.5 the squared one (each gives 1/2)"""
    pair_chains: int = 100
    """SGLD chains per machine in part (b)"""
    pair_draws: int = 600
    """draws per chain at each nbeta of part (b)"""
    pair_burnin: int = 300
    """burn-in steps at each nbeta of part (b) (30 units of SGLD time after a jump by 10 in
    nbeta; with alpha = 1 on the errors the transient relaxes in a few times 4 units)"""
    pair_step_size: float = 0.1
    """SGLD step size in part (b) (the prior's curvature grows with alpha_c)"""
    ladder_start: float = 1.0
    """first rung of the annealing ladders (by factors of 10 up to the first nbeta of a grid)"""
    ladder_step_size: float = 0.2
    """SGLD step size on the ladder (a starting point needs stability, not exactness)"""
    ladder_steps_per_rung: int = 200
    """SGLD steps at each rung of the ladder"""
    free_energy_ns: tuple[int, ...] = (100, 1000, 10000)
    """sample sizes n at which the free-energy difference and posterior odds are reported"""

    QUICK = dict(single_step_nbetas=(10.0, 100.0), single_step_chains=100, single_step_draws=150,
                 single_step_burnin=100, pair_nbetas=(1e3,), pair_indices=(0,), pair_chains=20,
                 pair_draws=100, pair_burnin=100, ladder_steps_per_rung=50)

    def __post_init__(self):
        for name in ("single_step_nbetas", "pair_nbetas"):
            grid = getattr(self, name)
            if not grid or any(b <= a for a, b in zip(grid, grid[1:])) or grid[0] <= 0:
                raise ValueError(f"{name} must be a non-empty increasing tuple of positive numbers")
        known = len(machine_pairs())
        if any(not 0 <= i < known for i in self.pair_indices):
            raise ValueError(f"pair_indices must be in 0..{known - 1}")
        if self.classical_concentration <= 0:
            raise ValueError("classical_concentration must be > 0 (1 means no localisation)")
        if self.error_concentration not in _CONVENTIONS:
            raise ValueError(
                f"error_concentration must be one of {sorted(_CONVENTIONS)} (the conventions "
                "theory.turing.learning_coefficient_at_vertex certifies)"
            )


# ---------------------------------------------------------------------------------------------
# theory -> arrays -> torch potential


def estimate_ladder(
    potential: NoisyCodePotential,
    vertex: torch.Tensor,
    nbetas,
    *,
    num_chains: int,
    num_draws: int,
    num_burnin_steps: int,
    step_size: float,
    seed: int,
    ladder_start: float = 1.0,
    ladder_step_size: float = 0.2,
    ladder_steps_per_rung: int = 300,
) -> list[LLCResult]:
    """``estimate_llc`` at each ``nbeta`` of an increasing grid, with ``localization = 0`` (the
    prior localises). Chains reach the first ``nbeta`` by an annealing ladder from prior draws
    (``annealed_chain_init`` from ``ladder_start``, step ``ladder_step_size``); each later run
    starts where the previous one ended, and every run has its own burn-in."""
    params = annealed_chain_init(potential, vertex, nbeta=nbetas[0], num_chains=num_chains,
                                 step_size=ladder_step_size, seed=seed, start_nbeta=ladder_start,
                                 steps_per_rung=ladder_steps_per_rung)
    results = []
    for k, nbeta in enumerate(nbetas):
        result = estimate_llc(
            potential, init=vertex, nbeta=float(nbeta), step_size=step_size, localization=0.0,
            num_chains=num_chains, num_draws=num_draws, num_burnin_steps=num_burnin_steps,
            seed=seed + 1000 + k, log_prior=potential.log_prior, chain_init=params,
            progress=False,
        )
        params = result.trace.final_params
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# the two parts


def run_single_step(cfg: Config) -> list[dict]:
    potential, vertex = machine_potential(detect_a(), detect_a_task((1,)), 1)
    results = estimate_ladder(
        potential, vertex, cfg.single_step_nbetas, num_chains=cfg.single_step_chains,
        num_draws=cfg.single_step_draws, num_burnin_steps=cfg.single_step_burnin,
        step_size=cfg.single_step_step_size, seed=cfg.seed, ladder_start=cfg.ladder_start,
        ladder_step_size=cfg.ladder_step_size, ladder_steps_per_rung=cfg.ladder_steps_per_rung,
    )
    rows = []
    for nbeta, r in zip(cfg.single_step_nbetas, results):
        exact = float(single_step_llc(2, 2, Fraction(nbeta).limit_denominator(10**6)))
        rows.append(dict(nbeta=nbeta, exact=exact, estimate=r.llc_mean, mcse=r.mcse,
                         rel_error=r.llc_mean / exact - 1, z=(r.llc_mean - exact) / r.mcse,
                         ess=r.ess, rhat=r.rhat, seconds=r.seconds))
    return rows


def run_pairs(cfg: Config) -> list[dict]:
    pairs = machine_pairs()
    cache: dict = {}  # parity(extra_state=True) appears in two pairs with the same task
    rows = []
    for index in cfg.pair_indices:
        pair = pairs[index]
        entry = dict(pair=pair.name, description=pair.description, T=pair.T,
                     convention=_CONVENTIONS[cfg.error_concentration],
                     same_parameter_space=pair.same_parameter_space, machines=[])
        prefix, _, versus = pair.name.partition(": ")
        labels = [f"{prefix}: {part}" for part in versus.split(" vs ")]
        for which, machine in enumerate((pair.first, pair.second)):
            exact = learning_coefficient_at_vertex(machine, pair.task, pair.T,
                                                   _CONVENTIONS[cfg.error_concentration])
            key = (tuple(machine.transitions.items()), pair.task.examples, pair.T)
            if key not in cache:
                potential, vertex = machine_potential(
                    machine, pair.task, pair.T, classical_concentration=cfg.classical_concentration,
                    error_concentration=cfg.error_concentration)
                results = estimate_ladder(
                    potential, vertex, cfg.pair_nbetas, num_chains=cfg.pair_chains,
                    num_draws=cfg.pair_draws, num_burnin_steps=cfg.pair_burnin,
                    step_size=cfg.pair_step_size, seed=cfg.seed + 10 * len(cache),
                    ladder_start=cfg.ladder_start, ladder_step_size=cfg.ladder_step_size,
                    ladder_steps_per_rung=cfg.ladder_steps_per_rung,
                )
                cache[key] = dict(
                    dimension=machine.shape.dimension, sampled_coordinates=potential.dim,
                    estimates=[dict(nbeta=b, estimate=r.llc_mean, mcse=r.mcse, ess=r.ess,
                                    rhat=r.rhat, seconds=r.seconds)
                               for b, r in zip(cfg.pair_nbetas, results)],
                )
            entry["machines"].append(dict(
                machine=labels[which], states=list(machine.states),
                learning_coefficient=str(exact.learning_coefficient),
                lambda_exact=float(exact.learning_coefficient),
                relevant=[c.name for c in exact.relevant_coordinates], **cache[key],
            ))
        first, second = entry["machines"]
        lam1, lam2 = first["lambda_exact"], second["lambda_exact"]
        est1, est2 = first["estimates"][-1], second["estimates"][-1]
        diff_hat = est1["estimate"] - est2["estimate"]
        diff_mcse = math.hypot(est1["mcse"], est2["mcse"])
        entry.update(
            lambda_difference_exact=lam1 - lam2, lambda_difference_estimate=diff_hat,
            lambda_difference_mcse=diff_mcse, difference_z=abs(diff_hat) / diff_mcse,
            free_energy=[
                dict(n=n, delta_F_exact=(lam1 - lam2) * math.log(n),
                     delta_F_estimate=diff_hat * math.log(n),
                     delta_F_mcse=diff_mcse * math.log(n),
                     log10_odds_first_vs_second_exact=(lam2 - lam1) * math.log10(n),
                     log10_odds_first_vs_second_estimate=-diff_hat * math.log10(n))
                for n in cfg.free_energy_ns
            ],
        )
        rows.append(entry)
    return rows


# ---------------------------------------------------------------------------------------------
# report


def print_tables(single: list[dict], pairs: list[dict]) -> None:
    print("(a) one-step detectA, Dirichlet(1) prior: lambda-hat against 2 t / (t + 2)")
    print(f"{'nbeta':>8s} {'exact':>8s} {'estimate ± MCSE':>18s} {'rel.err':>8s} {'z':>6s}")
    for r in single:
        print(f"{r['nbeta']:8.0f} {r['exact']:8.4f} {r['estimate']:9.4f} ± {r['mcse']:.4f} "
              f"{100 * r['rel_error']:7.2f}% {r['z']:6.2f}")
    print()
    print("(b) same-function machines: exact lambda and lambda-hat")
    for p in pairs:
        print(f"  {p['pair']} (T = {p['T']}, {p['convention']} coordinates)")
        for m in p["machines"]:
            ests = "  ".join(f"t={e['nbeta']:.0e}: {e['estimate']:.3f}±{e['mcse']:.3f}"
                             for e in m["estimates"])
            print(f"    {m['machine']:42s} d = {m['dimension']:2d}: lambda = "
                  f"{m['learning_coefficient']:>3s} | {ests}")
        print(f"    lambda_1 - lambda_2: exact {p['lambda_difference_exact']:+g}, estimated "
              f"{p['lambda_difference_estimate']:+.3f} ± {p['lambda_difference_mcse']:.3f} "
              f"(|z| = {p['difference_z']:.1f})")
        for f in p["free_energy"]:
            print(f"    n = {f['n']:>6d}: F_1 - F_2 = {f['delta_F_exact']:+.2f} exact, "
                  f"{f['delta_F_estimate']:+.2f} ± {f['delta_F_mcse']:.2f} estimated; odds "
                  f"first:second = 10^{f['log10_odds_first_vs_second_exact']:+.1f}")


def plot(single: list[dict], pairs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    t = np.geomspace(min(r["nbeta"] for r in single) / 2, max(r["nbeta"] for r in single) * 2)
    ax.plot(t, 2 * t / (t + 2), "k-", lw=1, label="exact 2t/(t+2)")
    ax.axhline(2, color="k", ls=":", lw=1, label="λ = 2")
    ax.errorbar([r["nbeta"] for r in single], [r["estimate"] for r in single],
                yerr=[3 * r["mcse"] for r in single], fmt="o", ms=4, capsize=3,
                label="SGLD λ̂ (3 MCSE)")
    ax.set_xscale("log")
    ax.set_xlabel("nβ")
    ax.set_ylabel("nβ E[K]")
    ax.set_title("(a) one-step detectA, uniform prior")
    ax.legend(fontsize=8)

    ax = axes[1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(pairs):
        for which, m in enumerate(p["machines"]):
            x = [e["nbeta"] * (1.08 if which else 1 / 1.08) for e in m["estimates"]]
            ax.errorbar(x, [e["estimate"] for e in m["estimates"]],
                        yerr=[3 * e["mcse"] for e in m["estimates"]], fmt="os"[which] + "-",
                        color=colors[i % len(colors)], ms=4, capsize=2, lw=0.8,
                        label=f"pair {i + 1}: λ {p['machines'][0]['learning_coefficient']} vs "
                              f"{p['machines'][1]['learning_coefficient']}" if which == 0 else None)
            ax.axhline(m["lambda_exact"], color=colors[i % len(colors)], ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("nβ")
    ax.set_ylabel("λ̂ (dotted: exact λ)")
    ax.set_title("(b) same function, different λ (o first, s second)")
    ax.legend(fontsize=7)

    ax = axes[2]
    for i, p in enumerate(pairs):
        ns = [f["n"] * 1.06 ** (i - 1.5) for f in p["free_energy"]]  # offset to separate pairs
        ax.plot(ns, [f["delta_F_exact"] for f in p["free_energy"]], ":",
                color=colors[i % len(colors)])
        ax.errorbar(ns, [f["delta_F_estimate"] for f in p["free_energy"]],
                    yerr=[3 * f["delta_F_mcse"] for f in p["free_energy"]], fmt="o",
                    color=colors[i % len(colors)], ms=4, capsize=2, label=p["pair"])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("n")
    ax.set_ylabel("F₁ − F₂ ≈ (λ₁ − λ₂) log n")
    ax.set_title("posterior prefers the smaller λ (dotted: exact)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@uses_threads
def main(cfg: Config) -> dict:
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)  # nothing below reads global RNG; set for any stray use
    single = run_single_step(cfg)
    pairs = run_pairs(cfg)
    seconds = time.perf_counter() - start
    print_tables(single, pairs)
    print(f"\n{seconds:.0f} s")
    report = dict(config=asdict(cfg),
                  single_step=single, pairs=pairs, seconds=seconds,
                  single_step_worst_rel_error=max(abs(r["rel_error"]) for r in single),
                  single_step_worst_z=max(abs(r["z"]) for r in single))
    paths = output_paths(cfg, "turing_programs_as_singularities")
    write_json(paths.json, report)
    plot(single, pairs, paths.figure)
    return report


if __name__ == "__main__":
    run(main, Config)
