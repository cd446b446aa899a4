"""Patterning a toy model of superposition (Adam, Hoogland & Murfet 2026; Wang & Murfet arXiv 2601.13548): reweight how often each feature occurs along dh = J⁺dμ so that a chosen feature drops out of the k-gon, check the first-order prediction against a finite difference of sampled posterior means, and show the final k-gons of many gradient-descent runs before and after.

Model: the Chen et al. TMS (arXiv 2310.06301), ``c`` features, two hidden dimensions, input
``x = μ e_i``, ``μ ~ U[0, 1]``. The base data draw the feature ``i`` uniformly; a reweighted
mixture draws it with probabilities ``p = (1 − Σ h)/c · 1 + h``, i.e. sources ``q_i`` = "feature
``i`` only", and the loss is ``L_p = Σ_i p_i ℓ_i`` with ``ℓ_i(w) = E_μ ||μ e_i − f(μ e_i)||²``
(the per-feature terms of the population loss), integrated by the midpoint rule on
``quadrature_points`` values of ``μ``: the data are that grid, whose uniform mixture differs from
the exact ``toymodels.models.tms.population_loss`` by the printed amount (second order in the
grid step; 64 points keep the many-seed gradient descent within the time budget, and every
comparison below uses the same grid on both sides).

Steps.
1. Posterior at the ``c``-gon of ``theory.tms.kgon_critical_point`` (localised, tempered);
   observables ``φ_i = ||W_i||²`` (the squared length of each feature's column), sources ``q_i``:
   ``J = nβ χ`` with ``χ = −Cov(φ_i, ℓ_j − L)`` (``toymodels.susceptibilities``).
2. Target ``dμ``: shrink the last feature's column by ``target_change`` and leave the others
   (``dμ_i = 0``); ``dh`` from ``toymodels.minimum_norm_intervention`` (the
   closest mixture in the simplex).
3. First-order check: ``finite_difference_response`` samples the posteriors of ``L ± δ ΔL_dh``,
   ``ΔL_dh = Σ_j dh_j (ℓ_j − L)``, and compares ``(E₊ − E₋)/2δ`` with ``J dh`` (MCSE of the
   combined perturbation on the same draws) entry by entry.
4. Gradient descent on the exact loss from ``num_inits`` random initialisations (one batched
   tensor) on the base and on the patterned mixture, the final ``k^{σ+}``-gon of each
   (``toymodels.models.tms.kgon_labels``) and whether the targeted feature is a vertex.

Run: ``python -m experiments.tms_patterning [--quick]``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.tms import kgon_critical_point
from toymodels import finite_difference_response, minimum_norm_intervention, susceptibilities
from toymodels.models.tms import (
    convex_hull_vertex_mask,
    empirical_loss,
    flatten_params,
    kgon_labels,
    population_loss,
    unflatten_params,
)


@dataclass
class Config(ExperimentConfig):
    """Settings of the TMS patterning experiment (module docstring)."""

    seed: int = 0
    """seed of the SGLD runs and of the gradient-descent initialisations."""
    num_features: int = 6
    quadrature_points: int = 64
    nbeta: float = 300.0
    localization: float = 30.0
    step_size: float = 2e-4
    num_chains: int = 64
    num_burnin_steps: int = 1000
    num_draws: int = 400
    num_steps_bw_draws: int = 2
    target_change: float = 0.1
    """how much the targeted feature's squared column length should shrink (posterior mean)."""
    fd_delta: float = 0.25
    """δ of the finite difference, in units of the patterned step dh."""
    num_inits: int = 128
    gd_steps: int = 3000
    gd_lr: float = 0.05
    init_scale: float = 0.5

    QUICK = dict(num_chains=8, num_burnin_steps=50, num_draws=40, num_inits=16, gd_steps=100,
                 quadrature_points=32)


def _nodes(c: int, points: int) -> torch.Tensor:
    """``(c, points, c)``: inputs ``μ_k e_i`` at the midpoints ``μ_k = (k + ½)/points``."""
    mu = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    return torch.eye(c, dtype=torch.float64)[:, None, :] * mu[None, :, None]


