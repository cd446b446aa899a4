"""Compressibility measures complexity (Urdshals, Lau, Hoogland, van Wingerden, Murfet, arXiv 2510.12077) on models with known λ: volume exponents and critical compression strengths against λ and λ̂.

Two parts:

1. **Volume exponents.** Exact cases (normal crossings on a box with prior exponents, quadratics
   under a Gaussian prior; :mod:`theory.volumes`): ``V(ε)`` from importance-sampled prior draws
   (log-uniform magnitudes, :func:`toymodels.estimators.compressibility.log_uniform_sampler`),
   the exponent fitted with the ``m − 1`` log powers of the zeta-function expansion beside the
   plain log-log slope, which the ``(log 1/ε)^{m−1}`` factor biases low. Deep linear networks
   (d ≤ 20, Aoyagi's λ with m = 1): MC is hopeless there (``V(ε) ≈ ε^λ`` needs ``ε^{−λ}`` draws),
   so the exponent of the partition function ``Z(nβ)`` (the Laplace transform of ``V``) comes from
   thermodynamic integration of λ̂ over ``log nβ``
   (:func:`toymodels.estimators.compressibility.volume_exponent_from_llcs`), with the prior
   ``N(w*, I/γ)`` of the localization, γ = c nβ^{1/L} (see ``experiments/dln_resolution_dial``).
2. **Critical strengths.** Quantization step, rank and Gaussian-noise σ at which the loss rises
   by ε (:func:`toymodels.estimators.compressibility.critical_strength`) on every model as an
   ``nn.Module`` at a minimum: normal crossings and quadratics (one parameter vector, centred at
   a generic point so that rounding is not trivially exact), DLNs, TMS k-gons (c = 6; λ from
   :func:`theory.tms.kgon_learning_coefficient`). Complexity ordering: ``−log(step)``,
   ``−log(σ)`` and the critical rank against λ and λ̂ (Spearman), at several ε. λ̂ of the DLNs
   is the top rung of the TI ladder; λ̂ of the potentials and k-gons comes from one rule for
   every model: nβ = 10⁴, γ = 1, ``step_size="auto"`` in :func:`toymodels.estimate_llc`
   (calibrated ε, relaxed chains, burn-in from the measured autocorrelation time), printed
   beside λ and, where it is known exactly, beside its finite-nβ target ``nβ E[K]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.dln import learning_coefficient as dln_lambda
from theory.normal_crossing import finite_temperature_llc
from theory.normal_crossing import learning_coefficient as nc_lambda
from theory.regular import localized_llc
from theory.tms import kgon_critical_point, kgon_learning_coefficient
from toymodels import (
    SCHEMES,
    critical_strength,
    estimate_llc,
    log_uniform_sampler,
    volume_exponent_from_llcs,
    volume_exponent_mc,
)
from toymodels.models.dln import (
    DeepLinearNetwork,
    SufficientStatistics,
    estimate_dln_llc,
    input_covariance,
    product_matrix,
    teacher_from_product,
)
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential
from toymodels.models.tms import population_loss as tms_loss
from toymodels.models.tms.loss import flatten_params
from toymodels.threads import torch_threads

NORMAL_CROSSINGS = (([1, 1], None), ([1, 2], None), ([2, 2], None), ([1, 1, 1], None),
                    ([1, 2], [1, 0]), ([1, 1], [1, 1]))
QUADRATICS = ((1.0, 2.0, 3.0), (1.0, 4.0), (0.5, 1.0, 2.0, 4.0))
DLNS = (((2, 2, 6), 0), ((2, 2, 6), 1), ((3, 2, 3), 0), ((2, 3, 2), 1), ((3, 3, 2), 0))
KGONS = ((5, 0), (6, 0), (5, 1))


@dataclass
class Config(ExperimentConfig):
    """Volume exponents and critical compression strengths against λ."""

    seed: int = 0
    """seed of the prior draws, the generic centres, the noise draws and the samplers"""
    num_samples: int = 1_000_000
    """importance-sampled prior draws per exact model"""
    num_bootstrap: int = 30
    """bootstrap resamplings for the exponent's standard error"""
    ti_nbetas: tuple[float, ...] = (1e3, 1e4, 1e5)
    """the nβ ladder of the thermodynamic integration (DLNs)"""
    ti_localization: float = 0.01
    """c in γ = c nβ^{1/L}"""
    diffusion: float = 0.3
    """DLN runs last a diffusion time τ/γ"""
    num_chains: int = 16
    """chains per DLN run"""
    llc_nbeta: float = 1e4
    """nβ of λ̂ for the potentials and the k-gons (localization γ = 1 about the minimum)"""
    llc_chains: int = 32
    """chains of each λ̂ of a potential or k-gon"""
    llc_budget_seconds: float = 10.0
    """wall-clock budget of each λ̂ of a potential or k-gon (``step_size="auto"``: the
    calibration, relaxation and burn-in run in full; the draws are cut to fit; 0: no budget)"""
    llc_calibration_draws: int = 200
    """draws (and burn-in steps) per step size of the calibration behind ``step_size="auto"``"""
    llc_relax_max_steps: int = 500_000
    """at most this many relaxation steps before the calibration"""
    llc_budget_steps: int = 0
    """at most this many steps per chain after the relaxation (0: no cap; the quick budget)"""
    llc_burnin_steps: int = 0
    """0: the burn-in ``step_size="auto"`` chooses (after relaxing the chains); a number skips the
    relaxation and burns in this many steps from the minimum (the quick budget)"""
    eps_values: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    """loss tolerances of the critical strengths"""
    num_draws: int = 64
    """noise draws per critical σ"""
    models_per_family: int = 0
    """the first this many models of each family (normal crossings, quadratics, DLNs, k-gons); 0: all"""
    workers: int = 2
    """processes for the DLN runs and the λ̂ of the potentials and k-gons"""

    QUICK = dict(num_samples=20_000, num_bootstrap=5, ti_nbetas=(1e3, 1e4), diffusion=0.005,
                 num_chains=4, num_draws=4, eps_values=(1e-3,), workers=1, models_per_family=2,
                 llc_chains=8, llc_budget_seconds=0.0, llc_calibration_draws=30, llc_relax_max_steps=400,
                 llc_budget_steps=200, llc_burnin_steps=50)

    def family(self, models: tuple) -> tuple:
        """The models of one family this run uses."""
        return models[:self.models_per_family] if self.models_per_family > 0 else models


