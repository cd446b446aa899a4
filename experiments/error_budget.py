"""The LLC estimator's error budget on exact cases (issue 7, item 4; SGLD estimator of Lau et al., arXiv 2308.12108): bias from ε, γ, finite nβ and minibatching.

Four panels, each an exact case where the bias is known in closed form or by quadrature, with
sampled estimates on top:

(a) **Step size ε.** SGLD on ``K = w²`` (t = nβ, γ): the chain is AR(1) with curvature
    ``κ = 2t + γ`` and stationary variance ``1/(κ(1 − εκ/4))``, so λ̂ is too high by
    ``x/(1 − x)``, ``x = εκ/4`` — exactly. SGLD estimates follow that curve; MALA at the same step
    sizes has no bias. The singular ``x²y⁴`` shows the same O(ε) law (fitted, no closed form).
(b) **Localization γ.** The exact target ``t E[K]`` under ``exp(−tK − γ|w|²/2)``, relative to λ,
    for a regular and two singular potentials: γ pulls the estimate down, by ``γ/(ta + γ)`` per
    direction in the regular case and much more in flat singular directions.
(c) **Finite nβ.** The exact ``t E[K]``/λ against t: with multiplicity m = 1 the estimate
    approaches λ quickly; with m = 2 (``x²y²``) only like ~1/log t — at practical t it is far
    below λ, and must be compared with the finite-t value, never with λ.
(d) **Minibatches.** One-dimensional linear regression ``y = θx + noise`` with n samples and SGLD on
    minibatches of size b drawn with replacement: the minibatch gradient has random coefficients
    ``(s_B, c_B) = (mean x², mean xy over B)``, so the chain ``w' = A w + B + √ε ξ`` with
    ``A = 1 − (ε/2)(nβ s_B + γ)``, ``B = (ε/2)(nβ c_B + γ w*)`` is a random-coefficient AR(1) whose
    stationary mean and variance are exact (``μ = E B/(1 − E A)``,
    ``E w² = (E B² + 2 E[AB] μ + ε)/(1 − E A²)``). λ̂ rises as b falls (the gradient noise adds to
    the injected noise), and the excess vanishes as ε → 0. Sampled estimates with
    ``estimate_llc(model, data, batch_size=b)`` follow the exact curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from theory.regular import localized_llc
from toymodels import PotentialObjective, SGLDHyperparameters, calibrate, chain_diagnostics, estimate_llc
from toymodels.models.potentials import normal_crossing_potential
from toymodels.sampling import run_chains


@dataclass
class Config(ExperimentConfig):
    """The estimator's error budget on exact cases."""

    seed: int = 0
    """seed of every sampler's generator"""

    nbeta: float = 1000.0
    """t = nβ for panels (a), (b)"""
    localization: float = 1.0
    """γ for panels (a), (c)"""
    step_sizes: tuple[float, ...] = (2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4, 8e-4)
    """ε grid of panel (a)"""
    chains: int = 500
    """chains per sampled point"""
    draws: int = 1000
    """draws per chain per sampled point"""
    regression_samples: int = 1000
    """n of the regression in panel (d)"""
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256)
    """minibatch sizes of panel (d)"""
    minibatch_step_sizes: tuple[float, ...] = (1e-4, 4e-4)
    """ε values of panel (d)"""
    num_gammas: int = 25
    """points of the exact curves of panel (b)"""
    num_nbetas: int = 21
    """points of the exact curves of panel (c)"""
    tiny_calibration: bool = False
    """calibrate the x²y⁴ law of panel (a) on a tiny budget (smoke tests) instead of calibrate's own"""

    QUICK = dict(chains=20, draws=60, step_sizes=(2e-4, 4e-4, 8e-4), batch_sizes=(4, 64),
                 minibatch_step_sizes=(4e-4,), num_gammas=9, num_nbetas=9, tiny_calibration=True)


# ------------------------------------------------------------------------------------------------
# (a) step size


