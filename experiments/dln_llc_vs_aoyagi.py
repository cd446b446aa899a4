"""Reproduces Lau, Furman, Wang, Murfet, Wei (arXiv 2308.12108), the deep-linear-network figure: λ̂ at random teachers against Aoyagi's λ.

What it does, and where it departs from the paper (each departure is a choice of the point or
scale at which λ̂ is measured, never of λ):

* Teachers are drawn as in the paper (:func:`toymodels.models.dln.random_teacher`: depth 2–5, widths
  within 2–20, each layer reduced to a random rank with probability 1/2; the width range is
  cycled through sub-ranges so that d spans about 20 to 2,000); ``r`` is the rank of the product
  and ``λ, m = theory.dln.learning_coefficient(widths, r)`` (Aoyagi 2024).
* λ̂ is measured at the *minimal factorisation* of the teacher's function (every layer of rank
  ``r``, :func:`toymodels.models.dln.teacher_from_product`), not at the drawn layers. Aoyagi's λ is the
  learning coefficient at the true distribution, attained on the most singular stratum of the
  fiber ``{P(w) = P*}``; a drawn layer with rank above ``r`` puts the teacher elsewhere on the
  fiber, where the strictly local value is larger. With γ = 1 the chains do not stay there: the
  controls at the end (widths (5, 5, 5, 5), outer layers orthogonal, middle layer rank 2, strictly
  local value 25/2, Aoyagi 11) show chains from the drawn layers at ≈ 12.5 for a short run and
  drifting down to the value of chains started on the minimal stratum for long runs. Starting on
  the minimal stratum saves that drift.
* The product's nonzero singular values are normalised to ``s_1 = 1`` and floored at
  ``1/max_condition`` (singular vectors kept). λ depends only on the widths and ``r``; the
  singular values only set how well each regular direction is identified at this nβ (a direction
  of curvature ``a`` contributes ``t a/(t a + γ)/2`` instead of 1/2) and how long it takes to mix.
* Inputs are ``N(0, I)`` (the paper: ``U[-10, 10]``, i.e. variance 33; only the curvature scale
  changes, which the step-size rule absorbs) and σ = 1.
* The sampled loss is the *population* Gaussian NLL from sufficient statistics
  (:func:`toymodels.models.dln.dln_potential` with ``R = 0``), i.e. ``K(w)`` itself, at
  ``nβ = n/log n``. With the empirical NLL of one dataset the estimate at the teacher carries an
  additional ``O(β)`` bias, ``−β ν`` (ν the singular fluctuation; ``d/2`` for a regular model): at
  ``n = 10^4`` about −10%. The ``empirical`` rows of the JSON show it on a few teachers.
* Sampler: the full-batch SGLD proposal with a Metropolis test (MALA, :class:`toymodels.sampling.kernels.MALA`),
  ``ε = step_fraction/(nβ h_ref)`` with ``h_ref`` the stiffest Gauss–Newton eigenvalue at the
  teacher (floored, :func:`toymodels.models.dln.dln_step_size`), run for a fixed diffusion time
  ``ε k = diffusion_time``, first half burn-in; γ = 1 as in the paper; many chains as one tensor;
  closed-form gradient (:class:`toymodels.models.dln.DLNObjective`). Why not plain SGLD: the chains
  spread along the flat directions of the fiber into regions tens of times stiffer than the
  teacher (Gauss–Newton's largest eigenvalue at the chains' end points: 100–200 against 4–5 at
  the teacher), where SGLD with a step size set at the teacher over-estimates (+16% at a
  Morse–Bott teacher whose λ is 15, where MALA with the same ε gives 15.0). The first
  ``sgld_comparison_teachers`` rows also carry plain SGLD's value with the same ε and schedule.
* A few teachers are also run through the generic path, ``estimate_llc(model, data=...,
  loss_fn=gaussian_nll_loss(σ))`` with an ``nn.Module`` and the dataset, against the
  sufficient-statistics potential on the same data, seed and schedule: the λ̂ agree to rounding.
* Reduced-rank regression cases of devinterp's accuracy test (widths (M, H, N), truth 0, where
  devinterp accepts ±40%) are measured at ``w* = 0``, also at ``nβ = n/log n``.

Outputs: a scatter (λ̂ against λ, y = x, m > 1 with their own marker), a printed table, a JSON.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.dln import learning_coefficient
from toymodels import estimate_llc
from toymodels.threads import torch_threads
from toymodels.models.dln import (
    DLNTeacher,
    SufficientStatistics,
    dln_potential,
    estimate_dln_llc,
    gaussian_nll_loss,
    input_covariance,
    make_data,
    random_teacher,
    teacher_from_product,
)


@dataclass
class Config(ExperimentConfig):
    """λ̂ at random DLN teachers against Aoyagi's λ."""

    seed: int = 0
    """seed of the SGLD noise and of the datasets (the teachers' seeds start at first_seed)"""

    num_teachers: int = 36
    """number of random teachers (seeds first_seed, first_seed + 1, ... that pass the size filter)"""
    first_seed: int = 0
    """seed of the first teacher"""
    min_parameters: int = 20
    """skip teachers with fewer parameters than this (the paper's range starts near 20)"""
    depth: tuple[int, int] = (2, 5)
    """range of the number of layers (inclusive)"""
    width_ranges: tuple[tuple[int, int], ...] = ((2, 6), (2, 12), (2, 20), (15, 20))
    """width range (inclusive) of teacher i is width_ranges[i % len]: all within the paper's 2–20,
    cycled so that d spans about 20 to 2,000 (one range alone concentrates d in the hundreds)"""
    reduce_probability: float = 0.5
    """probability that a layer is reduced to a random rank (Lau et al.)"""
    max_condition: float = 4.0
    """floor of the product's nonzero singular values, as a fraction 1/max_condition of the largest"""
    num_samples: int = 10_000
    """n; nβ = n / log n"""
    noise_std: float = 1.0
    """σ of the Gaussian output noise (the NLL is ||y − f||²/(2σ²))"""
    localization: float = 1.0
    """γ, as in the paper"""
    sampler: str = "mala"
    """mala (the SGLD proposal with a Metropolis test: no step-size bias) or sgld"""
    sgld_comparison_teachers: int = 6
    """also run plain SGLD (same ε, schedule, seed) on this many teachers, to show its bias"""
    step_fraction: float = 0.1
    """ε nβ h_ref: the Langevin step relative to the stiffest direction at w*"""
    diffusion_time: float = 0.4
    """ε × number of steps; the first half is burn-in"""
    num_chains: int = 16
    """chains per teacher (run as one tensor)"""
    rrr_widths: tuple[tuple[int, int, int], ...] = ((5, 3, 5), (5, 4, 5), (4, 3, 8), (8, 3, 4), (3, 8, 4))
    """devinterp's reduced-rank-regression cases (M, H, N), truth of rank 0"""
    rrr_num_samples: int = 100_000
    """n for the reduced-rank cases (cheap at depth 2, so closer to the asymptotic λ)"""
    rrr_diffusion_time: float = 0.3
    """diffusion time of the reduced-rank runs"""
    rrr_num_chains: int = 16
    """chains per reduced-rank case"""
    module_check_teachers: int = 2
    """teachers also run through estimate_llc(nn.Module, data) on a dataset (same seed and schedule)"""
    module_check_samples: int = 2_000
    """dataset size of the module check"""
    module_check_steps: int = 300
    """SGLD steps of the module check (agreement is to rounding, so a short run suffices)"""
    empirical_teachers: int = 3
    """teachers also sampled on the empirical NLL of one dataset of num_samples (shows the O(β) bias)"""
    controls: bool = True
    """also measure at drawn (non-minimal) layers, short and long runs, against the minimal start"""
    control_short_time: float = 0.02
    """diffusion time of the short control run (chains still near the drawn layers)"""
    control_long_time: float = 1.0
    """diffusion time of the long control runs"""
    workers: int = 2
    """processes over which teachers and reduced-rank cases are spread (each with num_threads
    torch threads)"""

    QUICK = dict(num_teachers=3, width_ranges=((2, 6),), depth=(2, 3), min_parameters=10,
                 num_chains=4, diffusion_time=0.05, num_samples=1_000, rrr_widths=((4, 3, 8),),
                 rrr_num_samples=1_000, rrr_diffusion_time=0.02, rrr_num_chains=4,
                 module_check_teachers=1, module_check_samples=200, module_check_steps=20,
                 empirical_teachers=1, sgld_comparison_teachers=1, controls=False, workers=1)


