"""Benchmark of issue 7 (no paper figure): wall seconds to a 2%-accurate LLC (MCSE ≤ 1%) on a 24-parameter reduced-rank regression and a normal crossing, toymodels against devinterp 1.3.2 (the SGLD estimator of Lau et al., arXiv 2308.12108).

Both cases have an *exact* finite-temperature target, so "accurate" means accurate:

* **Reduced-rank regression, 24 parameters, λ = 6.** ``x ∈ R^12 ↦ b aᵀ x`` (M = 12 inputs, H = 1
  hidden unit, N = 12 outputs) with a zero teacher (true rank 0): Aoyagi & Watanabe's λ = 6 with
  multiplicity 2 (``theory.dln.rrr_learning_coefficient(12, 1, 12, 0)``). For standard Gaussian
  inputs the population loss is ``K(a, b) = ½ |a|² |b|²``. In radial coordinates ``x = |a|``,
  ``y = |b|`` this is the normal crossing ``½ x² y²`` with prior exponents ``h = (11, 11)`` (the
  volume element of R^12 is ``r^11 dr dΩ``), so the exact target is
  ``theory.normal_crossing.finite_temperature_llc([1, 1], [11, 11], nbeta=nβ/2, localization=γ)``.
  (The other 24-parameter RRRs with λ = 6, e.g. M = N = 4, H = 3, rank 1, have no closed-form
  finite-temperature target.)
* **Normal crossing x²y⁴** (λ = 1/4, m = 1) at nβ = 1000, γ = 1, as in ``toymodels validate``.

Methods, each timed from the start (calibration included) until the running estimate over all
draws so far is within ``accuracy`` of the target *and* its MCSE is at most ``rel_mcse`` of it:

* ``toymodels default`` — ``estimate_llc``'s defaults: SGLD, ε = 1e-4, 8 chains, no burn-in;
* ``toymodels calibrated`` — ``step_size="auto"``: :func:`toymodels.calibrate` chooses ε (fitted
  bias ≤ 1 %) and the burn-in and thinning (:meth:`CalibrationResult.schedule`), many chains;
* ``toymodels MALA`` — MALA with ε adapted during burn-in (no step-size bias);
* ``devinterp 1.3.2`` — ``estimate_learning_coeff_with_summary`` with its SGLD at ``lr = 1e-3`` (the
  middle of the step sizes the issue quotes), 8 chains, no burn-in (its defaults), the same nβ and
  γ, runs of increasing length; the time is that of the shortest run that meets the criterion.
  It runs in ``devinterp_python`` (a separate environment); without it the column is skipped.

All chains run with one torch thread (the machine these numbers were taken on has 2 cores, shared).
"""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.dln import rrr_learning_coefficient
from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from toymodels import PotentialObjective, SGLDHyperparameters, calibrate, chain_diagnostics
from toymodels.models.potentials import normal_crossing_potential
from toymodels.sampling import run_chains


@dataclass
class Config(ExperimentConfig):
    """Wall seconds to a 2%-accurate LLC, per method."""

    seed: int = 0
    """seed of every sampler's generator"""
    num_threads: int = 1
    """torch intra-op threads of every method (devinterp's process included)"""

    accuracy: float = 0.02
    """relative error the running estimate must be within"""
    rel_mcse: float = 0.01
    """and its Monte-Carlo standard error must be at most this fraction of the target"""
    time_limit: float = 120.0
    """give up on a method after this many seconds"""
    rrr_nbeta: float = 1000.0
    """nβ of the reduced-rank regression case"""
    rrr_localization: float = 1.0
    """γ of the reduced-rank regression case"""
    nc_nbeta: float = 1000.0
    """nβ of the normal-crossing case"""
    nc_localization: float = 1.0
    """γ of the normal-crossing case"""
    calibrated_chains: int = 256
    """chains for the calibrated SGLD and the MALA runs (the default method uses 8)"""
    devinterp_python: str = "/work/venv-bench/bin/python"
    """python of an environment with devinterp 1.3.2 installed; skipped if missing"""
    devinterp_step_sizes: tuple[float, ...] = (1e-3,)
    """devinterp SGLD learning rates (= our ε)"""
    devinterp_draws: tuple[int, ...] = (1000, 4000, 16000)
    """devinterp run lengths tried, in draws per chain (8 chains, no burn-in)"""
    cases: tuple[str, ...] = ("rrr", "normal_crossing")
    """which cases to run"""
    max_burnin_steps: int | None = None
    """cap on every method's burn-in steps (None: no cap)"""
    tiny_calibration: bool = False
    """calibrate on a tiny budget (smoke tests) instead of calibrate's own"""

    QUICK = dict(time_limit=2.0, devinterp_draws=(20,), max_burnin_steps=50, tiny_calibration=True)


