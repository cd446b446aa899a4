"""Chen et al. 2023 (arXiv:2310.06301), the Bayesian phase transition of the TMS (c = 6): posterior mass of each k-gon class against n, 5-gon → 6-gon crossing.

The posterior p_n(w) ∝ exp(−n L(w)) N(w; 0, I) with the exact population loss L standing in for
L_n (as in the paper), sampled at every n of a geometric ladder from 20 to 2500 at once by
parallel tempering over n with Metropolis-adjusted Langevin moves
(toymodels.models.tms.tempered_posterior_mala). Why not plain SGLD chains: transitions between k-gon
basins are rare at n ≳ 300 (a chain started at a 5-gon stays there for the whole run), so the
fraction of chains in a basin would only echo the initialisation; with tempering, replicas cross
between phases at the low-n rungs (where the posterior is close to the prior) and carry them up
the ladder, and the MH corrections make every rung's law exact (no step-size bias). Mixing is
checked, not assumed: half of the ladders start at random 5-gons, half at random 6-gons, and the
two halves' class fractions are compared. Each draw is classified by toymodels.models.tms.kgon_type
(convex-hull vertices of the columns; positive biases for σ).

Two predictions of the crossing n_c where the 5-gon and 6-gon classes hold equal mass:
* theory.tms.critical_sample_size: F ≈ nL + λ log n + ½||w*||² (≈ 601 at c = 6).
* a Laplace evaluation of each phase's evidence made here, which keeps the O(1) terms that the
  formula drops: the number of copies of the phase ((k−1)! C(c, k) cyclic arrangements of
  labelled columns), the length 2π||W||_F of the rotation orbit, (2π/n)^{r/2} det(H⁺)^{−1/2},
  the Gaussian prior density at w*, and — the large one — the prior mass of the set where a
  dead column leaves the loss exactly unchanged (a small region around W_d = 0, b_d < 0,
  measured by Monte Carlo under the prior). The formula above counts that set as mass 1.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import brentq

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.tms import (
    critical_sample_size,
    flatten_params,
    kgon_critical_point,
    kgon_loss,
    local_free_energy,
    population_loss_hessian,
)
from toymodels.models.tms import (
    kgon_type,
    population_loss,
    tempered_posterior_mala,
    unflatten_params,
)


@dataclass
class Config(ExperimentConfig):
    """The Bayesian 5-gon → 6-gon transition."""

    seed: int = 0
    """seed of the sampler and the Monte Carlo"""

    c: int = 6
    """number of features"""
    n_min: float = 20.0
    """smallest sample size of the ladder (posterior near the prior: phases mix here)"""
    n_max: float = 2500.0
    """largest sample size of the ladder"""
    num_rungs: int = 22
    """rungs of the geometric ladder of n"""
    report_min: float = 100.0
    """fractions are reported for rungs with n ≥ this"""
    num_ladders: int = 48
    """independent tempering ladders (half start at 5-gons, half at 6-gons)"""
    num_steps: int = 8000
    """MALA steps after burn-in (a swap attempt after each)"""
    num_burnin_steps: int = 1500
    """burn-in steps (step sizes adapt here, then stay fixed)"""
    record_every: int = 10
    """steps between recorded draws"""
    dead_mass_samples: int = 400_000
    """prior draws for the Monte-Carlo mass of the dead column's flat set"""
    bootstrap: int = 400
    """bootstrap resamples of the ladders for the crossing's interval"""

    QUICK = dict(num_rungs=8, num_ladders=4, num_steps=100, num_burnin_steps=50,
                 dead_mass_samples=20_000, bootstrap=20)