def nbeta_of(n: int) -> float:
    return n / math.log(n)


def conditioned_minimal_teacher(teacher: DLNTeacher, max_condition: float, seed: int) -> DLNTeacher:
    """The teacher's product with singular values ``s/s_1`` floored at ``1/max_condition``,
    factorised with every layer of rank ``r``."""
    if teacher.rank == 0:
        return teacher.minimal_factorization(seed)
    s = torch.linalg.svdvals(teacher.product)[: teacher.rank]
    s = (s / s[0]).clamp_min(1.0 / max_condition)
    return teacher.minimal_factorization(seed, singular_values=s.tolist())


def _measure(widths, center, stats, cfg: Config, nbeta: float, diffusion_time: float,
             num_chains: int, seed: int, sampler: str | None = None) -> dict:
    start = time.perf_counter()
    cpu = time.process_time()
    sampler = sampler or cfg.sampler
    res = estimate_dln_llc(widths, center, stats, nbeta=nbeta, noise_std=cfg.noise_std,
                           localization=cfg.localization, sampler=sampler,
                           step_fraction=cfg.step_fraction, diffusion_time=diffusion_time,
                           num_chains=num_chains, seed=seed)
    accepted = res.trace.records.get("accepted")
    return dict(llc=res.llc_mean, mcse=res.mcse, chain_sd=res.llc_std, ess=res.ess, rhat=res.rhat,
                step_size=res.step_size, nbeta=res.nbeta, sampler=sampler,
                acceptance=float(accepted.mean()) if accepted is not None else None,
                num_steps=res.num_burnin_steps + res.num_draws * res.num_steps_bw_draws,
                seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)