def sgld_gaussian_bias(eps: float, kappa: float) -> float:
    """Exact relative bias of SGLD's λ̂ on a Gaussian of curvature κ: ``x/(1 − x)``, ``x = εκ/4``."""
    x = eps * kappa / 4
    return x / (1 - x)


def step_size_panel(cfg: Config) -> dict:
    t, gamma = cfg.nbeta, cfg.localization
    kappa = 2 * t + gamma
    target = finite_temperature_llc([1], nbeta=t, localization=gamma, box=None)
    obj = PotentialObjective(normal_crossing_potential([1]), torch.zeros(1, dtype=torch.float64))
    eps = [e for e in cfg.step_sizes if e * kappa < 3.5]
    grid = torch.tensor(eps, dtype=torch.float64).repeat_interleave(cfg.chains)
    burn = max(int(40 / (min(eps) * kappa)), 50)  # ~20 relaxation times of the slowest grid point
    sgld = run_chains(obj, hyper=SGLDHyperparameters(eps[0], t, gamma), num_chains=grid.numel(),
                      num_draws=cfg.draws, num_burnin_steps=burn, seed=cfg.seed,
                      chain_hyper={"step_size": grid})
    rows = []
    for e in eps:
        sel = sgld.chain_hyper["step_size"] == e
        llc = t * (sgld.loss[sel] - sgld.init_loss)
        mala = run_chains(obj, hyper=SGLDHyperparameters(e, t, gamma), num_chains=cfg.chains,
                          num_draws=cfg.draws, num_burnin_steps=200, seed=cfg.seed + 1, sampler="mala")
        llc_m = t * (mala.loss - mala.init_loss)
        rows.append(dict(step_size=e, exact_bias=sgld_gaussian_bias(e, kappa),
                         sgld=float(llc.mean() / target - 1), sgld_se=chain_diagnostics(llc)["mcse"] / target,
                         mala=float(llc_m.mean() / target - 1),
                         mala_se=chain_diagnostics(llc_m)["mcse"] / target,
                         mala_acceptance=float(mala.records["acceptance"].mean())))
    budget = (dict(num_chains=16, num_draws=100, num_burnin_steps=100, max_rounds=2)
              if cfg.tiny_calibration else {})
    pot = normal_crossing_potential([1, 2])
    cal = calibrate(pot, init=torch.zeros(2, dtype=torch.float64), nbeta=t, localization=gamma,
                    seed=cfg.seed + 2, **budget)
    target_nc = finite_temperature_llc([1, 2], nbeta=t, localization=gamma, box=None)
    singular = [dict(step_size=r["step_size"], rel=r["llc_mean"] / target_nc - 1, se=r["mcse"] / target_nc,
                     used=r["used_in_fit"]) for r in cal.table if r["stage"] == "grid"]
    c = cal.choice()
    return dict(kappa=kappa, target=target, rows=rows, singular=singular, singular_target=target_nc,
                singular_fit=dict(model=c.model, rel_slope=c.rel_slope, llc_zero_step=c.llc_zero_step,
                                  chosen=c.step_size))


# ------------------------------------------------------------------------------------------------
# (b) localization and (c) finite nβ: exact curves


def localization_panel(cfg: Config) -> dict:
    t = cfg.nbeta
    gammas = np.geomspace(0.01, 100, cfg.num_gammas)
    curves = {
        "regular d=1 (w²)": [localized_llc([2.0], nbeta=t, localization=g) / 0.5 for g in gammas],
        "x²y⁴ (λ=1/4, m=1)": [finite_temperature_llc([1, 2], nbeta=t, localization=g, box=None) / 0.25
                             for g in gammas],
        "x²y² (λ=1/2, m=2)": [finite_temperature_llc([1, 1], nbeta=t, localization=g, box=None) / 0.5
                             for g in gammas],
    }
    return dict(gammas=gammas.tolist(), curves=curves)


