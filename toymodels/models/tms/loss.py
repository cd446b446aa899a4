"""The Chen et al. TMS model: parameters, the exact population loss, sampled data, the module.

Sources and formulas: see :mod:`toymodels.models.tms` (Chen, Lau, Mendel, Wei & Murfet,
arXiv 2310.06301, 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ChenTMS", "empirical_loss", "empirical_loss_gradient", "empirical_loss_potential", "flatten_params",
           "num_features", "population_loss", "population_loss_and_grad", "sample_inputs", "unflatten_params"]


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
        return empirical_loss(w, x.to(w))

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