def _row(name, widths, rank, layer_ranks, measured: dict, kind: str) -> dict:
    lam, m = learning_coefficient(widths, rank)
    return dict(name=name, kind=kind, widths=list(widths), depth=len(widths) - 1,
                num_parameters=sum(a * b for a, b in zip(widths[:-1], widths[1:])), rank=rank,
                layer_ranks=list(layer_ranks), llc_exact=str(lam), llc_exact_float=float(lam),
                multiplicity=m, rel_error=measured["llc"] / float(lam) - 1 if lam != 0 else math.nan,
                **measured)


def _teachers(cfg: Config) -> list[tuple[int, DLNTeacher]]:
    out, seed = [], cfg.first_seed
    while len(out) < cfg.num_teachers:
        width = tuple(cfg.width_ranges[len(out) % len(cfg.width_ranges)])
        t = random_teacher(seed, depth=cfg.depth, width=width,
                           reduce_probability=cfg.reduce_probability)
        if t.num_parameters >= cfg.min_parameters:
            out.append((seed, t))
        seed += 1
    return out


def _module_check(seed_teacher, cfg: Config, nbeta: float) -> dict:
    """estimate_llc on the nn.Module with data vs on the sufficient-statistics potential."""
    seed, teacher = seed_teacher
    point = conditioned_minimal_teacher(teacher, cfg.max_condition, seed)
    X, Y = make_data(point, cfg.module_check_samples, noise_std=cfg.noise_std, seed=cfg.seed + seed)
    stats = SufficientStatistics.from_data(X, Y, point.product)
    from toymodels.models.dln import dln_step_size

    eps, _ = dln_step_size(point.widths, point.flat, stats.input_moment, nbeta=nbeta,
                           noise_std=cfg.noise_std, step_fraction=cfg.step_fraction)
    common = dict(nbeta=nbeta, step_size=eps, localization=cfg.localization, num_chains=4,
                  num_draws=cfg.module_check_steps, seed=cfg.seed, progress=False)
    via_module = estimate_llc(point.network(), data=(X, Y), loss_fn=gaussian_nll_loss(cfg.noise_std),
                              **common)
    via_potential = estimate_llc(dln_potential(point.widths, stats, cfg.noise_std), init=point.flat,
                                 **common)
    return dict(teacher_seed=seed, widths=list(point.widths), num_samples=cfg.module_check_samples,
                steps=cfg.module_check_steps, llc_module=via_module.llc_mean,
                llc_potential=via_potential.llc_mean,
                max_abs_trace_difference=float(np.abs(via_module.loss_trace - via_potential.loss_trace).max()),
                seconds_module=via_module.seconds, seconds_potential=via_potential.seconds)


