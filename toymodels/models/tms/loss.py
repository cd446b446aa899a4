"""Toy models of superposition (TMS) in torch: the Chen et al. model, the Elhage et al. model,
a k-gon classifier, and the samplers the TMS experiments need.

Sources: Z. Chen, E. Lau, J. Mendel, S. Wei, D. Murfet, "Dynamical versus Bayesian phase
transitions in a toy model of superposition", arXiv:2310.06301 (2023) — the two-hidden-dimension
model, its closed-form loss, the k-gon critical points; N. Elhage et al., "Toy models of
superposition", Transformer Circuits Thread (2022) — the model with n features, m hidden
dimensions, sparsity and importance. The exact ground truth is in ``theory/tms.py``; nothing here
imports it (the two meet only in tests and experiments).

Chen model (``c`` features, 2 hidden dimensions, ``d = 3c`` parameters)
---------------------------------------------------------------------
``f(x; W, b) = ReLU(WᵀW x + b)``, ``W ∈ R^{2×c}``, ``b ∈ R^c``; inputs ``x = μ e_i`` with
``i ~ Uniform{1..c}``, ``μ ~ U[0, 1]``; loss ``E ||x − f(x)||²`` (summed over the ``c`` outputs,
not halved). Every function of the parameters takes the flat vector
``w = concat(W[0, :], W[1, :], b)`` over its **last** dimension (the order of ``theory.tms``), so
that ``(num_chains, 3c)`` or ``(R, C, 3c)`` batches go through without ``vmap``.

Exact population loss. With ``a_ji = W_j·W_i`` and ``[u0, u1]`` the part of ``[0, 1]`` where
``a_ji μ + b_j > 0``, each output ``j`` on input ``i`` contributes
``P(s, t) = ∫_{u0}^{u1} (sμ + t)² dμ = s² M2 + 2st M1 + t² M0`` (``M_k = ∫_{u0}^{u1} μ^k dμ``,
``s = a_ji``, ``t = b_j``), and the own output ``i = j`` contributes
``Q = ∫_0^1 (μ − R(sμ + t))² dμ = 1/3 − 2(s M2 + t M1) + P``. Hence
``L = (1/c) [Σ_{j,i} P(a_ji, b_j) + Σ_i (1/3 − 2(a_ii M2_ii + b_i M1_ii))]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.sampling import SamplingTrace
from toymodels.sampling import SGLDHyperparameters, sgld_step

__all__ = [
    "ChenTMS",
    "ElhageTMS",
    "PointLLC",
    "TemperedPosteriorSamples",
    "convex_hull_vertex_mask",
    "dimensions_per_feature",
    "empirical_loss",
    "empirical_loss_gradient",
    "empirical_loss_potential",
    "escaped_chains",
    "flatten_params",
    "kgon_label",
    "kgon_labels",
    "kgon_type",
    "llc_at_points",
    "num_features",
    "population_loss",
    "population_loss_and_grad",
    "sample_inputs",
    "sgd_trajectories",
    "tempered_posterior_mala",
    "train_elhage",
    "unflatten_params",
    "without_chains",
]


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def num_features(w: torch.Tensor) -> int:
    """``c = d / 3`` from the last dimension of a flat parameter tensor."""
    d = w.shape[-1]
    if d % 3 != 0 or d == 0:
        raise ValueError(
            f"the last dimension of w must be 3c (W's two rows, then the c biases); got {d}"
        )
    return d // 3


def unflatten_params(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w (..., 3c) -> (W (..., 2, c), b (..., c))``; views, no copy."""
    c = num_features(w)
    return w[..., : 2 * c].unflatten(-1, (2, c)), w[..., 2 * c :]


