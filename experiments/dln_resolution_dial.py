"""The resolution dial (Chen & Murfet, arXiv 2504.18048): λ̂ of a deep linear network against nβ steps through Aoyagi's λ at the effective rank.

The teacher's product ``P*`` has singular values spanning decades. The sampled loss is the
population Gaussian NLL, ``K(w) = tr(D Σ_xx Dᵀ)/(2σ²)``, ``D = P(w) − P*``
(:func:`toymodels.models.dln.dln_potential`). Dropping mode ``k`` of ``P*`` costs
``s_k² v/(2σ²)`` in ``K`` (``v`` the input variance), so the tempered posterior at ``nβ`` cannot
tell ``P*`` from its truncation to the modes with ``nβ s_k² v/(2σ²) ≫ 1``: the level set
``{K < 1/nβ}`` around ``P*`` looks like the one around a rank-``r(nβ)`` truth (for a scalar
``w₁w₂ = s`` the hyperbola is resolved from the cross ``w₁w₂ = 0`` once ``nβ s² ≫ 1``). The
thresholds are therefore ``nβ_k = 2σ²/(v s_k²)`` in the **product's** singular values, whatever
the depth or the factorisation; the issue's ``1/s_k²`` is this with ``2σ²/v = 1``, i.e. up to the
factor 2 that the NLL's ``1/(2σ²)`` puts there (here σ = v = 1, so ``nβ_k = 2/s_k²``). The
plateau values are Aoyagi's ``λ(widths, r)`` (:func:`theory.dln.learning_coefficient`); the
widths are chosen so that every rank has ``m = 1`` (with ``m > 1`` the finite-nβ value sits
~1/log nβ below λ and a plateau would not be flat).

Measurement (what is chosen and why):

* The centre is the teacher's minimal factorisation (every layer of rank ``rank(P*)``), MALA
  with the DLN step rule (:func:`toymodels.models.dln.estimate_dln_llc`).
* Localization scales with nβ. Rescaling all weights by ``a`` maps ``(nβ, γ, s_k)`` to
  ``(nβ a^{2L}, γ a², s_k a^{−L})``, so a fixed ``c = γ nβ^{−1/L}`` keeps the localization's
  pull on the unresolved (singular) part the same at every nβ: ``γ_sing = c nβ^{1/L}``
  (``c = 0.01`` matches γ = 1 at nβ = 10⁴, where DLN estimates meet Aoyagi's λ in
  ``experiments/dln_llc_vs_aoyagi``). A resolved mode's regular directions have curvature
  ``≈ s_r^{2(L−1)/L} v/σ²`` in the balanced factorisation and lose ``½ γ/(nβ a)`` each to the
  localization, so ``γ ≤ γ_reg = δ nβ s_r^{2(L−1)/L} v/σ²`` (``δ = 0.01``). γ is the smaller of
  the two while dead hidden units remain (``r < min hidden width``), and ``γ_reg`` when every
  hidden unit is live (then the fiber is a gauge orbit and only regular directions are left).
* The run lasts a diffusion time ``τ/γ`` (the localization's relaxation time), and the step
  fraction is scaled by ``min(1, γ^{L−1})`` because chains spread to ``|w| ~ γ^{−1/2}``, where
  the stiffness is ``~ γ^{−(L−1)}``.
* Plateaus: for each rank ``r`` the nβ at least ``plateau_margin``× away from every threshold
  (the geometric middle of the allowed interval, or ``10 × plateau_margin`` beyond the outermost
  threshold); a plateau is counted only where such an nβ exists.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.dln import learning_coefficient
from toymodels.models.dln import SufficientStatistics, estimate_dln_llc, input_covariance, teacher_from_product
from toymodels.threads import torch_threads


@dataclass
class Config(ExperimentConfig):
    """λ̂ of a DLN over nβ against Aoyagi's λ at the effective rank."""

    seed: int = 0
    """seed of the teacher's singular vectors and of the sampler"""
    widths: tuple[int, ...] = (2, 2, 6)
    """widths (input, hidden..., output); (2, 2, 6) has λ = 2, 4, 6 with m = 1 at ranks 0, 1, 2"""
    singular_values: tuple[float, ...] = (1.0, 1e-2)
    """the teacher product's singular values (decades apart)"""
    noise_std: float = 1.0
    """σ of the Gaussian likelihood"""
    sweep_nbetas: tuple[float, ...] = tuple(float(x) for x in np.geomspace(1e-3, 1e7, 21))
    """nβ of the sweep (the plateau points are added)"""
    plateau_margin: float = 100.0
    """a plateau point is at least this factor away from every threshold (the issue's 100×)"""
    singular_localization: float = 0.01
    """c in γ_sing = c nβ^{1/L}"""
    regular_localization: float = 0.01
    """δ in γ_reg = δ nβ s_r^{2(L−1)/L} v/σ²"""
    diffusion: float = 0.3
    """τ: each run lasts a diffusion time τ/γ (half burn-in)"""
    step_fraction: float = 0.3
    """ε nβ h_ref before the γ^{L−1} scaling (MALA corrects the step's bias)"""
    num_chains: int = 16
    """chains of each sweep point"""
    plateau_chains: int = 32
    """chains of each plateau point"""
    workers: int = 2
    """processes over which the nβ points are spread"""

    QUICK = dict(sweep_nbetas=(1e-2, 1e2, 1e5), diffusion=0.02, num_chains=4, plateau_chains=4, workers=1)