def control_teacher() -> DLNTeacher:
    """Widths (5, 5, 5, 5): W_1, W_3 orthogonal, W_2 of rank 2; P(w) is a submersion near it."""
    g = torch.Generator().manual_seed(1)
    q1, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    q3, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    u, _ = torch.linalg.qr(torch.randn(5, 2, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 2, generator=g, dtype=torch.float64))
    w2 = u @ torch.diag(torch.tensor([1.0, 0.6], dtype=torch.float64)) @ v.T
    return DLNTeacher(widths=(5, 5, 5, 5), layers=(q1, w2, q3), rank=2, layer_ranks=(5, 2, 5))


def _teacher_task(args) -> dict:
    cfg, nbeta, seed, teacher, compare = args
    point = conditioned_minimal_teacher(teacher, cfg.max_condition, seed)
    stats = SufficientStatistics.population(point.product, input_covariance(point.widths[0]),
                                            cfg.noise_std)
    measured = _measure(point.widths, point.flat, stats, cfg, nbeta, cfg.diffusion_time,
                        cfg.num_chains, cfg.seed + seed)
    row = _row(f"teacher {seed}", teacher.widths, teacher.rank, teacher.layer_ranks, measured,
               "random teacher")
    row["product_singular_values_used"] = torch.linalg.svdvals(point.product)[: point.rank].tolist()
    if compare:
        other = "sgld" if cfg.sampler == "mala" else "mala"
        alt = _measure(point.widths, point.flat, stats, cfg, nbeta, cfg.diffusion_time,
                       cfg.num_chains, cfg.seed + seed, sampler=other)
        row[f"llc_{other}"], row[f"mcse_{other}"] = alt["llc"], alt["mcse"]
    return row


def _rrr_task(args) -> dict:
    cfg, nbeta, widths = args
    M, H, N = widths
    zero = torch.zeros(N, M, dtype=torch.float64)
    stats = SufficientStatistics.population(zero, input_covariance(M), cfg.noise_std)
    center = torch.zeros(M * H + H * N, dtype=torch.float64)
    measured = _measure(widths, center, stats, cfg, nbeta, cfg.rrr_diffusion_time,
                        cfg.rrr_num_chains, cfg.seed)
    return _row(f"RRR {tuple(widths)}", tuple(widths), 0, (0, 0), measured, "reduced-rank regression")


def _map(fn, tasks: list, workers: int) -> list:
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (torch and fork do not mix reliably)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, tasks))


def _dispatch(job):
    kind, args = job
    with torch_threads(args[0].num_threads):  # a worker process starts with torch's default
        return _teacher_task(args) if kind == "teacher" else _rrr_task(args)