def nbeta_panel(cfg: Config) -> dict:
    ts = np.geomspace(10, 1e6, cfg.num_nbetas)
    out = {}
    for label, k in (("x²y⁴ (m=1)", [1, 2]), ("x²y² (m=2)", [1, 1]), ("x⁴y⁴ (m=2)", [2, 2]), ("w⁴ (m=1)", [2])):
        lam = float(learning_coefficient(k)[0])
        out[label] = [finite_temperature_llc(k, nbeta=t, box=1.0) / lam for t in ts]
    return dict(nbetas=ts.tolist(), curves=out, box=1.0, localization=0.0)


# ------------------------------------------------------------------------------------------------
# (d) minibatches


def regression_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = 0.5 * x + torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def minibatch_exact_llc(x: np.ndarray, y: np.ndarray, *, nbeta: float, localization: float,
                        step_size: float, batch_size: int | None) -> float:
    """Exact λ̂ of (minibatch) SGLD on 1-D least squares ``L = mean ½(y − θx)²`` at ``w* = θ̂``.

    Per-step coefficients (with-replacement batches): ``s_B = mean_B x²``, ``c_B = mean_B xy``, so
    ``w' = A w + B + √ε ξ`` with ``A = 1 − (ε/2)(nβ s_B + γ)``, ``B = (ε/2)(nβ c_B + γ w*)``, iid over
    steps. Stationary ``μ = E B/(1 − E A)`` and ``E w² = (E B² + 2 E[AB] μ + ε)/(1 − E A²)``; then
    ``λ̂ = nβ ½ S ((E w² − μ²) + (μ − w*)²)`` with ``S = mean x²`` (``L(w) − L(w*) = ½ S (w − w*)²``).
    ``batch_size=None`` is the full batch (``s_B = S`` exactly).
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    s_i, c_i = x * x, x * y
    S, C = s_i.mean(), c_i.mean()
    w_star = C / S
    b = batch_size
    var_s = 0.0 if b is None else s_i.var() / b
    var_c = 0.0 if b is None else c_i.var() / b
    cov_sc = 0.0 if b is None else np.mean((s_i - S) * (c_i - C)) / b
    h, g = step_size / 2, localization
    ea = 1 - h * (nbeta * S + g)
    eb = h * (nbeta * C + g * w_star)
    ea2 = ea ** 2 + (h * nbeta) ** 2 * var_s
    eb2 = eb ** 2 + (h * nbeta) ** 2 * var_c
    eab = ea * eb - (h * nbeta) ** 2 * cov_sc
    mu = eb / (1 - ea)
    m2 = (eb2 + 2 * eab * mu + step_size) / (1 - ea2)
    return float(nbeta * 0.5 * S * ((m2 - mu ** 2) + (mu - w_star) ** 2))


def minibatch_panel(cfg: Config) -> dict:
    n = cfg.regression_samples
    x, y = regression_data(n, cfg.seed)
    w_star = float((x * y).sum() / (x * x).sum())
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(w_star)
    nbeta = n / math.log(n)
    gamma = cfg.localization
    S = float((x * x).mean())
    target = 0.5 * nbeta * S / (nbeta * S + gamma)  # the continuous-time (ε → 0) value
    loss_fn = lambda out, t: 0.5 * ((out - t) ** 2).mean()  # noqa: E731  (½ squared error)
    xs, ys = x.reshape(-1), y.reshape(-1)

    def full_loss(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((xs * w[0] - ys) ** 2).mean()

    rows = []
    for eps in cfg.minibatch_step_sizes:
        for b in list(cfg.batch_sizes) + [None]:
            exact = minibatch_exact_llc(x.numpy(), y.numpy(), nbeta=nbeta, localization=gamma,
                                        step_size=eps, batch_size=b)
            burn = int(20 / (eps * (nbeta * S + gamma)))
            # the draws record the minibatch loss; the full-batch loss of each draw (an observable)
            # estimates the same λ̂ with far less noise
            res = estimate_llc(model, data=(x, y), loss_fn=loss_fn, nbeta=nbeta, localization=gamma,
                               step_size=eps, batch_size=b, num_chains=cfg.chains,
                               num_draws=cfg.draws, num_burnin_steps=burn, seed=cfg.seed, progress=False,
                               observables={"full_loss": full_loss})
            llc = nbeta * (res.trace.observables["full_loss"] - res.init_loss)
            est, mcse = float(llc.mean()), chain_diagnostics(llc)["mcse"]
            rows.append(dict(step_size=eps, batch_size=b, exact=exact, exact_rel=exact / target - 1,
                             estimate=est, mcse=mcse, sampled_rel=est / target - 1,
                             minibatch_loss_estimate=res.llc_mean, minibatch_loss_mcse=res.mcse))
    return dict(n=n, nbeta=nbeta, localization=gamma, target=target, rows=rows)


@uses_threads
def main(cfg: Config) -> dict:
    torch.manual_seed(cfg.seed)
    report = dict(config=asdict(cfg), step_size=step_size_panel(cfg), localization=localization_panel(cfg),
                  nbeta=nbeta_panel(cfg), minibatch=minibatch_panel(cfg))
    a = report["step_size"]
    print(f"(a) step size: SGLD on w², t = {cfg.nbeta:g}, γ = {cfg.localization:g}, κ = {a['kappa']:g}")
    print(f"    {'ε':>9s} {'exact bias':>11s} {'SGLD':>16s} {'MALA':>16s} {'MALA acc':>9s}")
    for r in a["rows"]:
        print(f"    {r['step_size']:9.2g} {100 * r['exact_bias']:10.2f}% {100 * r['sgld']:8.2f}% ± {100 * r['sgld_se']:4.2f}"
              f" {100 * r['mala']:8.2f}% ± {100 * r['mala_se']:4.2f} {r['mala_acceptance']:9.3f}")
    f = a["singular_fit"]
    print(f"    x²y⁴: fitted law {f['model']}, s = {f['rel_slope']:.4g} per unit ε; calibrated ε = {f['chosen']:.3g}")
    loc = report["localization"]
    print("(b) localization: exact t E[K] / λ at t = "
          f"{cfg.nbeta:g}, γ = {loc['gammas'][0]:g} … {loc['gammas'][-1]:g}")
    for label, curve in loc["curves"].items():
        print(f"    {label:20s} {curve[0]:.3f} … {curve[-1]:.3f}")
    nb = report["nbeta"]
    print(f"(c) finite nβ: exact t E[K] / λ on the box [−1, 1]², t = {nb['nbetas'][0]:g} … {nb['nbetas'][-1]:g}")
    for label, curve in nb["curves"].items():
        print(f"    {label:14s} " + " ".join(f"{v:.3f}" for v in curve[:: max(1, len(curve) // 5)]))
    mb = report["minibatch"]
    print(f"(d) minibatches: 1-D regression, n = {mb['n']}, nβ = n/log n = {mb['nbeta']:.1f}, "
          f"continuous target {mb['target']:.4f}")
    print(f"    {'ε':>8s} {'b':>6s} {'exact':>9s} {'sampled':>18s}")
    for r in mb["rows"]:
        b = "full" if r["batch_size"] is None else str(r["batch_size"])
        print(f"    {r['step_size']:8.2g} {b:>6s} {100 * r['exact_rel']:8.2f}% "
              f"{100 * r['sampled_rel']:9.2f}% ± {100 * r['mcse'] / mb['target']:5.2f}")
    paths = output_paths(cfg, "error_budget")
    write_json(paths.json, report)
    _plot(report, cfg, paths.figure)
    return report


def _plot(report: dict, cfg: Config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax_a, ax_b), (ax_c, ax_d)) = plt.subplots(2, 2, figsize=(12, 8.5))
    a = report["step_size"]
    eps = np.array([r["step_size"] for r in a["rows"]])
    grid = np.geomspace(eps.min() / 1.5, eps.max() * 1.2, 100)
    grid = grid[grid * a["kappa"] < 3.9]
    ax_a.plot(grid, [100 * sgld_gaussian_bias(e, a["kappa"]) for e in grid], "k-",
              label="w²: exact SGLD bias x/(1−x), x = εκ/4")
    ax_a.errorbar(eps, [100 * r["sgld"] for r in a["rows"]], yerr=[200 * r["sgld_se"] for r in a["rows"]],
                  fmt="o", capsize=2, label="w²: SGLD (sampled)")
    ax_a.errorbar(eps, [100 * r["mala"] for r in a["rows"]], yerr=[200 * r["mala_se"] for r in a["rows"]],
                  fmt="s", capsize=2, label="w²: MALA (sampled) — no bias")
    sing = a["singular"]
    ax_a.errorbar([r["step_size"] for r in sing], [100 * r["rel"] for r in sing],
                  yerr=[200 * r["se"] for r in sing], fmt="^", capsize=2, alpha=0.7,
                  label="x²y⁴: SGLD (calibration grid)")
    ax_a.axvline(a["singular_fit"]["chosen"], color="tab:red", ls=":", lw=1,
                 label="x²y⁴: calibrated ε (bias ≤ 1%)")
    ax_a.axhline(0, color="gray", lw=0.6)
    ax_a.set_xscale("log")
    ax_a.set(xlabel="step size ε", ylabel="relative error of λ̂ [%] (bars 2 MCSE)",
             title=f"(a) step size: t = {cfg.nbeta:g}, γ = {cfg.localization:g}")
    ax_a.legend(fontsize=7)

    loc = report["localization"]
    for label, curve in loc["curves"].items():
        ax_b.plot(loc["gammas"], curve, label=label)
    ax_b.axhline(1, color="gray", lw=0.6)
    ax_b.set_xscale("log")
    ax_b.set(xlabel="localization γ", ylabel="exact t E[K] / λ",
             title=f"(b) localization pulls λ̂ down (t = {cfg.nbeta:g}, exact)")
    ax_b.legend(fontsize=7)

    nb = report["nbeta"]
    for label, curve in nb["curves"].items():
        ax_c.plot(nb["nbetas"], curve, label=label)
    ax_c.axhline(1, color="gray", lw=0.6)
    ax_c.set_xscale("log")
    ax_c.set(xlabel="t = nβ", ylabel="exact t E[K] / λ",
             title="(c) finite nβ: m = 2 converges like 1/log t (box [−1,1]², γ = 0, exact)")
    ax_c.legend(fontsize=7)

    mb = report["minibatch"]
    for eps_d in sorted({r["step_size"] for r in mb["rows"]}):
        rows = [r for r in mb["rows"] if r["step_size"] == eps_d and r["batch_size"] is not None]
        full = [r for r in mb["rows"] if r["step_size"] == eps_d and r["batch_size"] is None][0]
        bs = [r["batch_size"] for r in rows]
        line, = ax_d.plot(bs, [100 * r["exact_rel"] for r in rows], "-", label=f"ε = {eps_d:g}: exact chain")
        ax_d.errorbar(bs, [100 * r["sampled_rel"] for r in rows],
                      yerr=[200 * r["mcse"] / mb["target"] for r in rows], fmt="o", capsize=2,
                      color=line.get_color(), label=f"ε = {eps_d:g}: sampled")
        ax_d.axhline(100 * full["exact_rel"], color=line.get_color(), ls="--", lw=0.8,
                     label=f"ε = {eps_d:g}: full batch (exact)")
    ax_d.set_xscale("log")
    ax_d.set(xlabel="batch size b", ylabel="relative error of λ̂ vs ε → 0 value [%]",
             title=f"(d) minibatches: 1-D regression, n = {mb['n']}, nβ = n/log n")
    ax_d.legend(fontsize=7)
    fig.suptitle("Error budget of the LLC estimator on exact cases")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