def flatten_params(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(W (..., 2, c), b (..., c)) -> w (..., 3c)`` = ``concat(W[0], W[1], b)``."""
    W = torch.as_tensor(W)
    b = torch.as_tensor(b, dtype=W.dtype)
    if W.dim() < 2 or W.shape[-2] != 2 or b.shape[-1] != W.shape[-1]:
        raise ValueError(
            f"W must have shape (..., 2, c) and b (..., c); got {tuple(W.shape)} and {tuple(b.shape)}"
        )
    return torch.cat([W.flatten(-2), b], dim=-1)


# ---------------------------------------------------------------------------------------------
# The exact population loss
# ---------------------------------------------------------------------------------------------


def _moments(s: torch.Tensor, t: torch.Tensor):
    """``M0, M1, M2`` of ``{μ ∈ [0, 1] : sμ + t > 0}``, elementwise, differentiable.

    The root ``r = -t/s`` is computed with ``s`` replaced by 1 where ``s = 0`` so that the unused
    branch of ``torch.where`` has a finite gradient (a NaN there would poison autograd).
    """
    zero = torch.zeros_like(s)
    one = torch.ones_like(s)
    nonzero = s != 0
    r = -t / torch.where(nonzero, s, one)
    r = r.clamp(0.0, 1.0)
    positive = s > 0
    # s > 0: [clamp(r), 1]; s < 0: [0, clamp(r)]; s = 0: [0, 1] if t > 0 else empty.
    flat_on = (t > 0).to(s.dtype)
    u0 = torch.where(positive, r, zero)
    u1 = torch.where(positive, one, torch.where(nonzero, r, flat_on))
    m0 = u1 - u0
    m1 = (u1 * u1 - u0 * u0) / 2
    m2 = (u1 * u1 * u1 - u0 * u0 * u0) / 3
    return m0, m1, m2


def _loss_and_grad(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form loss and gradient (no autograd): see :func:`population_loss_and_grad`."""
    c = num_features(w)
    W, b = unflatten_params(w)
    gram = W.transpose(-1, -2) @ W  # (..., c, c), gram[..., j, i] = W_j·W_i
    t = b.unsqueeze(-1).expand_as(gram)  # row j carries b_j
    m0, m1, m2 = _moments(gram, t)
    sm2_tm1 = gram * m2 + t * m1
    pair = gram * sm2_tm1 + t * (gram * m1 + t * m0)
    d_m1 = torch.diagonal(m1, dim1=-2, dim2=-1)
    d_m2 = torch.diagonal(m2, dim1=-2, dim2=-1)
    own = 1.0 / 3.0 - 2 * torch.diagonal(sm2_tm1, dim1=-2, dim2=-1)
    loss = (pair.sum((-1, -2)) + own.sum(-1)) / c
    # T_s, T_t of every pair (P off the diagonal; Q = P + own term on it): the moving end point
    # contributes nothing to first derivatives (the integrand vanishes there).
    g_s = 2 * sm2_tm1 - 2 * torch.diag_embed(d_m2)
    g_t = (2 * (gram * m1 + t * m0)).sum(-1) - 2 * d_m1
    grad_W = W @ (g_s + g_s.transpose(-1, -2)) / c
    return loss, torch.cat([grad_W.flatten(-2), g_t / c], dim=-1)


class _PopulationLoss(torch.autograd.Function):
    """``L`` with its closed-form gradient as the backward pass (vmap-able via the generated rule)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(w):
        return _loss_and_grad(w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)

    @staticmethod
    def backward(ctx, grad_loss, _grad_grad):
        (grad,) = ctx.saved_tensors
        return grad_loss.unsqueeze(-1) * grad


def population_loss(w: torch.Tensor) -> torch.Tensor:
    """Exact ``L(W, b) = E ||x − ReLU(WᵀWx + b)||²`` of the Chen model, over the last dim.

    ``w (..., 3c) -> (...)``. Closed form (module docstring; Chen et al. 2023):
    ``L = (1/c) [Σ_{j,i} P(a_ji, b_j) + Σ_i (1/3 − 2(a_ii M2 + b_i M1))]`` with
    ``P = s²M2 + 2stM1 + t²M0`` and ``M_k`` the moments of the part of [0, 1] where
    ``a_ji μ + b_j > 0``. Differentiable once by autograd, through the closed-form gradient of
    :func:`population_loss_and_grad` (about 3x fewer tensor operations than tracing the
    forward pass, which is what a sampler of an 18-parameter model pays for); on an activation
    boundary it is one one-sided value. ``batched = True``: the sampler calls it on
    ``(num_chains, d)`` directly.
    """
    return _PopulationLoss.apply(w)[0]


def population_loss_and_grad(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L(w)`` and ``∇L(w)`` in closed form, ``w (..., 3c) -> ((...), (..., 3c))``.

    ``∂L/∂W = (1/c) W (G + Gᵀ)`` with ``G_ji = T_s(a_ji, b_j)`` and ``∂L/∂b_j = (1/c) Σ_i
    T_t(a_ji, b_j)``, ``T = Q`` on the diagonal and ``P`` off it; ``P_s = 2(sM2 + tM1)``,
    ``P_t = 2(sM1 + tM0)``, ``Q_s = P_s − 2M2``, ``Q_t = P_t − 2M1`` (the moving end point of
    the integration interval adds nothing because the integrand vanishes there).
    """
    return _loss_and_grad(w)


def _population_loss_traced(w: torch.Tensor) -> torch.Tensor:
    """The same loss with every operation traced by autograd (twice differentiable; for tests)."""
    c = num_features(w)
    W, b = unflatten_params(w)
    gram = W.transpose(-1, -2) @ W
    t = b.unsqueeze(-1).expand_as(gram)
    m0, m1, m2 = _moments(gram, t)
    pair = gram * gram * m2 + 2 * gram * t * m1 + t * t * m0
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    own = 1.0 / 3.0 - 2 * (diag * torch.diagonal(m2, dim1=-2, dim2=-1)
                           + b * torch.diagonal(m1, dim1=-2, dim2=-1))
    return (pair.sum((-1, -2)) + own.sum(-1)) / c


population_loss.batched = True  # type: ignore[attr-defined]
population_loss.with_grad = _loss_and_grad  # type: ignore[attr-defined]  # for samplers that can use it


# ---------------------------------------------------------------------------------------------
# Sampled data
# ---------------------------------------------------------------------------------------------


def sample_inputs(c: int, n: int, *, shape: Sequence[int] = (), generator=None,
                  dtype=torch.float64) -> torch.Tensor:
    """``n`` inputs ``x = μ e_i`` (``i`` uniform, ``μ ~ U[0, 1]``) as a ``(*shape, n, c)`` tensor.

    ``shape`` gives independent datasets (e.g. one per SGD trajectory).
    """
    for name, value in (("c", c), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    shape = tuple(shape)
    which = torch.randint(c, (*shape, n), generator=generator)
    mu = torch.rand((*shape, n), generator=generator, dtype=dtype)
    return torch.nn.functional.one_hot(which, c).to(dtype) * mu.unsqueeze(-1)


def _forward(w: torch.Tensor, x: torch.Tensor):
    W, b = unflatten_params(w)
    hidden = x @ W.transpose(-1, -2)  # (..., n, 2)
    pre = hidden @ W + b.unsqueeze(-2)  # (..., n, c)
    return hidden, pre


def empirical_loss(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(1/n) Σ_k ||x_k − ReLU(WᵀW x_k + b)||²``: ``w (..., 3c)``, ``x (..., n, c)`` -> ``(...)``.

    Leading dimensions broadcast (``x (n, c)`` for one dataset shared by every chain, or
    ``(R, 1, n, c)`` against ``w (R, C, 3c)`` for one dataset per trajectory).
    """
    if x.shape[-1] != num_features(w):
        raise ValueError(f"x has {x.shape[-1]} features but w has c = {num_features(w)}")
    _, pre = _forward(w, x)
    return ((x - torch.relu(pre)) ** 2).sum(-1).mean(-1)


def empirical_loss_gradient(w: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`empirical_loss` and its gradient in ``w``, by the hand-written chain rule.

    ``w (R, 3c)``, ``x (R, n, c)`` (one minibatch per row). With ``h = xWᵀ``, ``z = hW + b`` and
    ``g = (2/n)(ReLU(z) − x)·1[z > 0]``: ``∂b = Σ_k g_k``, ``∂W = hᵀg + (gWᵀ)ᵀx``. About 3x
    faster than autograd for the tiny tensors of the SGD experiment (checked against autograd
    in the tests).
    """
    W, b = unflatten_params(w)
    hidden, pre = _forward(w, x)
    out = torch.relu(pre)
    resid = out - x
    loss = (resid * resid).sum(-1).mean(-1)
    g = (2.0 / x.shape[-2]) * resid * (pre > 0).to(w.dtype)
    grad_b = g.sum(-2)
    grad_W = hidden.transpose(-1, -2) @ g + (g @ W.transpose(-1, -2)).transpose(-1, -2) @ x
    return loss, torch.cat([grad_W.flatten(-2), grad_b], dim=-1)


def empirical_loss_potential(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The sampled-data loss on a fixed dataset ``x (n, c)`` as a batched potential of ``w``."""
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"x must be one dataset of shape (n, c); got {tuple(x.shape)}")

    def potential(w: torch.Tensor) -> torch.Tensor:
        return empirical_loss(w, x.to(w.dtype))

    potential.batched = True  # type: ignore[attr-defined]
    return potential


class ChenTMS(nn.Module):
    """``f(x) = ReLU(xWᵀW + b)`` as a module (for :func:`toymodels.estimate_llc` with data).

    Its parameters flatten (``named_parameters`` order: ``W`` then ``b``) to
    ``concat(W[0], W[1], b)``, the order of :func:`population_loss`. Use
    :meth:`loss_fn` (``||x − f(x)||²`` summed over outputs, mean over the batch) as ``loss_fn``
    with ``data=(x, x)``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor):
        super().__init__()
        W = torch.as_tensor(W)
        if W.dim() != 2 or W.shape[0] != 2:
            raise ValueError(f"W must have shape (2, c); got {tuple(W.shape)}")
        self.W = nn.Parameter(W.detach().clone())
        self.b = nn.Parameter(torch.as_tensor(b, dtype=W.dtype).detach().clone().reshape(-1))
        if self.b.shape[0] != W.shape[1]:
            raise ValueError(f"b must have length c = {W.shape[1]}; got {self.b.shape[0]}")

    @classmethod
    def from_flat(cls, w: torch.Tensor) -> "ChenTMS":
        W, b = unflatten_params(torch.as_tensor(w))
        return cls(W, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W.T @ self.W + self.b)

    @staticmethod
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((targets - outputs) ** 2).sum(-1).mean()


# ---------------------------------------------------------------------------------------------
# The k-gon classifier
# ---------------------------------------------------------------------------------------------


def convex_hull_vertex_mask(points: torch.Tensor, *, norm_tol: float = 0.1,
                            angle_tol: float = 1e-9) -> torch.Tensor:
    """Which of ``points (..., c, 2)`` are vertices of the convex hull of the non-negligible ones.

    Points with norm below ``norm_tol`` are zero columns: never vertices and not used. In the
    plane, ``p`` is a strict vertex of the hull of a finite set iff the directions from ``p`` to
    the other points leave an angular gap larger than ``π`` (a line through ``p`` then has every
    other point strictly on one side); a gap of exactly ``π`` puts ``p`` on an edge. The test is
    sort-and-diff over ``(..., c, c−1)`` angles, so it vectorises over many parameters.
    """
    c = points.shape[-2]
    norms = torch.linalg.vector_norm(points, dim=-1)
    big = norms >= norm_tol  # (..., c)
    diff = points.unsqueeze(-3) - points.unsqueeze(-2)  # (..., c, c, 2): p_j − p_i at [i, j]
    angles = torch.atan2(diff[..., 1], diff[..., 0])  # (..., c, c)
    # others that take part: big, not p itself, not coincident with p (a duplicate is ignored)
    dist = torch.linalg.vector_norm(diff, dim=-1)
    eye = torch.eye(c, dtype=torch.bool, device=points.device)
    use = big.unsqueeze(-2) & ~eye & (dist > angle_tol * norms.amax(-1, keepdim=True).unsqueeze(-1))
    # unused entries copy the angle of some used one, which adds a zero gap and changes nothing
    first_used = torch.argmax(use.to(torch.int8), dim=-1, keepdim=True)
    fill = torch.gather(angles, -1, first_used).expand_as(angles)
    angles = torch.where(use, angles, fill)
    ordered, _ = torch.sort(angles, dim=-1)
    gaps = ordered.diff(dim=-1)
    wrap = ordered[..., :1] + 2 * math.pi - ordered[..., -1:]
    max_gap = torch.cat([gaps, wrap], dim=-1).amax(-1)
    has_other = use.any(-1)
    return big & (~has_other | (max_gap > math.pi + angle_tol))


def kgon_type(w: torch.Tensor, *, norm_tol: float = 0.1,
              positive_bias: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, σ)`` of each parameter ``w (..., 3c)``: the k^{σ+}-gon type of Chen et al. (2023).

    ``k`` = the number of convex-hull vertices of the columns ``W_i`` (columns shorter than
    ``norm_tol`` count as zero, see :func:`convex_hull_vertex_mask`); ``σ`` = the number of the
    other columns with bias above ``positive_bias``. A positive column of a k^{σ+}-gon has bias
    ``1/(2c)``, and the live and dead ones have bias ≤ 0, so the default threshold is halfway,
    ``1/(4c)``: a column whose bias has only drifted slightly above 0 is not yet counted.
    Returns two ``long`` tensors of shape ``(...)``.
    """
    c = num_features(w)
    if positive_bias is None:
        positive_bias = 1.0 / (4 * c)
    W, b = unflatten_params(w.detach())
    vertex = convex_hull_vertex_mask(W.transpose(-1, -2), norm_tol=norm_tol)
    k = vertex.sum(-1)
    sigma = ((~vertex) & (b > positive_bias)).sum(-1)
    return k, sigma


def kgon_label(k: int, sigma: int) -> str:
    """``"5"``, ``"5+"``, ``"4++"``: ``k`` followed by ``σ`` plus signs (the paper's k^{σ+})."""
    return f"{int(k)}" + "+" * int(sigma)


def kgon_labels(w: torch.Tensor, **kwargs) -> np.ndarray:
    """:func:`kgon_type` as an array of labels of shape ``w.shape[:-1]`` (``dtype=object``)."""
    k, sigma = kgon_type(w, **kwargs)
    flat = [kgon_label(a, s) for a, s in zip(k.reshape(-1).tolist(), sigma.reshape(-1).tolist())]
    return np.array(flat, dtype=object).reshape(tuple(k.shape))


# ---------------------------------------------------------------------------------------------
# Escaped chains
# ---------------------------------------------------------------------------------------------


def escaped_chains(trace: SamplingTrace, fraction: float = 0.05, *, tol: float = 0.0) -> list[int]:
    """Rows of ``trace`` whose draws fall below ``L(w*) − tol`` more than ``fraction`` of the time.

    At a local minimum ``w*`` a draw with a loss below ``L(w*)`` is in another, lower basin: the
    chain escaped to a lower phase and its draws do not sample the local posterior. This is the
    rule of Chen et al. (2023, 5%). Returns row indices into ``trace.loss``
    (``trace.kept_chains[row]`` is the chain's original index).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1); got {fraction!r}")
    below = (trace.loss < trace.init_loss - tol).mean(axis=1)
    return [int(i) for i in np.flatnonzero(below > fraction)]


def without_chains(trace: SamplingTrace, rows: Sequence[int]) -> SamplingTrace:
    """A copy of ``trace`` without the given rows (e.g. escaped chains), for re-analysis.

    ``kept_chains`` is reduced accordingly; ``dropped_chains`` keeps meaning "diverged".
    """
    drop = set(int(r) for r in rows)
    keep = [i for i in range(trace.num_chains) if i not in drop]
    if not keep:
        raise ValueError("every chain would be removed; nothing is left to analyse")
    obs = {name: v[keep] for name, v in trace.observables.items()}
    return replace(
        trace,
        loss=trace.loss[keep], grad_norm=trace.grad_norm[keep], distance=trace.distance[keep],
        drift_norm=trace.drift_norm[keep], noise_norm=trace.noise_norm[keep], observables=obs,
        kept_chains=[trace.kept_chains[i] for i in keep] if trace.kept_chains else keep,
        final_params=None if trace.final_params is None else trace.final_params[keep],
    )


# ---------------------------------------------------------------------------------------------
# SGD trajectories, vectorised
# ---------------------------------------------------------------------------------------------


def sgd_trajectories(init: torch.Tensor, data: torch.Tensor, *, lr: float, batch_size: int,
                     num_epochs: int, record_every: int = 1, generator=None) -> torch.Tensor:
    """Plain SGD on the sampled-data loss for ``R`` independent runs as one tensor.

    ``init (R, 3c)``, ``data (R, n, c)`` (one training set per run). Each epoch reshuffles every
    run's data independently and takes ``n // batch_size`` steps ``w ← w − lr ∇L_batch(w)``
    (gradients by :func:`empirical_loss_gradient`). Returns the parameters at epochs
    ``0, record_every, 2·record_every, …`` (the last recorded epoch ≤ ``num_epochs``), shape
    ``(num_records, R, 3c)``.
    """
    if init.dim() != 2 or data.dim() != 3 or init.shape[0] != data.shape[0]:
        raise ValueError(f"init must be (R, 3c) and data (R, n, c) with the same R; got "
                         f"{tuple(init.shape)} and {tuple(data.shape)}")
    if data.shape[-1] != num_features(init):
        raise ValueError("data and init disagree on the number of features c")
    R, n, c = data.shape
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in 1..n = {n}; got {batch_size}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1; got {record_every}")
    steps = n // batch_size
    W, b = (t.clone() for t in unflatten_params(init.detach()))  # (R, 2, c), (R, c)
    records = [flatten_params(W, b)]
    rows = torch.arange(R).unsqueeze(-1)
    zero = torch.zeros((), dtype=init.dtype)
    scale = -lr * 2.0 / batch_size
    for epoch in range(1, num_epochs + 1):
        order = torch.argsort(torch.rand(R, n, generator=generator), dim=-1)[:, : steps * batch_size]
        batches = data[rows, order].view(R, steps, batch_size, c)
        for s in range(steps):
            # the chain rule of empirical_loss_gradient, written for the step alone: with
            # z = xWᵀW + b, (ReLU(z) − x)·1[z > 0] = (z − x)·1[z > 0] (no loss is formed)
            x = batches[:, s]
            hidden = torch.bmm(x, W.mT)
            pre = torch.baddbmm(b.unsqueeze(1), hidden, W)
            g = torch.where(pre > 0, pre - x, zero)
            grad_W = torch.bmm(hidden.mT, g) + torch.bmm(torch.bmm(g, W.mT).mT, x)
            b.add_(g.sum(1), alpha=scale)
            W.add_(grad_W, alpha=scale)
        if epoch % record_every == 0:
            records.append(flatten_params(W, b))
    return torch.stack(records)


# ---------------------------------------------------------------------------------------------
# LLC at many points at once (each chain localized at its own point)
# ---------------------------------------------------------------------------------------------


@dataclass
class PointLLC:
    """LLC estimates at ``P`` points from one vectorised SGLD run.

    ``llc_mean, mcse, init_loss (P,)``; ``llc_per_chain (P, C)``; ``loss (P, C, draws)``;
    ``escaped (P, C)`` marks chains whose draws fell below ``L(w*)`` more than ``fraction`` of
    the time (excluded from ``llc_mean`` and ``mcse`` where at least two chains remain;
    ``llc_mean_all`` keeps them).
    """

    llc_mean: np.ndarray
    mcse: np.ndarray
    llc_mean_all: np.ndarray
    llc_per_chain: np.ndarray
    init_loss: np.ndarray
    loss: np.ndarray
    escaped: np.ndarray
    hyper: SGLDHyperparameters
    seconds: float = 0.0


def llc_at_points(loss_fn: Callable[[torch.Tensor], torch.Tensor], centers: torch.Tensor, *,
                  nbeta: float, step_size: float, localization: float, num_chains: int,
                  num_draws: int, num_burnin_steps: int = 0, seed: int = 0,
                  escape_fraction: float = 0.05,
                  loss_and_grad_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                  ) -> PointLLC:
    """``λ̂(w*_p) = nβ (E[L] − L(w*_p))`` at every centre ``w*_p`` of ``centers (P, d)`` at once.

    ``loss_fn`` maps ``(P, C, d)`` to ``(P, C)``: row ``p`` is evaluated with point ``p``'s own
    loss (e.g. its trajectory's training set). The SGLD step is :func:`toymodels.sgld_step`
    (Lau et al. 2023, eq. 12) with each chain localized at its own centre; the chains of one
    point all start at it. MCSE per point from :func:`toymodels.chain_diagnostics`.
    ``loss_and_grad_fn`` (optional) returns the loss and its gradient in closed form, e.g.
    :func:`empirical_loss_gradient`, instead of autograd through ``loss_fn``.
    """
    hyper = SGLDHyperparameters(step_size=step_size, nbeta=nbeta, localization=localization)
    if centers.dim() != 2:
        raise ValueError(f"centers must be (P, d), one point per row; got {tuple(centers.shape)}")
    if num_chains < 2 or num_draws < 4 or num_burnin_steps < 0:
        raise ValueError("need num_chains >= 2, num_draws >= 4 and num_burnin_steps >= 0 "
                         "(the MCSE needs several chains and draws)")
    P, d = centers.shape
    gen = torch.Generator().manual_seed(seed)
    center = centers.unsqueeze(1).expand(P, num_chains, d).reshape(P * num_chains, d)
    params = center.clone()
    with torch.no_grad():
        init_loss = loss_fn(centers.unsqueeze(1)).reshape(P)
    trace = torch.empty(num_draws, P, num_chains, dtype=centers.dtype)
    start = time.perf_counter()
    for step in range(num_burnin_steps + num_draws):
        if loss_and_grad_fn is not None:
            loss, grad = loss_and_grad_fn(params.view(P, num_chains, d))
            grad = grad.reshape(P * num_chains, d)
        else:
            with torch.enable_grad():
                p = params.detach().requires_grad_(True)
                loss = loss_fn(p.view(P, num_chains, d))
                (grad,) = torch.autograd.grad(loss.sum(), p)
        if step >= num_burnin_steps:
            trace[step - num_burnin_steps] = loss.detach()
        noise = torch.randn(params.shape, generator=gen, dtype=params.dtype)
        params, info = sgld_step(params, grad, noise, center, hyper, loss=loss.detach().reshape(-1))
        if not bool(info.finite.all()):
            raise FloatingPointError(f"SGLD diverged at step {step}; lower step_size")
    seconds = time.perf_counter() - start
    loss_np = trace.permute(1, 2, 0).double().numpy()  # (P, C, draws)
    init_np = init_loss.double().numpy()
    below = (loss_np < init_np[:, None, None]).mean(-1)
    escaped = below > escape_fraction
    llc_draws = nbeta * (loss_np - init_np[:, None, None])
    per_chain = llc_draws.mean(-1)
    means, mcses, all_means = [], [], []
    for p_i in range(P):
        keep = ~escaped[p_i]
        if keep.sum() < 2:
            keep = np.ones(num_chains, dtype=bool)
        means.append(per_chain[p_i, keep].mean())
        all_means.append(per_chain[p_i].mean())
        mcses.append(chain_diagnostics(llc_draws[p_i, keep])["mcse"])
    return PointLLC(llc_mean=np.array(means), mcse=np.array(mcses), llc_mean_all=np.array(all_means),
                    llc_per_chain=per_chain, init_loss=init_np, loss=loss_np, escaped=escaped,
                    hyper=hyper, seconds=seconds)


# ---------------------------------------------------------------------------------------------
# The tempered posterior exp(−n L) φ on a ladder of sample sizes (parallel tempering + MALA)
# ---------------------------------------------------------------------------------------------


@dataclass
class TemperedPosteriorSamples:
    """Draws of ``p_n(w) ∝ exp(−n L(w)) φ(w)`` at each rung ``n`` of a ladder.

    ``draws (num_records, ladders, rungs, d)`` and ``loss (num_records, ladders, rungs)`` are at
    the rungs' fixed sample sizes (replicas swap states, the rungs keep their ``n``).
    ``acceptance (rungs,)`` is the MALA acceptance rate after burn-in, ``swap_rate (rungs-1,)``
    the accepted fraction of swaps between rungs ``r`` and ``r+1``, ``step_size (rungs,)`` the
    adapted step sizes.
    """

    sample_sizes: np.ndarray
    draws: torch.Tensor
    loss: torch.Tensor
    acceptance: np.ndarray
    swap_rate: np.ndarray
    step_size: np.ndarray
    seconds: float


def _standard_normal_log_prior(w: torch.Tensor) -> torch.Tensor:
    return -0.5 * (w * w).sum(-1)


def tempered_posterior_mala(
    potential: Callable[[torch.Tensor], torch.Tensor],
    sample_sizes: Sequence[float],
    init: torch.Tensor,
    *,
    num_steps: int,
    num_burnin_steps: int,
    record_every: int = 10,
    swap_every: int = 1,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    initial_step_scale: float = 0.1,
    target_acceptance: float = 0.6,
    seed: int = 0,
) -> TemperedPosteriorSamples:
    """Parallel tempering over sample sizes with Metropolis-adjusted Langevin moves.

    Target at rung ``r``: ``p_r(w) ∝ exp(−n_r L(w)) φ(w)`` (default ``φ = N(0, I)``; the exact
    ``L`` stands in for ``L_n``, as in Chen et al. 2023). Every ladder (``init (ladders, rungs,
    d)``) runs one replica per rung, all as one tensor. A step is one MALA move per replica
    (Roberts & Tweedie 1996: proposal ``w' = w + (ε/2)∇log p_r(w) + √ε ξ``, accepted with the
    Metropolis–Hastings ratio, so each rung leaves ``p_r`` exactly invariant — no step-size
    bias), then every ``swap_every`` steps a swap of neighbouring rungs (alternating even and
    odd pairs) accepted with probability ``min(1, exp((n_r − n_{r+1})(L_r − L_{r+1})))``
    (Geyer 1991; Swendsen & Wang 1986). During burn-in each rung's ``ε`` adapts (Robbins–Monro
    on ``log ε``) towards ``target_acceptance``; after it ``ε`` is fixed, so the recorded chain
    is a time-homogeneous Markov chain with the right stationary laws. ``ε`` starts at
    ``initial_step_scale / n_r``. A potential with a ``with_grad(w) -> (loss, grad)`` attribute
    (such as :func:`population_loss`) is differentiated by it instead of autograd.
    """
    ns = torch.as_tensor(np.asarray(sample_sizes, dtype=np.float64), dtype=init.dtype)
    if ns.dim() != 1 or ns.numel() < 1 or bool((ns <= 0).any()):
        raise ValueError("sample_sizes must be a non-empty list of positive numbers")
    if init.dim() != 3 or init.shape[1] != ns.numel():
        raise ValueError(f"init must have shape (ladders, rungs = {ns.numel()}, d); got {tuple(init.shape)}")
    if num_steps < 1 or num_burnin_steps < 0 or record_every < 1 or swap_every < 1:
        raise ValueError("num_steps, record_every, swap_every must be >= 1 and num_burnin_steps >= 0")
    log_prior = _standard_normal_log_prior if log_prior is None else log_prior
    gen = torch.Generator().manual_seed(seed)
    Lr, R, d = init.shape
    n_b = ns.view(1, R)

    with_grad = getattr(potential, "with_grad", None)
    gaussian_prior = log_prior is _standard_normal_log_prior

    def evaluate(w):
        """Loss, its gradient, log prior and its gradient: the rung-free pieces of log p_r."""
        if with_grad is not None:  # a closed-form gradient saves the autograd pass
            loss, g_loss = with_grad(w)
        else:
            with torch.enable_grad():
                p = w.detach().requires_grad_(True)
                loss = potential(p)
                (g_loss,) = torch.autograd.grad(loss.sum(), p)
        if gaussian_prior:
            return loss.detach(), g_loss, -0.5 * (w * w).sum(-1), -w
        with torch.enable_grad():
            q = w.detach().requires_grad_(True)
            lpr = log_prior(q)
            (g_prior,) = torch.autograd.grad(lpr.sum(), q)
        return loss.detach(), g_loss, lpr.detach(), g_prior

    def log_target(state):
        loss, g_loss, lpr, g_prior = state
        return -n_b * loss + lpr, -n_b.unsqueeze(-1) * g_loss + g_prior

    w = init.detach().clone()
    state = evaluate(w)
    lp, grad = log_target(state)
    log_eps = torch.log(initial_step_scale / ns).clone()
    accepted = torch.zeros(R, dtype=init.dtype)
    swaps = torch.zeros(max(R - 1, 0), dtype=init.dtype)
    swap_tries = torch.zeros(max(R - 1, 0), dtype=init.dtype)
    draws, losses = [], []
    start = time.perf_counter()
    swap_parity = 0
    for step in range(num_burnin_steps + num_steps):
        eps = torch.exp(log_eps).view(1, R, 1)
        mean_fwd = w + 0.5 * eps * grad
        prop = mean_fwd + torch.sqrt(eps) * torch.randn(w.shape, generator=gen, dtype=w.dtype)
        state_p = evaluate(prop)
        lp_p, grad_p = log_target(state_p)
        mean_bwd = prop + 0.5 * eps * grad_p
        log_q_fwd = -((prop - mean_fwd) ** 2).sum(-1) / (2 * eps[..., 0])
        log_q_bwd = -((w - mean_bwd) ** 2).sum(-1) / (2 * eps[..., 0])
        log_alpha = lp_p - lp + log_q_bwd - log_q_fwd
        # a non-finite proposal (overflow far out) is rejected
        log_alpha = torch.where(torch.isfinite(log_alpha), log_alpha,
                                torch.full_like(log_alpha, -math.inf))
        accept = torch.log(torch.rand(log_alpha.shape, generator=gen, dtype=w.dtype)) < log_alpha
        a3 = accept.unsqueeze(-1)
        w = torch.where(a3, prop, w)
        state = tuple(torch.where(a3 if x.dim() == 3 else accept, xp, x)
                      for x, xp in zip(state, state_p))
        lp, grad = log_target(state)
        rate = torch.clamp(torch.exp(log_alpha), max=1.0).mean(0)
        if step < num_burnin_steps:
            # Robbins–Monro on log ε with a decaying gain: settles during burn-in, then frozen.
            gain = 1.0 / (1.0 + step) ** 0.6
            log_eps = log_eps + gain * (rate - target_acceptance)
        else:
            accepted += rate
        if R > 1 and (step + 1) % swap_every == 0:
            lo = torch.arange(swap_parity, R - 1, 2)
            swap_parity = 1 - swap_parity
            if lo.numel():
                hi = lo + 1
                loss = state[0]
                log_ratio = (ns[lo] - ns[hi]) * (loss[:, lo] - loss[:, hi])
                do = torch.log(torch.rand(log_ratio.shape, generator=gen, dtype=w.dtype)) < log_ratio
                if step >= num_burnin_steps:
                    swaps[lo] += do.to(w.dtype).mean(0)
                    swap_tries[lo] += 1
                perm = torch.arange(R).repeat(Lr, 1)
                pair_lo = perm[:, lo].clone()
                perm[:, lo] = torch.where(do, perm[:, hi], perm[:, lo])
                perm[:, hi] = torch.where(do, pair_lo, perm[:, hi])
                idx = perm.unsqueeze(-1).expand(Lr, R, d)
                w = torch.gather(w, 1, idx)
                # the rung-free pieces travel with the state; log p_r is rebuilt at the new rung
                state = tuple(torch.gather(x, 1, idx if x.dim() == 3 else perm) for x in state)
                lp, grad = log_target(state)
        if step >= num_burnin_steps and (step - num_burnin_steps) % record_every == 0:
            draws.append(w.clone())
            losses.append(state[0].clone())
    seconds = time.perf_counter() - start
    return TemperedPosteriorSamples(
        sample_sizes=ns.numpy().copy(),
        draws=torch.stack(draws),
        loss=torch.stack(losses),
        acceptance=(accepted / max(num_steps, 1)).numpy(),
        swap_rate=(swaps / swap_tries.clamp_min(1)).numpy(),
        step_size=torch.exp(log_eps).numpy(),
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# The Elhage et al. (2022) model: n features, m hidden, many instances as one tensor
# ---------------------------------------------------------------------------------------------


class ElhageTMS(nn.Module):
    """``h = Wx``, ``x' = ReLU(Wᵀh + b)`` for ``num_instances`` independent models at once.

    ``W (I, m, n)`` (column ``W[i, :, f]`` is feature ``f``'s direction in instance ``i``),
    ``b (I, n)``. Instance ``i`` sees features that are each nonzero with probability
    ``feature_probability[i]``, then ``U[0, 1]`` (Elhage et al. 2022, "Demonstrating
    superposition"); its loss is ``E Σ_f I_f (x_f − x'_f)²`` with importances ``I_f``.
    Initialisation as in the paper's notebook: Xavier-normal ``W``, zero ``b``.
    """

    def __init__(self, num_features: int, num_hidden: int, feature_probability: torch.Tensor,
                 importance: torch.Tensor | None = None, *, generator=None,
                 dtype=torch.float32):
        super().__init__()
        p = torch.as_tensor(feature_probability, dtype=dtype).reshape(-1)
        if bool(((p <= 0) | (p > 1)).any()):
            raise ValueError("feature_probability must lie in (0, 1]")
        if num_features < 1 or num_hidden < 1:
            raise ValueError("num_features and num_hidden must be >= 1")
        imp = torch.ones(num_features, dtype=dtype) if importance is None else torch.as_tensor(importance, dtype=dtype)
        if imp.shape != (num_features,):
            raise ValueError(f"importance must have shape ({num_features},); got {tuple(imp.shape)}")
        instances = p.numel()
        std = math.sqrt(2.0 / (num_features + num_hidden))  # Xavier normal of one (m, n) matrix
        W = torch.randn(instances, num_hidden, num_features, generator=generator, dtype=dtype) * std
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(torch.zeros(instances, num_features, dtype=dtype))
        self.register_buffer("feature_probability", p)
        self.register_buffer("importance", imp)

    @property
    def num_instances(self) -> int:
        return self.W.shape[0]

    def generate_batch(self, batch_size: int, generator=None) -> torch.Tensor:
        """``(batch, I, n)`` inputs: each feature ``U[0, 1]`` with probability ``p_i``, else 0."""
        shape = (batch_size, self.num_instances, self.W.shape[-1])
        values = torch.rand(shape, generator=generator, dtype=self.W.dtype)
        on = torch.rand(shape, generator=generator, dtype=self.W.dtype) <= self.feature_probability.view(1, -1, 1)
        return values * on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.einsum("bin,imn->bim", x, self.W)
        return torch.relu(torch.einsum("bim,imn->bin", hidden, self.W) + self.b)

    def loss_per_instance(self, x: torch.Tensor) -> torch.Tensor:
        """``(I,)``: ``mean_batch Σ_f I_f (x_f − x'_f)²``."""
        err = (x - self(x)) ** 2
        return (err * self.importance).sum(-1).mean(0)


def train_elhage(model: ElhageTMS, *, steps: int, batch_size: int, lr: float,
                 weight_decay: float = 0.01, generator=None) -> list[float]:
    """Train every instance at once with AdamW on the sum of the instance losses.

    The instances share no parameters, so the sum's gradient is each instance's own gradient.
    Returns the mean instance loss every 100 steps.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for step in range(steps):
        x = model.generate_batch(batch_size, generator)
        loss = model.loss_per_instance(x)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(float(loss.detach().mean()))
    return history


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """Elhage et al.'s feature dimensionality ``D_f = ||W_f||² / Σ_g (Ŵ_f · W_g)²``.

    ``W (..., m, n)`` with columns ``W_f``; returns ``(..., n)``. A feature with its own dimension
    has ``D = 1``; two antipodal features share one (``D = 1/2``); a pentagon in 2 dimensions
    gives ``2/5``; a feature with ``W_f = 0`` gets ``D = 0``.
    """
    norms2 = (W * W).sum(-2)  # (..., n)
    gram = W.transpose(-1, -2) @ W  # (..., n, n)
    denom = (gram * gram).sum(-1) / norms2.clamp_min(1e-30)  # Σ_g (W_f·W_g)² / ||W_f||²
    return torch.where(norms2 > 0, norms2 / denom.clamp_min(1e-30), torch.zeros_like(norms2))