def thresholds(cfg: Config) -> list[float]:
    """``nβ_k = 2σ²/(v s_k²)``: where mode k's share of K, ``s_k² v/(2σ²)``, is worth one nat."""
    v = 1.0  # inputs N(0, I)
    return [2 * cfg.noise_std**2 / (v * s * s) for s in cfg.singular_values]


def effective_rank(nbeta: float, cfg: Config) -> int:
    return sum(nbeta >= t for t in thresholds(cfg))


def plateau_points(cfg: Config) -> list[tuple[int, float]]:
    """``(r, nβ)`` for each rank with an nβ ``plateau_margin``× away from every threshold."""
    ts = sorted(thresholds(cfg))
    out = []
    for r in range(len(ts) + 1):
        lo = ts[r - 1] * cfg.plateau_margin if r > 0 else None
        hi = ts[r] / cfg.plateau_margin if r < len(ts) else None
        if lo is None:
            out.append((r, hi / 10))
        elif hi is None:
            out.append((r, lo * 10))
        elif lo <= hi:
            out.append((r, math.sqrt(lo * hi)))
    return out


def localization(nbeta: float, cfg: Config) -> float:
    L = len(cfg.widths) - 1
    r = effective_rank(nbeta, cfg)
    g_sing = cfg.singular_localization * nbeta ** (1 / L)
    if r == 0:
        return g_sing
    s_r = sorted(cfg.singular_values, reverse=True)[r - 1]
    g_reg = cfg.regular_localization * nbeta * s_r ** (2 * (L - 1) / L) / cfg.noise_std**2
    return g_reg if r >= min(cfg.widths[1:-1]) else min(g_sing, g_reg)


def teacher(cfg: Config):
    g = torch.Generator().manual_seed(cfg.seed)
    n_out, n_in = cfg.widths[-1], cfg.widths[0]
    r = len(cfg.singular_values)
    U, _ = torch.linalg.qr(torch.randn(n_out, r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n_in, r, generator=g, dtype=torch.float64))
    P = (U * torch.tensor(cfg.singular_values, dtype=torch.float64)) @ V.T
    return teacher_from_product(P, cfg.widths, seed=cfg.seed, rank=r), P


def measure(job) -> dict:
    cfg, nbeta, chains, kind = job
    with torch_threads(cfg.num_threads):
        t, P = teacher(cfg)
        stats = SufficientStatistics.population(P, input_covariance(cfg.widths[0]), cfg.noise_std)
        L = len(cfg.widths) - 1
        gamma = localization(nbeta, cfg)
        start = time.perf_counter()
        res = estimate_dln_llc(cfg.widths, t.flat, stats, nbeta=nbeta, noise_std=cfg.noise_std,
                               localization=gamma, diffusion_time=cfg.diffusion / gamma,
                               step_fraction=cfg.step_fraction * min(1.0, gamma ** (L - 1)),
                               num_chains=chains, seed=cfg.seed + 1)
    r = effective_rank(nbeta, cfg)
    lam, m = learning_coefficient(cfg.widths, r)
    return dict(kind=kind, nbeta=nbeta, effective_rank=r, localization=gamma, llc=res.llc_mean,
                llc_mcse=res.mcse, llc_std=res.llc_std, rhat=res.rhat, step_size=res.step_size,
                acceptance=float(np.mean(res.trace.records["accepted"])), num_chains=chains,
                num_steps=res.num_burnin_steps + res.num_draws, lambda_=float(lam), multiplicity=m,
                seconds=time.perf_counter() - start)