class VectorModel(torch.nn.Module):
    """A potential of one parameter vector as a module at ``w* = center`` (K(w − center))."""

    def __init__(self, potential, center: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(center.clone())
        self.register_buffer("center", center.clone())
        self.potential = potential

    def forward(self):
        return self.potential(self.w - self.center)


class TMSModule(torch.nn.Module):
    """The TMS population loss as a module with a weight matrix W and a bias b."""

    def __init__(self, W, b):
        super().__init__()
        self.W = torch.nn.Parameter(torch.as_tensor(np.asarray(W, dtype=float)))
        self.b = torch.nn.Parameter(torch.as_tensor(np.asarray(b, dtype=float)))

    def forward(self):
        return tms_loss(flatten_params(self.W, self.b))


# --------------------------------------------------------------------------------------------
# part 1: volume exponents


def exact_exponents(cfg: Config) -> list[dict]:
    rows = []
    for i, (k, h) in enumerate(cfg.family(NORMAL_CROSSINGS)):
        lam, m = nc_lambda(k, h)
        res = volume_exponent_mc(normal_crossing_potential(k), log_uniform_sampler(len(k), exponents=h),
                                 num_samples=cfg.num_samples, multiplicity=m,
                                 num_bootstrap=cfg.num_bootstrap, seed=cfg.seed + i)
        rows.append(dict(model=f"normal crossing k={k} h={h or [0] * len(k)}", family="normal_crossing",
                         exact_volume=True, **{"lambda": float(lam)}, multiplicity=m,
                         exponent=res.exponent, exponent_se=res.exponent_se,
                         naive_exponent=res.naive_exponent, eps_range=[res.eps[0], res.eps[-1]]))
    for i, a in enumerate(cfg.family(QUADRATICS)):
        A = torch.diag(torch.tensor(a, dtype=torch.float64))
        res = volume_exponent_mc(quadratic_potential(A), log_uniform_sampler(len(a), prior="gaussian"),
                                 num_samples=cfg.num_samples, num_bootstrap=cfg.num_bootstrap,
                                 seed=cfg.seed + 100 + i)
        rows.append(dict(model=f"quadratic eig={list(a)} (Gaussian prior)", family="quadratic",
                         exact_volume=True, **{"lambda": len(a) / 2}, multiplicity=1,
                         exponent=res.exponent, exponent_se=res.exponent_se,
                         naive_exponent=res.naive_exponent, eps_range=[res.eps[0], res.eps[-1]]))
    return rows


def dln_teacher(widths, rank, seed):
    g = torch.Generator().manual_seed(seed)
    n_out, n_in = widths[-1], widths[0]
    if rank == 0:
        P = torch.zeros(n_out, n_in, dtype=torch.float64)
    else:
        U, _ = torch.linalg.qr(torch.randn(n_out, rank, generator=g, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(n_in, rank, generator=g, dtype=torch.float64))
        P = U @ V.T  # singular values 1
    return teacher_from_product(P, widths, seed=seed, rank=rank), P


def dln_llc(job) -> dict:
    cfg, widths, rank, nbeta = job
    with torch_threads(cfg.num_threads):  # a worker process starts with torch's default
        t, P = dln_teacher(widths, rank, cfg.seed)
        stats_ = SufficientStatistics.population(P, input_covariance(widths[0]))
        L = len(widths) - 1
        gamma = cfg.ti_localization * nbeta ** (1 / L)
        res = estimate_dln_llc(widths, t.flat, stats_, nbeta=nbeta, localization=gamma,
                               diffusion_time=cfg.diffusion / gamma,
                               step_fraction=0.3 * min(1.0, gamma ** (L - 1)),
                               num_chains=cfg.num_chains, seed=cfg.seed + 1)
    return dict(widths=widths, rank=rank, nbeta=nbeta, llc=res.llc_mean, mcse=res.mcse)


def _map(fn, jobs, workers):
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def dln_exponents(cfg: Config) -> tuple[list[dict], dict]:
    jobs = [(cfg, w, r, float(nb)) for w, r in cfg.family(DLNS) for nb in cfg.ti_nbetas]
    runs = _map(dln_llc, jobs, cfg.workers)
    rows, llc_of = [], {}
    for w, r in cfg.family(DLNS):
        mine = [x for x in runs if x["widths"] == w and x["rank"] == r]
        lam, m = dln_lambda(w, r)
        res = volume_exponent_from_llcs([x["nbeta"] for x in mine], [x["llc"] for x in mine],
                                        [x["mcse"] for x in mine], multiplicity=m)
        d = sum(a * b for a, b in zip(w[:-1], w[1:]))
        rows.append(dict(model=f"DLN widths={list(w)} rank={r} (d={d})", family="dln", exact_volume=False,
                         **{"lambda": float(lam)}, multiplicity=m, exponent=res.exponent,
                         exponent_se=res.exponent_se, naive_exponent=res.naive_exponent,
                         llcs=[x["llc"] for x in mine], nbetas=[x["nbeta"] for x in mine]))
        llc_of[(w, r)] = (mine[-1]["llc"], mine[-1]["mcse"])
    return rows, llc_of


# --------------------------------------------------------------------------------------------
# part 2: critical strengths


def known_models(cfg: Config, dln_llcs: dict) -> list[dict]:
    """Every model as an nn.Module at a minimum, with λ and λ̂ (``llc`` None where not measured)."""
    g = torch.Generator().manual_seed(cfg.seed + 7)
    models = []
    for k, h in cfg.family(NORMAL_CROSSINGS):
        if h is not None:
            continue  # a prior exponent is not a property of the loss: the module has none
        center = 0.3 + 0.4 * torch.rand(len(k), generator=g, dtype=torch.float64)
        models.append(dict(name=f"normal crossing k={k}", lam=float(nc_lambda(k)[0]), nc_exponents=k,
                           module=VectorModel(normal_crossing_potential(k), center),
                           potential=normal_crossing_potential(k), center=center))
    for a in cfg.family(QUADRATICS):
        center = 0.3 + 0.4 * torch.rand(len(a), generator=g, dtype=torch.float64)
        pot = quadratic_potential(torch.diag(torch.tensor(a, dtype=torch.float64)))
        models.append(dict(name=f"quadratic eig={list(a)}", lam=len(a) / 2, eigenvalues=list(a),
                           module=VectorModel(pot, center), potential=pot, center=center))
    for w, r in cfg.family(DLNS):
        t, P = dln_teacher(w, r, cfg.seed)
        net = DeepLinearNetwork(w, list(t.layers), dtype=torch.float64)
        models.append(dict(name=f"DLN {list(w)} r={r}", lam=float(dln_lambda(w, r)[0]), module=net,
                           loss=_dln_loss(w, P), llc=dln_llcs.get((w, r), (None, None))[0],
                           llc_mcse=dln_llcs.get((w, r), (None, None))[1]))
    for k, pos in cfg.family(KGONS):
        W, b = kgon_critical_point(k, 6, pos)
        models.append(dict(name=f"TMS {k}{'+' * pos}-gon (c=6)", lam=float(kgon_learning_coefficient(k, 6, pos)),
                           module=TMSModule(W, b), potential=tms_loss,
                           center=flatten_params(torch.as_tensor(np.asarray(W, dtype=float)),
                                                 torch.as_tensor(np.asarray(b, dtype=float)))))
    return models


def _dln_loss(widths, P):
    def loss(net):
        W = product_matrix(torch.cat([p.reshape(-1) for p in net.parameters()]), widths)
        return ((W - P) ** 2).sum() / 2  # population K with Σ_xx = I, σ = 1

    return loss


def llc_target(model: dict, cfg: Config) -> float | None:
    """The exact value λ̂ converges to at (nβ, γ = 1) where it is known: ``nβ E[K]`` of the
    localized tempered posterior (:func:`theory.normal_crossing.finite_temperature_llc`,
    :func:`theory.regular.localized_llc`); it tends to λ as nβ → ∞, slowly (~(m−1)/log nβ) for
    the normal crossings with m > 1. ``None`` for the DLNs and k-gons (λ only)."""
    if "nc_exponents" in model:
        return finite_temperature_llc(model["nc_exponents"], nbeta=cfg.llc_nbeta, localization=1.0, box=None)
    if "eigenvalues" in model:
        return localized_llc(model["eigenvalues"], nbeta=cfg.llc_nbeta, localization=1.0)
    return None


def potential_llc(job) -> dict:
    """λ̂ of one potential or k-gon at its minimum, by the same rule for every model: nβ =
    ``cfg.llc_nbeta``, γ = 1, ``step_size="auto"`` (:func:`toymodels.estimate_llc` calibrates ε,
    relaxes the chains and sets burn-in and draws from the measured autocorrelation time)."""
    cfg, name = job
    with torch_threads(cfg.num_threads):  # a worker process starts with torch's default
        model = next(m for m in known_models(cfg, {}) if m["name"] == name)
        pot, center = model["potential"], model["center"]
        tms = name.startswith("TMS")  # the TMS loss is not 0 at its minimum: subtract it
        base = float(pot(center).detach()) if tms else 0.0

        def shifted(w):
            return pot(w) - base if tms else pot(w - center)

        d = cfg.llc_calibration_draws
        calibration = dict(num_chains=cfg.llc_chains, num_draws=d, num_burnin_steps=d, scan_steps=min(300, d),
                           relax_max_steps=cfg.llc_relax_max_steps)
        if cfg.quick:  # a smoke test of the path: a three-point grid, one round
            calibration.update(scan_chains=4, max_rounds=1, num_step_sizes=3)
        res = estimate_llc(shifted, init=center.clone(), nbeta=cfg.llc_nbeta, localization=1.0,
                           step_size="auto", num_chains=cfg.llc_chains, seed=cfg.seed,
                           budget_seconds=cfg.llc_budget_seconds or None, budget_steps=cfg.llc_budget_steps or None,
                           num_burnin_steps=cfg.llc_burnin_steps or None, progress=False, calibration_options=calibration)
    s = res.schedule
    return dict(name=name, llc=res.llc_mean, llc_mcse=res.mcse, step_size=s["step_size"],
                num_burnin_steps=s["num_burnin_steps"], num_draws=s["num_draws"],
                num_steps_bw_draws=s["num_steps_bw_draws"], short_of_target=s["short_of_target"])


def critical_table(models: list[dict], cfg: Config) -> list[dict]:
    rows = []
    for model in models:
        module = model["module"]
        loss = model.get("loss") or (lambda m: m())
        entry = dict(model=model["name"], **{"lambda": model["lam"]}, llc=model.get("llc"),
                     llc_mcse=model.get("llc_mcse"), llc_target=model.get("llc_target"),
                     llc_run=model.get("llc_run"))
        for eps in cfg.eps_values:
            for scheme in SCHEMES:
                try:
                    res = critical_strength(module, loss, scheme, eps=eps, num_draws=cfg.num_draws,
                                            num_bootstrap=50, seed=cfg.seed)
                except ValueError as exc:  # rank on a vector model: not applicable
                    entry[f"{scheme}@{eps:g}"] = None
                    entry.setdefault("not_applicable", {})[scheme] = str(exc).split(";")[0]
                    continue
                entry[f"{scheme}@{eps:g}"] = dict(strength=res.strength, strength_se=res.strength_se,
                                                  code_length=res.code_length)
        rows.append(entry)
    return rows


def correlations(rows: list[dict], cfg: Config) -> dict:
    """Spearman of the complexity score (−log step, −log σ, critical rank) against λ and λ̂."""
    out = {}
    for scheme in SCHEMES:
        per_eps = {}
        for eps in cfg.eps_values:
            key = f"{scheme}@{eps:g}"
            have = [r for r in rows if r.get(key) is not None]
            if len(have) < 3:
                continue
            score = [(r[key]["strength"] if scheme == "rank" else -math.log(r[key]["strength"])) for r in have]
            lam = [r["lambda"] for r in have]
            rho_lam = stats.spearmanr(score, lam).statistic
            with_llc = [(s, r["llc"]) for s, r in zip(score, have) if r.get("llc") is not None]
            rho_llc = (stats.spearmanr(*zip(*with_llc)).statistic if len(with_llc) >= 3 else math.nan)
            slope, intercept = np.polyfit(lam, score, 1)
            per_eps[f"{eps:g}"] = dict(spearman_vs_lambda=float(rho_lam), spearman_vs_llc=float(rho_llc),
                                       num_models=len(have), linear_fit=[float(slope), float(intercept)])
        main_eps = f"{cfg.eps_values[len(cfg.eps_values) // 2]:g}"
        main = per_eps.get(main_eps, {})
        out[scheme] = dict(spearman_vs_lambda=main.get("spearman_vs_lambda", math.nan),
                           spearman_vs_llc=main.get("spearman_vs_llc", math.nan), eps=main_eps,
                           by_eps=per_eps)
    return out


def figure(exponents, rows, corr, cfg: Config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    ax = axes[0]
    for e in exponents:
        marker = "o" if e["exact_volume"] else "s"
        ax.errorbar(e["lambda"], e["exponent"], yerr=2 * e["exponent_se"], fmt=marker,
                    color="C0" if e["exact_volume"] else "C1", ms=5)
        if e["multiplicity"] > 1 and e["exact_volume"]:
            ax.plot(e["lambda"], e["naive_exponent"], "x", color="C3", ms=6)
    top = max(e["lambda"] for e in exponents) * 1.1
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set_xlabel("exact λ")
    ax.set_ylabel("volume exponent")
    ax.set_title("exponents: MC exact (o), TI DLN (s), plain slope m>1 (x)", fontsize=9)
    main_eps = cfg.eps_values[len(cfg.eps_values) // 2]
    for ax, scheme in zip(axes[1:], SCHEMES):
        key = f"{scheme}@{main_eps:g}"
        have = [r for r in rows if r.get(key) is not None]
        ys = [r[key]["strength"] for r in have]
        ax.scatter([r["lambda"] for r in have], ys, c="C2")
        for r, y in zip(have, ys):
            ax.annotate(r["model"][:14], (r["lambda"], y), fontsize=6)
        if scheme != "rank":
            ax.set_yscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel(f"critical {'rank' if scheme == 'rank' else 'step' if scheme == 'quantize' else 'σ'}")
        ax.set_title(f"{scheme} at ε={main_eps:g}: Spearman {corr[scheme]['spearman_vs_lambda']:.2f}",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@uses_threads
def main(cfg: Config) -> dict:
    paths = output_paths(cfg, "compressibility")
    start = time.perf_counter()
    exact = exact_exponents(cfg)
    dln_rows, dln_llcs = dln_exponents(cfg)
    exponents = exact + dln_rows
    models = known_models(cfg, dln_llcs)
    runs = _map(potential_llc, [(cfg, m["name"]) for m in models if "potential" in m], cfg.workers)
    for m in models:
        m["llc_target"] = llc_target(m, cfg)
        for r in runs:
            if r["name"] == m["name"]:
                m["llc"], m["llc_mcse"] = r["llc"], r["llc_mcse"]
                m["llc_run"] = {k: v for k, v in r.items() if k not in ("name", "llc", "llc_mcse")}
    rows = critical_table(models, cfg)
    corr = correlations(rows, cfg)
    report = dict(exponents=exponents, schemes=corr, critical_strengths=rows,
                  seconds=time.perf_counter() - start,
                  config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()})
    print(f"{'model':48} {'λ':>6} {'exponent':>9} {'se':>7} {'plain':>7}")
    for e in exponents:
        print(f"{e['model']:48} {e['lambda']:6.3f} {e['exponent']:9.4f} {e['exponent_se']:7.4f} "
              f"{e['naive_exponent']:7.4f}")
    print(f"\n{'model':34} {'λ':>6} {'nβE[K] exact':>12} {'λ̂':>8} {'mcse':>6} {'step':>8}")
    for r in rows:
        target = "—" if r["llc_target"] is None else f"{r['llc_target']:.3f}"
        step = "TI" if r["llc_run"] is None else f"{r['llc_run']['step_size']:.1e}"
        print(f"{r['model']:34} {r['lambda']:6.3f} {target:>12} {r['llc']:8.3f} {r['llc_mcse']:6.3f} {step:>8}")
    for scheme, c in corr.items():
        print(f"{scheme:9} ε={c['eps']}: Spearman vs λ {c['spearman_vs_lambda']:.3f}, "
              f"vs λ̂ {c['spearman_vs_llc']:.3f}")
    print(f"{report['seconds']:.0f} s")
    write_json(paths.json, report)
    figure(exponents, rows, corr, cfg, paths.figure)
    return report


if __name__ == "__main__":
    run(main, Config)