def random_kgons(k: int, c: int, num: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` copies of the k-gon, each rotated by a random angle and with permuted columns."""
    W, b = kgon_critical_point(k, c, 0)
    w = torch.tensor(flatten_params(W, b)).expand(num, -1).clone()
    W, b = unflatten_params(w)
    theta = torch.rand(num, generator=generator, dtype=torch.float64) * 2 * math.pi
    cos, sin = theta.cos(), theta.sin()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    W = rot @ W
    perm = torch.argsort(torch.rand(num, c, generator=generator), dim=-1)
    W = torch.gather(W, 2, perm.unsqueeze(1).expand(-1, 2, -1))
    b = torch.gather(b, 1, perm)
    return torch.cat([W.flatten(-2), b], -1)


def dead_set_prior_mass(k: int, c: int, num: int, generator: torch.Generator) -> tuple[float, float]:
    """Prior mass of the dead columns' flat set at the k-gon, and its Monte-Carlo standard error.

    The dead columns' parameters are drawn from the prior N(0, I); the draw is in the set iff the
    loss is still exactly L(w*) (to 1e-13): there the dead columns' outputs vanish on every input
    and no other output responds to them.
    """
    W, b = kgon_critical_point(k, c, 0)
    w = torch.tensor(flatten_params(W, b))
    dead = list(range(k, c))
    if not dead:
        return 1.0, 0.0
    base = population_loss(w).item()
    ws = w.expand(num, -1).clone()
    idx = [p * c + q for q in dead for p in range(2)] + [2 * c + q for q in dead]
    ws[:, idx] = torch.randn(num, len(idx), generator=generator, dtype=torch.float64)
    inside = (population_loss(ws) - base).abs() <= 1e-13
    p = inside.double().mean().item()
    return p, math.sqrt(p * (1 - p) / num)


def laplace_log_evidence(k: int, c: int, n: float, dead_mass: float) -> float:
    """``log Z_α(n)`` of the k-gon phase (σ = 0) by Laplace's method on its critical manifold.

    ``log Z = −n L* + log N + log(2π ||W||_F) + (r/2) log(2π/n) − ½ Σ log a_i
    − (d'/2) log 2π − ½ ||w*'||² + log P_dead``, with ``N = C(c, k)(k−1)!`` labelled cyclic
    arrangements (each a separate rotation orbit), ``2π||W||_F`` the orbit's length, ``a_i`` the
    ``r`` nonzero Hessian eigenvalues, ``w*'`` the ``d' = 3k`` live coordinates (the prior is
    N(0, I)) and ``P_dead`` the prior mass of the dead columns' flat set. Valid as ``n → ∞`` up
    to o(1); the terms beyond λ log n are what theory.tms.local_free_energy leaves out.
    """
    W, b = kgon_critical_point(k, c, 0)
    eig = np.linalg.eigvalsh(population_loss_hessian(W, b))
    nonzero = eig[eig > 1e-9 * eig.max()]
    r = nonzero.size
    live_sq = float((W[:, :k] ** 2).sum() + (b[:k] ** 2).sum())
    copies = math.comb(c, k) * math.factorial(k - 1)
    return (-n * float(kgon_loss(k, c, 0)) + math.log(copies)
            + math.log(2 * math.pi * math.sqrt(float((W[:, :k] ** 2).sum())))
            + 0.5 * r * math.log(2 * math.pi / n) - 0.5 * float(np.log(nonzero).sum())
            - 1.5 * k * math.log(2 * math.pi) - 0.5 * live_sq + math.log(dead_mass))


def largest_root(fn, lo: float, hi: float) -> float:
    """The largest zero of ``fn`` on ``[lo, hi]`` (bracketed on a geometric grid, then Brent)."""
    grid = np.geomspace(lo, hi, 400)
    values = np.array([fn(x) for x in grid])
    hits = [i for i in range(len(grid) - 1) if values[i] * values[i + 1] < 0]
    if not hits:
        return float("nan")
    i = hits[-1]
    return float(brentq(fn, grid[i], grid[i + 1]))


def crossing(ns: np.ndarray, f5: np.ndarray, f6: np.ndarray) -> float:
    """The largest ``n`` where ``log(f6/f5)`` changes sign, interpolated linearly in ``log n``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.log(f6) - np.log(f5)
    ok = np.isfinite(odds)
    x, y = np.log(ns[ok]), odds[ok]
    hits = [i for i in range(len(y) - 1) if y[i] < 0 <= y[i + 1]]
    if not hits:
        return float("nan")
    i = hits[-1]
    return float(np.exp(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i])))


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.array(res["sample_sizes"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, color in (("5", "C0"), ("5+", "C2"), ("6", "C3"), ("4-family", "C1"), ("other", "0.5")):
        frac = np.array(res["fractions"][name])
        ax.plot(ns, frac, "o-", ms=3, color=color, label=f"{name}")
    for half, ls in (("from 5-gons", ":"), ("from 6-gons", "--")):
        ax.plot(ns, res["fractions_by_start"][half]["6"], ls, color="C3", lw=0.8,
                label=f"6, ladders {half}")
    ax.axvline(res["crossing_theory"], color="k", ls="--", lw=1,
               label=f"theory.tms crossing {res['crossing_theory']:.0f}")
    ax.axvline(res["crossing_laplace"], color="m", ls="-.", lw=1,
               label=f"Laplace with O(1) terms {res['crossing_laplace']:.0f}")
    ax.axvline(res["crossing_measured"], color="C3", lw=1.5,
               label=f"measured {res['crossing_measured']:.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("n")
    ax.set_ylabel("posterior mass")
    ax.set_title("posterior mass of each k-gon class (c = 6)")
    ax.legend(fontsize=7)
    with np.errstate(divide="ignore"):
        odds = np.log(np.array(res["fractions"]["6"])) - np.log(np.array(res["fractions"]["5"]))
    ax2.plot(ns, odds, "o", color="C3", label="measured log(mass 6 / mass 5)")
    grid = np.geomspace(ns.min(), ns.max(), 200)
    ax2.plot(ns, res["log_odds_thermodynamic_integration"], "x-", color="C0", ms=4, lw=0.8,
             label="∫(<L>_5 − <L>_6) dn from the draws")
    ax2.plot(grid, [res["_theory_odds"](n) for n in grid], "k--", lw=1, label="theory.tms: F5 − F6")
    ax2.plot(grid, [res["_laplace_odds"](n) for n in grid], "m-.", lw=1, label="Laplace with O(1) terms")
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_ylim(-8, 8)
    ax2.set_xlabel("n")
    ax2.set_ylabel("log odds 6-gon : 5-gon")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def class_fractions(k: torch.Tensor, s: torch.Tensor) -> dict[str, np.ndarray]:
    """Fractions over draws and ladders (dims 0, 1) per rung, for the named classes."""
    masks = {
        "5": (k == 5) & (s == 0),
        "5+": (k == 5) & (s > 0),
        "6": (k == 6) & (s == 0),
        "4-family": k == 4,
    }
    out = {name: m.double().mean((0, 1)).numpy() for name, m in masks.items()}
    out["other"] = 1 - sum(out.values())
    return out


@uses_threads
def main(cfg: Config) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    gen = torch.Generator().manual_seed(cfg.seed)
    ns = np.geomspace(cfg.n_min, cfg.n_max, cfg.num_rungs)
    half = cfg.num_ladders // 2
    init = torch.cat([
        random_kgons(5, cfg.c, half * cfg.num_rungs, gen).view(half, cfg.num_rungs, -1),
        random_kgons(6, cfg.c, (cfg.num_ladders - half) * cfg.num_rungs, gen)
        .view(cfg.num_ladders - half, cfg.num_rungs, -1),
    ])
    samples = tempered_posterior_mala(population_loss, ns, init, num_steps=cfg.num_steps,
                                      num_burnin_steps=cfg.num_burnin_steps,
                                      record_every=cfg.record_every, seed=cfg.seed)
    k, s = kgon_type(samples.draws)  # (records, ladders, rungs)
    fractions = class_fractions(k, s)
    by_start = {"from 5-gons": class_fractions(k[:, :half], s[:, :half]),
                "from 6-gons": class_fractions(k[:, half:], s[:, half:])}
    measured = crossing(ns, fractions["5"], fractions["6"])
    # bootstrap over ladders (independent Markov chains) for the crossing's interval
    rng = np.random.default_rng(cfg.seed)
    is5 = ((k == 5) & (s == 0)).double().mean(0).numpy()  # (ladders, rungs)
    is6 = ((k == 6) & (s == 0)).double().mean(0).numpy()
    boot = []
    for _ in range(cfg.bootstrap):
        pick = rng.integers(0, cfg.num_ladders, cfg.num_ladders)
        boot.append(crossing(ns, is5[pick].mean(0), is6[pick].mean(0)))
    boot = np.array(boot)
    boot = boot[np.isfinite(boot)]
    interval = (np.percentile(boot, [2.5, 97.5]).tolist() if boot.size else [math.nan, math.nan])
    half_gap = np.abs(by_start["from 5-gons"]["6"] - by_start["from 6-gons"]["6"])

    theory_nc = critical_sample_size((5, 0), (6, 0), cfg.c)
    dead_mass, dead_mass_se = dead_set_prior_mass(5, cfg.c, cfg.dead_mass_samples, gen)

    def laplace_odds(n):
        return (laplace_log_evidence(6, cfg.c, n, 1.0)
                - laplace_log_evidence(5, cfg.c, n, dead_mass))

    def theory_odds(n):
        return local_free_energy(n, 5, cfg.c, 0) - local_free_energy(n, 6, cfg.c, 0)

    laplace_nc = largest_root(laplace_odds, 50.0, 1e5)
    # thermodynamic integration inside each class: d/dn log(p6/p5) = <L>_5 − <L>_6 exactly (the
    # classes are fixed regions), so the measured log odds must follow the integral of the
    # measured conditional mean losses — an equilibrium check that needs no theory.
    loss = samples.loss.numpy()
    m5 = (((k == 5) & (s == 0)).numpy())
    m6 = (((k == 6) & (s == 0)).numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean5 = (loss * m5).sum((0, 1)) / m5.sum((0, 1))
        mean6 = (loss * m6).sum((0, 1)) / m6.sum((0, 1))
        odds = np.log(fractions["6"]) - np.log(fractions["5"])
    ti = np.full(ns.size, np.nan)
    usable = np.isfinite(mean5) & np.isfinite(mean6) & np.isfinite(odds)
    if usable.sum() >= 2 and math.isfinite(measured):
        idx = np.flatnonzero(usable)
        rate = mean5[idx] - mean6[idx]
        integral = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(ns[idx]))])
        anchor = np.interp(measured, ns[idx], integral)
        ti[idx] = integral - anchor
    ti_gap = np.abs(ti - odds)
    near = usable & (np.abs(odds) < 4)  # where both classes are sampled well
    ti_max_gap = float(np.nanmax(ti_gap[near])) if near.any() else math.nan
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    report_rows = [i for i, n in enumerate(ns) if n >= cfg.report_min]
    bayes_llc5 = ns * (mean5 - float(kgon_loss(5, cfg.c, 0)))  # n(<L>_5 − L*_5), → λ = 7
    bayes_llc6 = ns * (mean6 - float(kgon_loss(6, cfg.c, 0)))  # → λ = 17/2
    print(f"{'n':>7s} {'5':>6s} {'5+':>6s} {'6':>6s} {'4-fam':>6s} {'other':>6s} "
          f"{'6 | 5-start':>11s} {'6 | 6-start':>11s} {'n(<L>5−L5*)':>12s} {'n(<L>6−L6*)':>12s}")
    for i in report_rows:
        print(f"{ns[i]:7.0f} {fractions['5'][i]:6.3f} {fractions['5+'][i]:6.3f} "
              f"{fractions['6'][i]:6.3f} {fractions['4-family'][i]:6.3f} {fractions['other'][i]:6.3f} "
              f"{by_start['from 5-gons']['6'][i]:11.3f} {by_start['from 6-gons']['6'][i]:11.3f} "
              f"{bayes_llc5[i]:12.2f} {bayes_llc6[i]:12.2f}")
    print(f"crossing 5 → 6: measured {measured:.0f} (95% bootstrap interval "
          f"{interval[0]:.0f}–{interval[1]:.0f}); theory.tms.critical_sample_size {theory_nc:.0f} "
          f"({100 * (measured / theory_nc - 1):+.0f}%); Laplace with O(1) terms {laplace_nc:.0f} "
          f"({100 * (measured / laplace_nc - 1):+.0f}%)")
    print(f"prior mass of the 5-gon's dead-column flat set {dead_mass:.4f} ± {dead_mass_se:.4f} "
          f"(log {math.log(dead_mass):.2f}); MALA acceptance {samples.acceptance.min():.2f}–"
          f"{samples.acceptance.max():.2f}, swap rate {samples.swap_rate.min():.2f}–"
          f"{samples.swap_rate.max():.2f}; largest gap between the two starts' 6-gon mass "
          f"{half_gap.max():.3f}; {seconds:.0f} s wall (sampler {samples.seconds:.0f} s), "
          f"{cpu_seconds:.0f} s CPU")
    print(f"thermodynamic-integration check: |measured log odds − ∫(<L>_5 − <L>_6) dn| ≤ "
          f"{ti_max_gap:.2f} where |log odds| < 4")

    res = dict(
        config=asdict(cfg), sample_sizes=ns.tolist(),
        fractions={key: v.tolist() for key, v in fractions.items()},
        fractions_by_start={h: {key: v.tolist() for key, v in f.items()} for h, f in by_start.items()},
        crossing_measured=measured, crossing_interval=interval, crossing_theory=theory_nc,
        crossing_laplace=laplace_nc, rel_error_vs_theory=measured / theory_nc - 1,
        rel_error_vs_laplace=measured / laplace_nc - 1,
        dead_set_prior_mass=dead_mass, dead_set_prior_mass_se=dead_mass_se,
        acceptance=samples.acceptance.tolist(), swap_rate=samples.swap_rate.tolist(),
        step_size=samples.step_size.tolist(), max_gap_between_starts=float(half_gap.max()),
        mean_loss=samples.loss.mean((0, 1)).tolist(), seconds=seconds, cpu_seconds=cpu_seconds,
        mean_loss_5=mean5.tolist(), mean_loss_6=mean6.tolist(),
        bayes_llc_5=bayes_llc5.tolist(), bayes_llc_6=bayes_llc6.tolist(), log_odds=odds.tolist(),
        log_odds_thermodynamic_integration=ti.tolist(), ti_max_gap=ti_max_gap,
        sampler_seconds=samples.seconds,
    )
    paths = output_paths(cfg, "tms_bayesian_transition")
    write_json(paths.json, res)
    plot(dict(res, _theory_odds=theory_odds, _laplace_odds=laplace_odds), paths.figure)
    return res


if __name__ == "__main__":
    run(main, Config)