def rrr_potential():
    """``K(a, b) = ½ |a|² |b|²``: the population loss of x ↦ b aᵀx (12 → 1 → 12), zero teacher."""

    def potential(w: torch.Tensor) -> torch.Tensor:
        a, b = w[..., :12], w[..., 12:]
        return 0.5 * (a * a).sum(-1) * (b * b).sum(-1)

    potential.batched = True  # type: ignore[attr-defined]
    return potential


def make_cases(cfg: Config) -> dict:
    lam_rrr, m_rrr = rrr_learning_coefficient(12, 1, 12, 0)
    lam_nc, m_nc = learning_coefficient([1, 2])
    out = {
        "rrr": dict(
            name="reduced-rank regression 12→1→12, rank 0 (24 params)", potential=rrr_potential(), dim=24,
            nbeta=cfg.rrr_nbeta, localization=cfg.rrr_localization, llc=float(lam_rrr), multiplicity=m_rrr,
            target=finite_temperature_llc([1, 1], [11, 11], nbeta=cfg.rrr_nbeta / 2,
                                          localization=cfg.rrr_localization, box=None)),
        "normal_crossing": dict(
            name="normal crossing x²y⁴", potential=normal_crossing_potential([1, 2]), dim=2,
            nbeta=cfg.nc_nbeta, localization=cfg.nc_localization, llc=float(lam_nc), multiplicity=m_nc,
            target=finite_temperature_llc([1, 2], nbeta=cfg.nc_nbeta, localization=cfg.nc_localization,
                                          box=None)),
    }
    return {k: out[k] for k in cfg.cases}


def _reached(est: float, mcse: float, target: float, cfg: Config) -> bool:
    return abs(est / target - 1) <= cfg.accuracy and mcse <= cfg.rel_mcse * abs(target)