def _map(fn, jobs, workers):
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (torch and fork do not mix reliably)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def figure(rows, plateaus, cfg: Config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sweep = [r for r in rows if r["kind"] == "sweep"]
    ax.errorbar([r["nbeta"] for r in sweep], [r["llc"] for r in sweep],
                yerr=[2 * r["llc_mcse"] for r in sweep], fmt="o-", ms=4, color="C0",
                label="λ̂(nβ) (±2 MCSE)")
    ax.errorbar([p["nbeta"] for p in plateaus], [p["llc"] for p in plateaus],
                yerr=[2 * p["llc_mcse"] for p in plateaus], fmt="s", ms=8, color="C3",
                label=f"plateau points (≥{cfg.plateau_margin:g}× from thresholds)")
    ts = sorted(thresholds(cfg))
    edges = [min(r["nbeta"] for r in rows) / 2] + ts + [max(r["nbeta"] for r in rows) * 2]
    for r in range(len(ts) + 1):
        lam = float(learning_coefficient(cfg.widths, r)[0])
        ax.hlines(lam, edges[r], edges[r + 1], colors="k", linestyles="-", lw=1.2,
                  label="Aoyagi λ at the effective rank" if r == 0 else None)
    for k, t in enumerate(ts):
        ax.axvline(t, color="gray", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[0] + 0.1, f" nβ = 2/s{k + 1}²", rotation=90, va="bottom",
                color="gray", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("nβ")
    ax.set_ylabel("λ̂")
    ax.set_title(f"DLN {cfg.widths}, teacher singular values {list(cfg.singular_values)}")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@uses_threads
def main(cfg: Config) -> dict:
    paths = output_paths(cfg, "dln_resolution_dial")
    start = time.perf_counter()
    plateau_nb = plateau_points(cfg)
    jobs = [(cfg, float(nb), cfg.num_chains, "sweep") for nb in cfg.sweep_nbetas]
    jobs += [(cfg, float(nb), cfg.plateau_chains, "plateau") for _, nb in plateau_nb]
    jobs.sort(key=lambda j: -j[2])  # the long (many-chain) jobs first
    rows = sorted(_map(measure, jobs, cfg.workers), key=lambda r: (r["kind"], r["nbeta"]))
    plateaus = [dict(nbeta=r["nbeta"], effective_rank=r["effective_rank"], **{"lambda": r["lambda_"]},
                     llc=r["llc"], llc_mcse=r["llc_mcse"],
                     rel_error=r["llc"] / r["lambda_"] - 1, localization=r["localization"])
                for r in rows if r["kind"] == "plateau"]
    within = [abs(p["rel_error"]) <= 0.05 for p in plateaus]
    report = dict(
        plateaus=plateaus,
        sweep=[r for r in rows if r["kind"] == "sweep"],
        thresholds=thresholds(cfg),
        plateaus_within_5_percent=int(sum(within)),
        target_met=bool(sum(within) >= 3),
        seconds=time.perf_counter() - start,
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    )
    print(f"{'nβ':>10} {'r':>2} {'γ':>9} {'λ':>5} {'λ̂':>8} {'MCSE':>7}  kind")
    for r in rows:
        print(f"{r['nbeta']:10.3g} {r['effective_rank']:2d} {r['localization']:9.3g} "
              f"{r['lambda_']:5.2f} {r['llc']:8.3f} {r['llc_mcse']:7.3f}  {r['kind']}")
    print(f"plateaus within 5%: {report['plateaus_within_5_percent']} of {len(plateaus)}; "
          f"{report['seconds']:.0f} s")
    write_json(paths.json, report)
    figure(rows, plateaus, cfg, paths.figure)
    return report


if __name__ == "__main__":
    run(main, Config)
