"""Baker et al. (arXiv 2504.18274): response matrix of component observables × data sources and its principal components, on a 3→3→3 deep linear network.

One SGLD run at ``w*`` records, at every draw, the observables (the end-to-end map ``BA`` entry by
entry, and a displacement observable per layer) and the loss differences ``ΔL_j = L_{q_j} − L_q``
of twelve data sources; it gives the LLC and the response matrix ``∂_h E[φ] = nβ χ`` with
``χ = −Cov(φ, ΔL)`` (fluctuation–dissipation), with an MCSE per entry. Beside it, the independent
check: two more runs at ``L ± δ ΔL_j`` for a few sources give finite differences of posterior
means, which must agree with ``nβ χ`` within their combined Monte-Carlo error. Per-layer LLCs come
from weight-restricted sampling (one layer free, the other fixed at ``w*``).

Model. ``f(x) = B A x`` with ``A, B ∈ R^{3×3}`` (18 parameters) and the population loss of
Gaussian inputs ``x ~ N(0, S)`` with teacher ``M`` (noise constants dropped, they do not move
covariances): ``L_{S,M}(A, B) = ½ tr((BA − M) S (BA − M)ᵀ)``. The truth ``M* = U diag(1, ½, 0) Vᵀ``
(``U, V`` fixed random rotations) has rank 2, and ``w*`` (``A* = diag(1, 1, 0) Vᵀ``,
``B* = U diag(1, ½, 0)``) is a singular point: at first order the product map cannot move along
the normal direction ``N = u₃ v₃ᵀ`` of the rank-2 matrices.

What the principal components find. The block of the response matrix of the map entries
``(BA)_ij`` to the teacher shifts ``M+E_kl`` is ``nβ s Cov(BA)``, symmetric. Its weakest
principal direction should be ``N``: the posterior is squeezed least along the singular
direction (a regular direction gives ``t Var ≈ 1``, here much less), although ``N`` is a dense
matrix in the entry basis, so no single entry shows it. The run prints the overlap.

Data sources (the base ``q`` is ``S = I``, teacher ``M*``):
* ``x||e_k`` (k = 1..3): all input variance along axis k, ``S = 3 e_k e_kᵀ``, same teacher;
* ``M+E_ij`` (9 of them): isotropic inputs, teacher ``M* + s E_ij`` (one entry shifted by s).

Run: ``python -m experiments.susceptibility_response [--quick]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.regular import localized_llc
from toymodels import component_llcs, finite_difference_response, susceptibilities


@dataclass
class Config(ExperimentConfig):
    """Hyperparameters of the response-matrix experiment (see the module docstring)."""

    seed: int = 0
    """seed of every sampling run."""

    nbeta: float = 30.0
    """nβ, inverse temperature times sample size."""
    localization: float = 5.0
    """γ, the pull towards w*; it confines the flat (A → AG, B → BG⁻¹) directions."""
    step_size: float = 1e-3
    """ε, SGLD step size (noise variance); ε·(largest curvature)/4 ≈ 2% variance inflation."""
    num_chains: int = 256
    """chains, run as one tensor."""
    num_burnin_steps: int = 1000
    """steps discarded at the start of every chain."""
    num_draws: int = 500
    """draws recorded per chain after burn-in."""
    num_steps_bw_draws: int = 4
    """SGLD steps between recorded draws (draws closer than the autocorrelation time add little
    information but cost post-processing)."""
    teacher_shift: float = 1.0
    """s, the size of the teacher-entry shift of the sources M+E_ij."""
    fd_delta: float = 0.05
    """δ of the central finite difference at L ± δ ΔL."""
    fd_sources: tuple[str, ...] = ("M+E11", "M+E33", "x||e1")
    """sources whose Jacobian column is checked by finite differences."""
    layer_llc_draws: int = 250
    """draws per chain of the weight-restricted (per-layer) LLC runs."""
    truth_seed: int = 1
    """seed of the rotations U, V of the truth."""

    QUICK = dict(num_chains=32, num_burnin_steps=200, num_draws=150, layer_llc_draws=100,
                 fd_sources=("M+E11",))


# --------------------------------------------------------------------------- the model

EYE = torch.eye(3, dtype=torch.float64)


@dataclass(frozen=True)
class Truth:
    """The rank-2 teacher ``M* = U diag(1, ½, 0) Vᵀ`` and the point ``w* = (A*, B*)``."""

    M: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    normal: torch.Tensor  #: u₃ v₃ᵀ, the unit normal direction of the rank-2 matrices at M*

    @property
    def w_star(self) -> torch.Tensor:
        return torch.cat([self.A.reshape(-1), self.B.reshape(-1)])  # layout: A row-major, then B


def make_truth(seed: int) -> Truth:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    u, v = torch.tensor(u), torch.tensor(v)
    a = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)) @ v.T
    b = u @ torch.diag(torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    return Truth(M=b @ a, A=a, B=b, normal=torch.outer(u[:, 2], v[:, 2]))


def _layers(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, 18) -> A, B of shape (…, 3, 3)."""
    return w[..., :9].unflatten(-1, (3, 3)), w[..., 9:].unflatten(-1, (3, 3))