@uses_threads
def main(cfg: Config) -> dict:
    nbeta = nbeta_of(cfg.num_samples)
    rrr_nbeta = nbeta_of(cfg.rrr_num_samples)
    start = time.perf_counter()
    cpu0 = time.process_time()
    teachers = _teachers(cfg)
    # longest first, so that the workers finish together
    tasks = [(cfg, nbeta, seed, t, i < cfg.sgld_comparison_teachers)
             for i, (seed, t) in enumerate(teachers)]
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i][3].num_parameters * tasks[i][3].depth)
    jobs = [("teacher", tasks[i]) for i in order] + [("rrr", (cfg, rrr_nbeta, tuple(w)))
                                                      for w in cfg.rrr_widths]
    results = _map(_dispatch, jobs, cfg.workers)
    by_name = {r["name"]: r for r in results}
    rows = [by_name[f"teacher {seed}"] for seed, _ in teachers]
    rrr_rows = [by_name[f"RRR {tuple(w)}"] for w in cfg.rrr_widths]
    for row in rows:
        print(f"{row['name']:>12s} d={row['num_parameters']:5d} L={row['depth']} r={row['rank']:2d} "
              f"m={row['multiplicity']}  λ={row['llc_exact_float']:7.2f}  λ̂={row['llc']:7.2f} "
              f"± {row['mcse']:.2f}  ({100 * row['rel_error']:+5.1f}%)  {row['cpu_seconds']:5.1f}s CPU"
              + (f"   [SGLD: {row['llc_sgld']:.2f}]" if "llc_sgld" in row else ""))
    for row in rrr_rows:
        print(f"{row['name']:>12s} m={row['multiplicity']}  λ={row['llc_exact_float']:6.2f}  "
              f"λ̂={row['llc']:6.2f} ± {row['mcse']:.2f}  ({100 * row['rel_error']:+5.1f}%)  "
              f"{row['cpu_seconds']:5.1f}s CPU")

    empirical = []
    for seed, teacher in teachers[: cfg.empirical_teachers]:
        point = conditioned_minimal_teacher(teacher, cfg.max_condition, seed)
        X, Y = make_data(point, cfg.num_samples, noise_std=cfg.noise_std, seed=cfg.seed + seed)
        stats = SufficientStatistics.from_data(X, Y, point.product)
        measured = _measure(point.widths, point.flat, stats, cfg, nbeta, cfg.diffusion_time,
                            cfg.num_chains, cfg.seed + seed)
        population = next(r for r in rows if r["name"] == f"teacher {seed}")
        empirical.append(dict(name=f"teacher {seed}", llc_population=population["llc"],
                              mcse_population=population["mcse"], llc_empirical=measured["llc"],
                              mcse_empirical=measured["mcse"], llc_exact=population["llc_exact_float"],
                              beta=1 / math.log(cfg.num_samples)))

    module_checks = [_module_check(st, cfg, nbeta) for st in teachers[: cfg.module_check_teachers]]

    controls = []
    if cfg.controls:
        ctrl = control_teacher()
        stats = SufficientStatistics.population(ctrl.product, input_covariance(5), cfg.noise_std)
        minimal = teacher_from_product(ctrl.product, ctrl.widths, seed=0)
        for label, point, t_run in (("drawn layers, short run", ctrl, cfg.control_short_time),
                                    ("drawn layers, long run", ctrl, cfg.control_long_time),
                                    ("minimal stratum, long run", minimal, cfg.control_long_time)):
            measured = _measure(point.widths, point.flat, stats, cfg, nbeta, t_run, cfg.num_chains,
                                cfg.seed)
            row = _row(f"control (5,5,5,5): {label}", point.widths, 2, point.layer_ranks, measured,
                       "control")
            row.update(diffusion_time=t_run, strictly_local_llc=12.5 if point is ctrl else 11.0)
            controls.append(row)
            print(f"{row['name']:>44s}: Aoyagi λ = 11, strictly local λ = "
                  f"{row['strictly_local_llc']:.1f}, λ̂ = {row['llc']:.2f} ± {row['mcse']:.2f}",
                  flush=True)

    summary = _summary(rows, rrr_rows)
    worker_cpu = sum(r["cpu_seconds"] for r in rows + rrr_rows) if cfg.workers > 1 else 0.0
    summary.update(seconds=time.perf_counter() - start,
                   cpu_seconds=time.process_time() - cpu0 + worker_cpu, workers=cfg.workers,
                   nbeta=nbeta, rrr_nbeta=rrr_nbeta)
    report = dict(config=asdict(cfg), summary=summary, teachers=rows, reduced_rank=rrr_rows,
                  empirical_loss=empirical, module_checks=module_checks, controls=controls)
    _print_summary(report)
    paths = output_paths(cfg, "dln_llc_vs_aoyagi")
    write_json(paths.json, report)
    _plot(report, paths.figure)
    return report


