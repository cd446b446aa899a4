"""Curvature of a deep linear network and the step-size and run-length rules built on it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from toymodels.estimators.llc_result import llc_from_trace
from toymodels.models.dln.data import DLNObjective, SufficientStatistics
from toymodels.models.dln.network import check_widths, product_matrix
from toymodels.sampling import SGLDHyperparameters, run_sgld


def gauss_newton_eigenvalues(widths: Sequence[int], w: torch.Tensor, input_cov: torch.Tensor,
                             noise_std: float = 1.0) -> torch.Tensor:
    """Eigenvalues (descending) of the Gauss–Newton matrix ``Jᵀ (I_N ⊗ Σ_xx) J / σ²`` at ``w``.

    ``J = ∂ vec P / ∂w``. At a point with ``P(w) = P*`` this is the Hessian of the population
    loss ``K``; its largest eigenvalue ``h_max`` sets the SGLD step size (``ε nβ h_max`` must
    stay small), and its positive eigenvalues are the regular directions' curvatures. Computed
    from the ``(N H_1)``-sized matrix ``Σ^{1/2} J Jᵀ Σ^{1/2}`` (same nonzero spectrum), so the
    cost is small even for ``d`` in the thousands. Returns the ``min(N H_1, d)`` eigenvalues.
    """
    h = check_widths(widths)
    w = torch.as_tensor(w).double()
    jac = torch.func.jacrev(lambda v: product_matrix(v, h).reshape(-1))(w)  # (N H_1, d)
    evals, evecs = torch.linalg.eigh(torch.as_tensor(input_cov).double())
    root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    # vec is row-major: entry (i, j) of P is index i H_1 + j; right-multiplying D by S^{1/2} acts
    # on the j index, i.e. by I_N ⊗ S^{1/2} on vec D
    weighted = torch.einsum("ijd,jk->ikd", jac.reshape(h[-1], h[0], -1), root).reshape(h[-1] * h[0], -1)
    gram = weighted @ weighted.T / noise_std**2
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0)


#: above this many Jacobian entries (``N H_1 · d``, float64: 32 MiB) the largest Gauss–Newton
#: eigenvalue is found matrix-free (:func:`gauss_newton_top_eigenvalue`); the dense Jacobian of
#: a depth-4 DLN of width 160 (10⁵ parameters) would take 21 GB
DENSE_JACOBIAN_MAX_ENTRIES = 2**22


def gauss_newton_top_eigenvalue(widths: Sequence[int], w: torch.Tensor, input_cov: torch.Tensor,
                                noise_std: float = 1.0, *, dense: bool | None = None) -> float:
    """The largest eigenvalue ``h_max`` of ``G = Jᵀ (I_N ⊗ Σ_xx) J / σ²`` at ``w``
    (:func:`gauss_newton_eigenvalues`), without forming ``J`` when it is large.

    Matrix-free: ``G v = J*ᵀ(J v · Σ_xx) / σ²`` from one Jacobian–vector product (``J v = dP``,
    the change of the end-to-end matrix) and one vector–Jacobian product per application, and
    the top eigenvalue by Lanczos iteration (ARPACK through ``scipy.sparse.linalg.eigsh``, from a
    fixed start vector, so the result is reproducible). Memory ``O(d)``; each application costs
    about two forward passes of the product. ``dense=None`` picks the dense spectrum for small
    problems (at most :data:`DENSE_JACOBIAN_MAX_ENTRIES` Jacobian entries).
    """
    h = check_widths(widths)
    w = torch.as_tensor(w).double()
    d = w.numel()
    if dense is None:
        dense = h[-1] * h[0] * d <= DENSE_JACOBIAN_MAX_ENTRIES
    if dense or d < 3:  # Lanczos needs a few dimensions to work in
        return float(gauss_newton_eigenvalues(h, w, input_cov, noise_std)[0])
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    cov = torch.as_tensor(input_cov).double()

    def end_to_end(v: torch.Tensor) -> torch.Tensor:
        return product_matrix(v, h).reshape(h[-1], h[0])

    _, pullback = torch.func.vjp(end_to_end, w)

    def apply(v: np.ndarray) -> np.ndarray:
        tangent = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        with warnings.catch_warnings():
            # forward-mode AD loads torch's own decompositions through torch.jit.script, which
            # warns of its deprecation: not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            _, dp = torch.func.jvp(end_to_end, (w,), (tangent,))
        (out,) = pullback(dp @ cov)
        return (out / noise_std**2).numpy()

    start = np.random.default_rng(0).standard_normal(d)
    top = eigsh(LinearOperator((d, d), matvec=apply, dtype=np.float64), k=1, which="LA", v0=start,
                return_eigenvectors=False)
    return max(float(top[0]), 0.0)


def dln_step_size(widths: Sequence[int], center: torch.Tensor, input_moment: torch.Tensor, *,
                  nbeta: float, noise_std: float = 1.0, step_fraction: float = 0.1
                  ) -> tuple[float, float]:
    """The SGLD step size ``ε = step_fraction / (nβ h_ref)`` for a DLN at ``center``; returns
    ``(ε, h_ref)``.

    ``h_ref = max(h_max, L ||S|| / σ²)``: ``h_max`` is the largest Gauss–Newton eigenvalue at
    ``center`` (:func:`gauss_newton_top_eigenvalue`: matrix-free for large networks), the stiffest regular direction; an Euler step
    biases that direction's share of ``E[nβ L]`` by the factor ``1/(1 − ε nβ h/4)``, so
    ``step_fraction = 0.1`` costs at most 2.5% there (and less on average). The floor
    ``L ||S||/σ²`` is ``h_max`` of a balanced network with unit end-to-end singular value; it
    governs points whose own curvature is small or zero (rank 0, where ``w* = 0``): there the
    chains spread along the flat directions of ``{P(w) = P*}`` to weights of order ``1/sqrt(γ)``,
    where products of order-one layers set the stiffness.
    """
    h = check_widths(widths)
    if not (0 < step_fraction <= 1):
        raise ValueError(f"step_fraction must be in (0, 1] (0.1 is a good default), got {step_fraction!r}")
    if not nbeta > 0:
        raise ValueError(f"nbeta must be > 0, got {nbeta!r}")
    S = torch.as_tensor(input_moment).double()
    h_max = gauss_newton_top_eigenvalue(h, center, S, noise_std)
    floor = (len(h) - 1) * float(torch.linalg.matrix_norm(S, ord=2)) / noise_std**2
    h_ref = max(h_max, floor)
    return step_fraction / (nbeta * h_ref), h_ref


SAMPLERS = ("mala", "sgld")


def estimate_dln_llc(widths: Sequence[int], center: torch.Tensor, stats: SufficientStatistics, *,
                     nbeta: float, noise_std: float = 1.0, localization: float = 1.0,
                     sampler: str = "mala", step_fraction: float = 0.1, diffusion_time: float = 0.2,
                     burnin_fraction: float = 0.5, num_chains: int = 8,
                     num_steps_bw_draws: int = 1, seed: int = 0, progress: bool = False):
    """λ̂ at ``center`` for the sufficient-statistics NLL, with the DLN step-size and length rules.

    ``ε`` from :func:`dln_step_size`; the run lasts ``k = ceil(diffusion_time / ε)`` steps, i.e. a
    fixed *diffusion time* ``ε k`` (the variance a free coordinate accumulates), the first
    ``burnin_fraction`` of it discarded: the dead units of a DLN reach their inner equilibrium
    (weights of order ``(nβ)^{-1/(2L)}``) after a diffusion time of order 0.1 whatever ``ε`` is.

    ``sampler="mala"`` (default) runs :class:`toymodels.MALA` at that fixed ε (the SGLD
    proposal with a Metropolis test, whose stationary law is exact; a DLN needs it: chains spread
    along the flat directions of the fiber ``{P(w) = P*}`` into regions many times stiffer than
    ``w*``, where a step size set at ``w*`` biases SGLD upwards); ``"sgld"`` runs plain SGLD (:func:`toymodels.run_sgld`), which
    with a step size set at ``w*`` over-estimates λ once chains reach the stiffer parts of the
    fiber (measured: +16% at a regular 5-layer teacher where MALA with the same ε is exact).
    Returns a :class:`toymodels.LLCResult`; for MALA, ``result.trace.records["accepted"]``
    holds the acceptance indicators (chains × draws).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not (diffusion_time > 0):
        raise ValueError(f"diffusion_time must be > 0, got {diffusion_time!r}")
    if not (0 <= burnin_fraction < 1):
        raise ValueError(f"burnin_fraction must be in [0, 1), got {burnin_fraction!r}")
    eps, _ = dln_step_size(widths, center, stats.input_moment, nbeta=nbeta, noise_std=noise_std,
                           step_fraction=step_fraction)
    total = max(2, math.ceil(diffusion_time / eps))
    burn = int(burnin_fraction * total)
    draws = max(1, (total - burn) // num_steps_bw_draws)
    objective = DLNObjective(widths, stats, center, noise_std)
    hyper = SGLDHyperparameters(eps, nbeta, localization)
    schedule = dict(num_chains=num_chains, num_draws=draws, num_burnin_steps=burn,
                    num_steps_bw_draws=num_steps_bw_draws, seed=seed)
    # one thread: the per-step tensors of a DLN objective are tiny (see run_sgld)
    trace = run_sgld(objective, hyper=hyper, progress=progress, sampler=sampler, num_threads=1,
                     **schedule)
    return llc_from_trace(trace, seed=seed, num_samples=stats.num_samples)