def make_loss(truth: Truth):
    """L_q = ½ ||BA − M*||²_F (isotropic inputs), for one vector or a (chains, 18) batch."""

    def loss(w: torch.Tensor) -> torch.Tensor:
        a, b = _layers(w)
        diff = b @ a - truth.M
        return 0.5 * (diff * diff).sum((-1, -2))

    loss.batched = True  # type: ignore[attr-defined]  # the sampler skips vmap
    return loss


def source_names() -> list[str]:
    return [f"x||e{k + 1}" for k in range(3)] + [f"M+E{i + 1}{j + 1}" for i in range(3) for j in range(3)]


def source_deltas(truth: Truth, shift: float):
    """``w ↦ (ΔL_j(w))_j`` for all twelve sources, one vector (one vmapped call per draw)."""
    input_covs = torch.stack([3.0 * torch.outer(EYE[k], EYE[k]) for k in range(3)])  # (3, 3, 3)

    def deltas(w: torch.Tensor) -> torch.Tensor:
        a, b = _layers(w)
        diff = b @ a - truth.M
        base = 0.5 * (diff * diff).sum()
        # ½ tr(D S_k Dᵀ) − ½ tr(D Dᵀ)
        inputs = 0.5 * torch.einsum("ij,kjl,il->k", diff, input_covs, diff) - base
        # ½ ||D − s E_ij||² − ½ ||D||² = −s D_ij + s²/2
        teachers = -shift * diff.reshape(-1) + 0.5 * shift * shift
        return torch.cat([inputs, teachers])

    return deltas


def source_delta(truth: Truth, name: str, shift: float):
    index = source_names().index(name)
    deltas = source_deltas(truth, shift)
    return lambda w: deltas(w)[index]


def observable_names() -> list[str]:
    return [f"(BA){i + 1}{j + 1}" for i in range(3) for j in range(3)] + ["|dA|²/2", "|dB|²/2"]


def make_observables(truth: Truth):
    """The end-to-end map entry by entry, then ½||A − A*||² and ½||B − B*||² (one per layer)."""

    def observables(w: torch.Tensor) -> torch.Tensor:
        a, b = _layers(w)
        return torch.cat([(b @ a).reshape(-1), 0.5 * ((a - truth.A) ** 2).sum()[None],
                          0.5 * ((b - truth.B) ** 2).sum()[None]])

    return observables


# --------------------------------------------------------------------------- experiment