def _summary(rows: list[dict], rrr_rows: list[dict]) -> dict:
    from scipy.stats import spearmanr

    errs = [abs(r["rel_error"]) for r in rows]
    m1 = [abs(r["rel_error"]) for r in rows if r["multiplicity"] == 1]
    m2 = [r["rel_error"] for r in rows if r["multiplicity"] > 1]
    rho = (float(spearmanr([r["llc_exact_float"] for r in rows], [r["llc"] for r in rows]).statistic)
           if len(rows) > 2 else math.nan)
    flagged = [r["name"] for r in rows
               if (r.get("acceptance") is not None and r["acceptance"] < 0.15) or r["rhat"] > 1.2]
    return dict(
        flagged_by_diagnostics=flagged,
        num_teachers=len(rows), median_abs_rel_error=statistics.median(errs) if errs else math.nan,
        worst_abs_rel_error=max(errs, default=math.nan),
        worst_abs_rel_error_m1=max(m1, default=math.nan),
        mean_rel_error_m_gt_1=statistics.fmean(m2) if m2 else math.nan, num_m_gt_1=len(m2),
        spearman=rho,
        rrr_worst_abs_rel_error=max((abs(r["rel_error"]) for r in rrr_rows), default=math.nan),
    )


def _print_summary(report: dict) -> None:
    s = report["summary"]
    print("-" * 72)
    print(f"{s['num_teachers']} teachers at nβ = {s['nbeta']:.1f}: median |λ̂/λ − 1| = "
          f"{100 * s['median_abs_rel_error']:.1f}%, worst {100 * s['worst_abs_rel_error']:.1f}% "
          f"(m = 1: {100 * s['worst_abs_rel_error_m1']:.1f}%), Spearman {s['spearman']:.3f}; "
          f"{s['num_m_gt_1']} with m > 1, mean signed error {100 * s['mean_rel_error_m_gt_1']:+.1f}%")
    if s["flagged_by_diagnostics"]:
        print(f"poorly mixed (MALA acceptance < 0.15 or R-hat > 1.2): {s['flagged_by_diagnostics']}")
    print(f"reduced-rank cases at nβ = {s['rrr_nbeta']:.1f}: worst |λ̂/λ − 1| = "
          f"{100 * s['rrr_worst_abs_rel_error']:.1f}% (devinterp accepts 40%)")
    for e in report["empirical_loss"]:
        print(f"{e['name']}: λ = {e['llc_exact']:.2f}, population NLL λ̂ = {e['llc_population']:.2f}, "
              f"empirical NLL λ̂ = {e['llc_empirical']:.2f} (β = {e['beta']:.3f})")
    for c in report["module_checks"]:
        print(f"module check teacher {c['teacher_seed']}: λ̂ via nn.Module {c['llc_module']:.6f}, via "
              f"sufficient statistics {c['llc_potential']:.6f} (max trace diff "
              f"{c['max_abs_trace_difference']:.1e})")
    print(f"total {s['seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU")


def _plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, rrr = report["teachers"], report["reduced_rank"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    allv = [r["llc_exact_float"] for r in rows + rrr] + [r["llc"] for r in rows + rrr]
    lo, hi = max(min(allv) * 0.7, 0.5), max(allv) * 1.3
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="λ̂ = λ")
    for sel, marker, label in (
        ([r for r in rows if r["multiplicity"] == 1], "o", "random teacher, m = 1"),
        ([r for r in rows if r["multiplicity"] > 1], "^", "random teacher, m > 1"),
        (rrr, "s", "reduced-rank regression (devinterp's cases)"),
        (report["controls"], "x", "control: drawn layers (5,5,5,5)"),
    ):
        if sel:
            ax.errorbar([r["llc_exact_float"] for r in sel], [r["llc"] for r in sel],
                        yerr=[2 * r["mcse"] for r in sel], fmt=marker, ms=5, capsize=2, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Aoyagi's λ (exact)")
    ax.set_ylabel("λ̂ (error bars: 2 MCSE)")
    ax.set_title(f"λ̂ at the teacher, nβ = {report['summary']['nbeta']:.0f}")
    ax.legend(fontsize=8)
    d = [r["num_parameters"] for r in rows]
    colors = ["C1" if r["multiplicity"] > 1 else "C0" for r in rows]
    ax2.scatter(d, [100 * r["rel_error"] for r in rows], c=colors, s=18)
    ax2.axhspan(-5, 5, color="g", alpha=0.1, label="±5%")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_xlabel("number of parameters d")
    ax2.set_ylabel("λ̂/λ − 1 [%]  (orange: m > 1)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