def run_until_accurate(case: dict, method: str, cfg: Config) -> dict:
    """Sample in growing chunks (each continuing the last) until the criterion holds or time runs out."""
    start = time.perf_counter()
    obj = PotentialObjective(case["potential"], torch.zeros(case["dim"], dtype=torch.float64))
    nbeta, gamma, target = case["nbeta"], case["localization"], case["target"]
    options: dict = {}
    sampler = "sgld"
    if method == "toymodels default":
        eps, chains, burn, bw = 1e-4, 8, 0, 1
    elif method == "toymodels calibrated":
        chains = cfg.calibrated_chains
        budget = dict(num_chains=8, num_draws=40, num_burnin_steps=40, max_rounds=1,
                      scan_steps=60, relax_max_steps=400) if cfg.tiny_calibration else {}
        cal = calibrate(case["potential"], init=obj.center, nbeta=nbeta, localization=gamma,
                        seed=cfg.seed + 1, **budget)
        eps = cal.step_size
        schedule = cal.schedule(chains, rel_mcse=cfg.rel_mcse)
        burn, bw = schedule.num_burnin_steps, schedule.num_steps_bw_draws
    elif method == "toymodels MALA":
        chains, burn, bw, eps, sampler = cfg.calibrated_chains, 300, 2, 1e-4, "mala"
        options = dict(adapt_steps=burn, target_accept=0.8)
    else:
        raise ValueError(f"unknown method {method!r}")
    if cfg.max_burnin_steps is not None:
        burn = min(burn, cfg.max_burnin_steps)
    losses, history, chunk, params, k = [], [], 100, None, 0
    while True:
        trace = run_chains(obj, hyper=SGLDHyperparameters(eps, nbeta, gamma), num_chains=chains,
                           num_draws=chunk, num_burnin_steps=burn if k == 0 else 0,
                           num_steps_bw_draws=bw, seed=cfg.seed + 1000 * k, sampler=sampler,
                           sampler_options=options, chain_init=params, on_divergence="drop")
        if trace.final_step_size is not None:  # MALA: keep the adapted step, stop adapting
            eps, options = trace.final_step_size, dict(options, adapt_steps=0)
        if trace.dropped_chains:
            return dict(method=method, reached=False, seconds=time.perf_counter() - start,
                        note=f"{len(trace.dropped_chains)} chains diverged", step_size=eps,
                        chains=chains, estimate=float("nan"), mcse=float("nan"), history=history)
        params = trace.final_params
        losses.append(trace.loss)
        llc = nbeta * (np.concatenate(losses, axis=1) - trace.init_loss)
        est, mcse = float(llc.mean()), chain_diagnostics(llc)["mcse"]
        elapsed = time.perf_counter() - start
        history.append((elapsed, est, mcse))
        steps = burn + llc.shape[1] * bw
        if _reached(est, mcse, target, cfg) or elapsed > cfg.time_limit:
            return dict(method=method, reached=_reached(est, mcse, target, cfg), seconds=elapsed,
                        estimate=est, mcse=mcse, step_size=eps, chains=chains, steps=steps,
                        history=history, note="")
        chunk = int(chunk * 1.5)
        k += 1


_DEVINTERP_SCRIPT = textwrap.dedent('''
    import json, sys, time, warnings
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    warnings.simplefilter("ignore")
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["num_threads"])  # a fresh process: nothing to restore

    class Params(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def evaluate(model, batch):
        w = model.w
        if args["case"] == "rrr":
            return 0.5 * (w[:12] ** 2).sum() * (w[12:] ** 2).sum()
        return w[0] ** 2 * w[1] ** 4

    out = []
    for lr in args["step_sizes"]:
        for draws in args["draws"]:
            model = Params(args["dim"])
            loader = DataLoader(TensorDataset(torch.zeros(draws, 1)), batch_size=1)
            start = time.perf_counter()
            res = estimate_learning_coeff_with_summary(
                model, loader=loader, evaluate=evaluate, sampling_method=SGLD,
                optimizer_kwargs=dict(lr=lr, nbeta=args["nbeta"], localization=args["localization"]),
                num_chains=8, num_draws=draws, seed=args["seed"], verbose=False, init_loss=0.0)
            seconds = time.perf_counter() - start
            out.append(dict(step_size=lr, draws=draws, seconds=seconds,
                            loss_trace=torch.as_tensor(res["loss/trace"]).tolist()))
    print(json.dumps(out))
''')