def per_feature_losses(c: int, points: int):
    """``w (..., 3c) ↦ (ℓ_1, …, ℓ_c) (..., c)``, ``ℓ_i = ∫_0^1 ||μe_i − f(μe_i)||² dμ`` by the
    midpoint rule (the model's own forward pass, ``empirical_loss``)."""
    x = _nodes(c, points)

    def losses(w: torch.Tensor) -> torch.Tensor:
        return empirical_loss(w.unsqueeze(-2), x)

    return losses


def mixture_loss(c: int, points: int, probabilities: torch.Tensor):
    """``L_p(w) = Σ_i p_i ℓ_i(w)`` for feature probabilities ``p``; batched over leading dims."""
    losses = per_feature_losses(c, points)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return losses(w) @ probabilities

    loss.batched = True  # type: ignore[attr-defined]
    return loss


def _probabilities(c: int, h: np.ndarray) -> torch.Tensor:
    return torch.tensor((1 - h.sum()) / c + h, dtype=torch.float64)


def _descend(loss, init: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    w = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss(w).sum().backward()
        opt.step()
    return w.detach()


def _kgon_summary(w: torch.Tensor, target: int) -> dict:
    labels = kgon_labels(w)
    W, _ = unflatten_params(w)
    vertex = convex_hull_vertex_mask(W.transpose(-1, -2))
    return {"labels": dict(sorted(Counter(labels.tolist()).items())),
            "target_is_vertex": float(vertex[:, target].double().mean()),
            "mean_vertices": float(vertex.sum(-1).double().mean())}


@uses_threads
def main(cfg: Config) -> dict:
    start = time.perf_counter()
    c, target = cfg.num_features, cfg.num_features - 1
    W, b = kgon_critical_point(c, c)
    center = flatten_params(torch.tensor(W), torch.tensor(b))
    losses = per_feature_losses(c, cfg.quadrature_points)
    uniform = torch.full((c,), 1.0 / c, dtype=torch.float64)
    base_loss = mixture_loss(c, cfg.quadrature_points, uniform)
    check = torch.randn(32, 3 * c, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    quadrature_error = float((base_loss(check) - population_loss(check)).abs().max())

    def observables(w):
        Wm, _ = unflatten_params(w)
        return (Wm * Wm).sum(-2)  # ||W_i||², (c,)

    def deltas(w):
        per = losses(w)
        return per - per @ uniform  # ℓ_j − L

    sampler = dict(init=center, nbeta=cfg.nbeta, localization=cfg.localization,
                   step_size=cfg.step_size, num_chains=cfg.num_chains,
                   num_burnin_steps=cfg.num_burnin_steps, num_draws=cfg.num_draws,
                   num_steps_bw_draws=cfg.num_steps_bw_draws, seed=cfg.seed, progress=False)
    result = susceptibilities(base_loss, observables={"norm2": observables},
                              perturbations={"feature": deltas}, **sampler)
    J, J_mcse = result.jacobian, result.jacobian_mcse

    dmu = np.zeros(c)
    dmu[target] = -cfg.target_change
    step = minimum_norm_intervention(J, dmu, strict=False)
    combined = result.combine(step.dh, names=["patterned"])
    predicted, predicted_mcse = combined.jacobian[:, 0], combined.jacobian_mcse[:, 0]

    # the finite difference of sampled posterior means along dh: L ± δ Σ_j dh_j ΔL_j
    dh_t = torch.tensor(step.dh, dtype=torch.float64)

    def patterned_delta(w):
        return deltas(w) @ dh_t

    fd = finite_difference_response(base_loss, observables={"norm2": observables},
                                    perturbation=patterned_delta, delta=cfg.fd_delta, **sampler)
    z = (fd.derivative - predicted) / np.hypot(fd.mcse, predicted_mcse)

    # gradient descent from many initialisations, base and patterned
    gen = torch.Generator().manual_seed(cfg.seed)
    inits = cfg.init_scale * torch.randn(cfg.num_inits, 3 * c, dtype=torch.float64, generator=gen)
    inits[:, 2 * c:] = 0.0  # biases start at 0
    p_patterned = _probabilities(c, step.weights)
    final_base = _descend(base_loss, inits, cfg.gd_steps, cfg.gd_lr)
    final_patterned = _descend(mixture_loss(c, cfg.quadrature_points, p_patterned), inits,
                               cfg.gd_steps, cfg.gd_lr)
    before, after = _kgon_summary(final_base, target), _kgon_summary(final_patterned, target)

    out = {
        "config": asdict(cfg),
        "quadrature_max_abs_error": quadrature_error,
        "llc": result.llc.to_dict(),
        "jacobian": J.tolist(),
        "jacobian_mcse": J_mcse.tolist(),
        "target": dmu.tolist(),
        "intervention": step.to_dict(),
        "feature_probabilities": p_patterned.tolist(),
        "predicted_change": predicted.tolist(),
        "predicted_change_mcse": predicted_mcse.tolist(),
        "finite_difference": fd.derivative.tolist(),
        "finite_difference_mcse": fd.mcse.tolist(),
        "z": z.tolist(),
        "max_abs_z": float(np.abs(z).max()),
        "kgons_before": before,
        "kgons_after": after,
        "seconds": time.perf_counter() - start,
    }
    _print(out, target)
    paths = output_paths(cfg, "tms_patterning")
    write_json(paths.json, out)
    _figure(out, target, paths.figure)
    return out


def _print(out: dict, target: int) -> None:
    print(f"midpoint rule vs the exact population loss: max |error| {out['quadrature_max_abs_error']:.2e}")
    print(f"λ̂ at the c-gon: {out['llc']['llc_mean']:.2f} ± {out['llc']['mcse']:.2f}")
    print(f"target dμ = {out['target']}; patterned feature probabilities "
          f"{np.round(out['feature_probabilities'], 4).tolist()} (residual {out['intervention']['residual']:.3f})")
    print(f"{'feature':>8} {'J dh ± MCSE':>20} {'finite difference ± MCSE':>26} {'z':>6}")
    for i, (p, pe, f, fe, z) in enumerate(zip(out["predicted_change"], out["predicted_change_mcse"],
                                              out["finite_difference"], out["finite_difference_mcse"], out["z"])):
        print(f"{i + 1:>8} {p:>+11.4f} ± {pe:<6.4f} {f:>+15.4f} ± {fe:<8.4f} {z:>+6.2f}")
    print(f"final k-gons before: {out['kgons_before']}")
    print(f"final k-gons after:  {out['kgons_after']}  ({out['seconds']:.0f} s)")


def _figure(out: dict, target: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    c = len(out["feature_probabilities"])
    ax.bar(np.arange(1, c + 1), out["feature_probabilities"], color="C1", label="patterned")
    ax.axhline(1 / c, color="k", ls="--", lw=1, label="base (uniform)")
    ax.set_xlabel("feature")
    ax.set_ylabel("probability")
    ax.legend(fontsize=8)
    ax.set_title("feature mixture from dh = J⁺dμ", fontsize=9)

    ax = axes[1]
    x = np.arange(1, c + 1)
    ax.errorbar(x - 0.1, out["predicted_change"], yerr=out["predicted_change_mcse"], fmt="o",
                label="J dh (susceptibilities)")
    ax.errorbar(x + 0.1, out["finite_difference"], yerr=out["finite_difference_mcse"], fmt="s",
                label="finite difference of posterior means")
    ax.plot(x, out["target"], "k_", ms=14, label="target dμ")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("feature i (observable ||W_i||²)")
    ax.legend(fontsize=8)
    ax.set_title(f"first-order prediction vs finite difference (max |z| = {out['max_abs_z']:.1f})",
                 fontsize=9)

    ax = axes[2]
    labels = sorted(set(out["kgons_before"]["labels"]) | set(out["kgons_after"]["labels"]))
    xb = np.arange(len(labels))
    n_b = sum(out["kgons_before"]["labels"].values())
    n_a = sum(out["kgons_after"]["labels"].values())
    ax.bar(xb - 0.2, [out["kgons_before"]["labels"].get(k, 0) / n_b for k in labels], 0.4, label="base")
    ax.bar(xb + 0.2, [out["kgons_after"]["labels"].get(k, 0) / n_a for k in labels], 0.4,
           label="patterned")
    ax.set_xticks(xb, labels)
    ax.set_xlabel("final k^{σ+}-gon")
    ax.legend(fontsize=8)
    ax.set_title(f"feature {target + 1} a vertex: {out['kgons_before']['target_is_vertex']:.2f} → "
                 f"{out['kgons_after']['target_is_vertex']:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