@uses_threads
def main(cfg: Config) -> dict:
    """Run the experiment in float64 (the default dtype is restored afterwards)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _main(cfg)
    finally:
        torch.set_default_dtype(previous)


def _main(cfg: Config) -> dict:
    unknown = [s for s in cfg.fd_sources if s not in source_names()]
    if unknown:
        raise ValueError(f"unknown fd_sources {unknown}; choose from {source_names()}")
    truth = make_truth(cfg.truth_seed)
    loss, observables = make_loss(truth), make_observables(truth)
    sampler = dict(init=truth.w_star, nbeta=cfg.nbeta, localization=cfg.localization,
                   step_size=cfg.step_size, num_chains=cfg.num_chains,
                   num_burnin_steps=cfg.num_burnin_steps, num_draws=cfg.num_draws,
                   num_steps_bw_draws=cfg.num_steps_bw_draws, seed=cfg.seed, progress=False)
    obs_names, src_names = observable_names(), source_names()

    # one run: the LLC and the response matrix
    start, start_cpu = time.perf_counter(), time.process_time()
    result = susceptibilities(loss, observables={"phi": observables},
                              perturbations={"dL": source_deltas(truth, cfg.teacher_shift)}, **sampler)
    seconds_main = time.perf_counter() - start
    cpu_seconds_main = time.process_time() - start_cpu
    result.observable_names, result.perturbation_names = obs_names, src_names
    pcs = result.principal_components(centered=True)

    # the map block: nβ s Cov(BA), whose weakest direction should be the normal direction N
    block = result.select(obs_names[:9], src_names[3:])
    block_pcs = block.principal_components(centered=False)
    weakest = block_pcs.loadings[-1]
    normal_overlap = float(abs(weakest @ truth.normal.reshape(-1).numpy()))
    block_singular_values = block.response_scale * block_pcs.singular_values  # of nβχ
    normal_response = float(truth.normal.reshape(-1).numpy() @ block.jacobian
                            @ truth.normal.reshape(-1).numpy())

    # the independent check: finite differences of posterior means at L ± δ ΔL_j
    fd_rows = []
    for src in cfg.fd_sources:
        fd = finite_difference_response(loss, observables={"phi": observables},
                                        perturbation=source_delta(truth, src, cfg.teacher_shift),
                                        delta=cfg.fd_delta, **sampler)
        b = src_names.index(src)
        for a, obs in enumerate(obs_names):
            combined = math.hypot(fd.mcse[a], result.jacobian_mcse[a, b])
            fd_rows.append(dict(observable=obs, source=src, covariance=float(result.jacobian[a, b]),
                                covariance_mcse=float(result.jacobian_mcse[a, b]),
                                finite_difference=float(fd.derivative[a]), fd_mcse=float(fd.mcse[a]),
                                z=float((fd.derivative[a] - result.jacobian[a, b]) / combined)))

    # weight-restricted sampling: per-layer LLCs, the other layer fixed at w*
    masks = {"A (layer 1)": torch.arange(18) < 9, "B (layer 2)": torch.arange(18) >= 9}
    layer_llcs = component_llcs(loss, masks, **{**sampler, "num_draws": cfg.layer_llc_draws})
    # exact: in one layer the loss is quadratic, ½||B*(A − A*)||² or ½||(B − B*)A*||², with Hessian
    # (B*ᵀB*) ⊗ I or I ⊗ (A*A*ᵀ), so the localised LLC is theory.regular.localized_llc of it
    b_star, a_star, eye = truth.B.numpy(), truth.A.numpy(), np.eye(3)
    layer_hessians = {"A (layer 1)": np.kron(b_star.T @ b_star, eye),
                      "B (layer 2)": np.kron(eye, a_star @ a_star.T)}
    layer_exact = {k: localized_llc(np.linalg.eigvalsh(h), nbeta=cfg.nbeta,
                                    localization=cfg.localization)
                   for k, h in layer_hessians.items()}

    _print_tables(result, pcs, block_singular_values, normal_overlap, normal_response, fd_rows,
                  layer_llcs, layer_exact, seconds_main, cpu_seconds_main)
    out = {
        "config": asdict(cfg),
        "seconds_main_run": seconds_main,
        "cpu_seconds_main_run": cpu_seconds_main,
        "llc": result.llc.to_dict(),
        "observables": obs_names,
        "sources": src_names,
        "jacobian": result.jacobian.tolist(),
        "jacobian_mcse": result.jacobian_mcse.tolist(),
        "chi": result.chi.tolist(),
        "chi_mcse": result.mcse.tolist(),
        "principal_components": pcs.to_dict(),
        "map_block_singular_values": block_singular_values.tolist(),
        "weakest_direction_overlap_with_normal": normal_overlap,
        "response_along_normal": normal_response,
        "finite_difference_check": fd_rows,
        "fd_max_abs_z": max(abs(r["z"]) for r in fd_rows),
        "layer_llcs": {k: {"llc_mean": v.llc_mean, "mcse": v.mcse, "exact": layer_exact[k]}
                       for k, v in layer_llcs.items()},
    }
    paths = output_paths(cfg, "susceptibility_response")
    write_json(paths.json, out)
    _figure(result, pcs, block_singular_values, block_pcs.loadings, truth.normal.numpy(),
            normal_overlap, fd_rows, paths.figure)
    return out


def _print_tables(result, pcs, block_singular_values, normal_overlap, normal_response, fd_rows,
                  layer_llcs, layer_exact, seconds_main, cpu_seconds_main) -> None:
    print(f"one run ({seconds_main:.1f} s wall, {cpu_seconds_main:.1f} s CPU): {result.llc.summary()}")
    print(f"response matrix ∂E[φ]/∂h = nβχ ({len(result.observable_names)} × "
          f"{len(result.perturbation_names)}), entries ± MCSE:")
    print(result.table(max_cols=12, jacobian=True))
    ratios = ", ".join(f"{r:.2f}" for r in pcs.explained_variance_ratio[:4])
    print(f"principal components (centred over sources): explained variance {ratios}")
    for k in range(min(2, len(pcs.singular_values))):
        top = np.argsort(-np.abs(pcs.loadings[k]))[:4]
        print(f"  PC{k + 1} loads on " + ", ".join(
            f"{pcs.observable_names[i]} {pcs.loadings[k, i]:+.2f}" for i in top))
    values = ", ".join(f"{v:.2f}" for v in block_singular_values)
    print(f"map block (BA)_ij × M+E_kl = nβ s Cov(BA): singular values {values}")
    print(f"  weakest direction vs the normal u3 v3ᵀ of the rank-2 truth: overlap "
          f"{normal_overlap:.3f}; response along it {normal_response:.3f} (a regular direction ≈ 1)")
    print("finite-difference check (E_{+δ}[φ] − E_{−δ}[φ])/2δ against nβχ:")
    print(f"  {'observable':<10} {'source':<8} {'nβχ ± MCSE':>20} {'FD ± MCSE':>20} {'z':>6}")
    for r in fd_rows:
        print(f"  {r['observable']:<10} {r['source']:<8} "
              f"{r['covariance']:>+11.4f} ± {r['covariance_mcse']:<6.4f} "
              f"{r['finite_difference']:>+11.4f} ± {r['fd_mcse']:<6.4f} {r['z']:>+6.2f}")
    print(f"  max |z| = {max(abs(r['z']) for r in fd_rows):.2f} over {len(fd_rows)} entries")
    print("weight-restricted LLCs (the other layer fixed at w*): " + "; ".join(
        f"{k}: {v.llc_mean:.3f} ± {v.mcse:.3f} (exact {layer_exact[k]:.3f})"
        for k, v in layer_llcs.items()))


def _figure(result, pcs, block_singular_values, block_loadings, normal, normal_overlap, fd_rows,
            path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    jac = result.jacobian
    lim = float(np.abs(jac).max())
    im = ax.imshow(jac, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(result.perturbation_names)), result.perturbation_names, rotation=60,
                  fontsize=8)
    ax.set_yticks(range(len(result.observable_names)), result.observable_names, fontsize=8)
    for a in range(jac.shape[0]):
        for b in range(jac.shape[1]):
            if abs(jac[a, b]) < 2 * result.jacobian_mcse[a, b]:
                ax.text(b, a, "·", ha="center", va="center", fontsize=8, color="0.4")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"response ∂E[φ]/∂h = nβχ (· : |entry| < 2 MCSE); λ̂ = {result.llc.llc_mean:.2f}")

    ax = axes[0, 1]
    k = len(pcs.explained_variance_ratio)
    ax.bar(np.arange(1, k + 1) - 0.2, pcs.explained_variance_ratio, width=0.4,
           label="full matrix, centred: variance ratio")
    kb = len(block_singular_values)
    ax.bar(np.arange(1, kb + 1) + 0.2, block_singular_values, width=0.4,
           label="map block nβ s Cov(BA): singular values")
    ax.set_xlabel("principal component")
    ax.legend(fontsize=8)
    ax.set_title("principal components of the response")

    ax = axes[1, 0]
    # the weakest principal direction of the map block beside the normal direction N = u₃v₃ᵀ
    weakest = block_loadings[-1].reshape(3, 3)
    weakest = weakest * np.sign(np.sum(weakest * normal))  # a direction: fix its sign to N's
    panel = np.full((3, 7), np.nan)
    panel[:, :3], panel[:, 4:] = weakest, normal
    ax.imshow(panel, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks([1, 5], ["weakest PC of nβ s Cov(BA)", "normal u₃v₃ᵀ of the truth"])
    ax.set_yticks([])
    ax.set_title(f"the response finds the singular direction (overlap {normal_overlap:.3f})")

    ax = axes[1, 1]
    cov = np.array([r["covariance"] for r in fd_rows])
    fd = np.array([r["finite_difference"] for r in fd_rows])
    ax.errorbar(cov, fd, xerr=[r["covariance_mcse"] for r in fd_rows],
                yerr=[r["fd_mcse"] for r in fd_rows], fmt="o", ms=3)
    lo, hi = float(min(cov.min(), fd.min())), float(max(cov.max(), fd.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("−nβ Cov(φ, ΔL) at h = 0")
    ax.set_ylabel("(E₊δ[φ] − E₋δ[φ]) / 2δ")
    ax.set_title("fluctuation–dissipation check (±1 MCSE)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