def run_devinterp(case_key: str, case: dict, cfg: Config) -> list[dict]:
    """devinterp 1.3.2 in its own environment; [] with a note if that environment is missing."""
    python = Path(cfg.devinterp_python)
    if not python.exists():
        return [dict(method="devinterp 1.3.2", reached=False, seconds=float("nan"),
                     note=f"skipped: {python} not found (install devinterp==1.3.2 there)")]
    args = dict(case=case_key, dim=case["dim"], nbeta=case["nbeta"], localization=case["localization"],
                step_sizes=list(cfg.devinterp_step_sizes), draws=list(cfg.devinterp_draws), seed=cfg.seed,
                num_threads=cfg.num_threads)
    proc = subprocess.run([str(python), "-c", _DEVINTERP_SCRIPT, json.dumps(args)], capture_output=True,
                          text=True, timeout=3600)
    if proc.returncode != 0:
        return [dict(method="devinterp 1.3.2", reached=False, seconds=float("nan"),
                     note="failed: " + proc.stderr.strip().splitlines()[-1][:200])]
    rows = []
    target = case["target"]
    for result in json.loads(proc.stdout.strip().splitlines()[-1]):
        llc = case["nbeta"] * np.asarray(result["loss_trace"], dtype=float)
        finite = np.isfinite(llc).all()
        est = float(llc.mean()) if finite else float("nan")
        mcse = chain_diagnostics(llc)["mcse"] if finite else float("nan")
        rows.append(dict(method=f"devinterp 1.3.2 (ε={result['step_size']:g})",
                         step_size=result["step_size"], draws=result["draws"], chains=8,
                         seconds=result["seconds"], estimate=est, mcse=mcse,
                         reached=bool(finite and _reached(est, mcse, target, cfg)),
                         note="" if finite else "non-finite losses"))
    return rows


@uses_threads
def main(cfg: Config) -> dict:
    report = dict(config=asdict(cfg), cases={})
    for key, case in make_cases(cfg).items():
        rows = [run_until_accurate(case, m, cfg)
                for m in ("toymodels default", "toymodels calibrated", "toymodels MALA")]
        rows += run_devinterp(key, case, cfg)
        report["cases"][key] = dict(name=case["name"], target=case["target"], llc=case["llc"],
                                    nbeta=case["nbeta"], localization=case["localization"], rows=rows)
        print(f"\n{case['name']}: exact target {case['target']:.4f} (λ = {case['llc']:g}), "
              f"nβ = {case['nbeta']:g}, γ = {case['localization']:g}")
        print(f"  {'method':32s} {'seconds':>8s} {'reached':>8s} {'estimate ± MCSE':>20s} {'rel.err':>8s} "
              f"{'ε':>9s} {'chains':>6s}")
        for r in rows:
            est = r.get("estimate", float("nan"))
            rel = est / case["target"] - 1 if math.isfinite(est) else float("nan")
            extra = f" ({r['draws']} draws)" if "draws" in r else ""
            print(f"  {r['method'] + extra:32s} {r['seconds']:8.1f} {str(r['reached']):>8s} "
                  f"{est:10.4f} ± {r.get('mcse', float('nan')):7.4f} {100 * rel:7.2f}% "
                  f"{r.get('step_size', float('nan')):9.3g} {r.get('chains', 0):6d} {r.get('note', '')}")
    paths = output_paths(cfg, "time_to_accuracy")
    write_json(paths.json, report)
    _plot(report, cfg, paths.figure)
    return report


def _plot(report: dict, cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(6.5 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases.values()):
        target = case["target"]
        ax.axhspan(100 * -cfg.accuracy, 100 * cfg.accuracy, color="g", alpha=0.12,
                   label=f"±{100 * cfg.accuracy:g}% of the exact target")
        for r in case["rows"]:
            if r.get("history"):
                t, est, mcse = map(np.array, zip(*r["history"]))
                rel = 100 * (est / target - 1)
                ax.plot(t, rel, "-o", ms=3, label=r["method"])
                ax.fill_between(t, rel - 200 * mcse / target, rel + 200 * mcse / target, alpha=0.15)
            elif math.isfinite(r.get("estimate", float("nan"))):
                ax.errorbar([r["seconds"]], [100 * (r["estimate"] / target - 1)],
                            yerr=[200 * r["mcse"] / target], fmt="s", capsize=3,
                            label=f"{r['method']} ({r['draws']} draws)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("wall seconds (2 shared cores, one torch thread)")
        ax.set_ylabel("relative error of the running estimate [%] (band: 2 MCSE)")
        ax.set_title(f"{case['name']}\nexact target {target:.4f}, λ = {case['llc']:g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
