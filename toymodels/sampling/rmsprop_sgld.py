"""RMSProp-preconditioned SGLD, "pSGLD" (Li, Chen, Carlson & Carin, AAAI 2016, Alg. 1), as a kernel."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from toymodels.sampling.hyper import ChainHyperparameters
from toymodels.sampling.integrator import (
    Evaluation,
    Target,
    drift_terms,
    evaluate_then_noise,
    norm,
    rows_finite,
)
from toymodels.sampling.integrator import force as force_of  # `force` is the local name below

__all__ = ["RMSPropSGLD", "RMSPropSGLDState", "RMSPropSGLDInfo"]


class RMSPropSGLDState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    square_avg: torch.Tensor  #: (C, d), V: exponential moving average of F²
    count: torch.Tensor  #: () number of updates V has had (in the position's dtype)


class RMSPropSGLDInfo(NamedTuple):
    loss: torch.Tensor
    grad_norm: torch.Tensor
    distance: torch.Tensor
    drift_norm: torch.Tensor  #: ||(ε/2) G F||
    noise_norm: torch.Tensor  #: ||√(εG) ξ||
    grad_term_norm: torch.Tensor  #: ||(ε/2) G nβ ∇L||
    localization_term_norm: torch.Tensor  #: ||(ε/2) G γ (w − w*)||
    preconditioner_spread: torch.Tensor  #: max G / min G over the moving coordinates
    finite: torch.Tensor


class RMSPropSGLD:
    """RMSProp-preconditioned SGLD, "pSGLD" (Li, Chen, Carlson, Carin, AAAI 2016, Alg. 1)::

        V ← ρ V + (1 − ρ) F ⊙ F,     g_i = 1 / (δ + √V̂_i),     G = g / mean_i(g_i),
        w ← w − (ε/2) [G ⊙ F(w) + Γ(w)] + √ε G^{1/2} ⊙ ξ.

    ``V̂ = V / (1 − ρ^k)`` is the bias-corrected average after ``k`` updates.

    **The correction term Γ.** For a position-dependent preconditioner ``G(w)`` the drift needs
    ``Γ_i = Σ_j ∂G_ij/∂w_j`` for the chain to keep the target invariant (Li et al., eq. 4; Ma, Chen
    & Fox 2015). In pSGLD ``G`` depends on the *history* through ``V``, not on ``w``, and Li et al.
    drop Γ, arguing that ``V`` moves by O(1 − ρ) per step; the price is a bias that vanishes only as
    ``ρ → 1`` (their Theorem 2). Here the choice is explicit:

    * ``adapt="burnin"`` (default): ``V`` is updated during burn-in only and then frozen, so after
      burn-in ``G`` is a constant matrix, Γ = 0 *exactly*, and the chain is preconditioned
      Langevin with no bias beyond the usual O(ε);
    * ``adapt="always"``: Li et al.'s scheme; Γ is dropped, with the O(1 − ρ) bias that implies.

    Two deliberate differences from Li et al., both documented in ``docs/error_budget.md``: ``V``
    averages the squared *total* force ``F = nβ∇L + γ(w − w*) − ∇log φ`` (not the likelihood
    gradient alone), so that directions held only by the localization are not given a huge step;
    and ``G`` is normalised to mean 1 over the moving coordinates of each chain, so ε keeps
    SGLD's meaning and the zero gradient at ``w*`` (where ``V = 0``) gives a plain SGLD step
    instead of a step of size ``ε/δ``.

    Args:
        alpha: ρ, the averaging constant (0.99 as in Li et al.).
        eps: δ, the damping in ``1/(δ + √V)``, relative to the scale of ``√V``.
        adapt: ``"burnin"`` or ``"always"`` (see above). With ``'burnin'`` the driver builds the kernel
            with ``adapt_steps`` = the number of burn-in steps.
    """

    name = "rmsprop_sgld"

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, adapt: str = "burnin",
                 adapt_steps: int | None = None):
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; Li et al. use 0.99")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if adapt not in ("burnin", "always"):
            raise ValueError(f"adapt must be 'burnin' or 'always', got {adapt!r}")
        if adapt_steps is not None and (isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int)
                                        or adapt_steps < 0):
            raise ValueError(f"adapt_steps must be an integer ≥ 0 or None, got {adapt_steps!r}")
        self.alpha, self.eps, self.adapt = float(alpha), float(eps), adapt
        self.adapt_steps = adapt_steps
        #: V is updated while fewer than this many updates were made
        self.update_limit = math.inf if adapt == "always" or adapt_steps is None else adapt_steps

    def init(self, position: torch.Tensor, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator) -> RMSPropSGLDState:
        return RMSPropSGLDState(position=position, square_avg=torch.zeros_like(position),
                                count=torch.zeros((), dtype=position.dtype, device=position.device))

    def preconditioner(self, square_avg: torch.Tensor, count, mask=None) -> torch.Tensor:
        """``G`` ``(C, d)`` from the running average (1 on the moving coordinates before any update)."""
        count = torch.as_tensor(count, dtype=square_avg.dtype, device=square_avg.device)
        ones = torch.ones_like(square_avg) if mask is None else torch.ones_like(square_avg) * mask
        # count = 0 makes 0/0 here; that branch is not taken (the where below)
        root = torch.sqrt(square_avg / (1.0 - torch.pow(self.alpha, count)))
        if mask is not None:
            moving = mask.sum()
            scale = (root * mask).sum(-1, keepdim=True) / moving
        else:
            scale = root.mean(-1, keepdim=True)
        # δ relative to the typical √V of the chain keeps G scale-free; a chain with V ≡ 0 gets G = 1
        g = 1.0 / (root + self.eps * scale + torch.finfo(root.dtype).tiny)
        if mask is not None:
            g = g * mask
            g = g / ((g.sum(-1, keepdim=True) / moving))
        else:
            g = g / g.mean(-1, keepdim=True)
        return torch.where(count > 0, g, ones)

    def step(self, state: RMSPropSGLDState, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator, record: bool = True) -> tuple[RMSPropSGLDState, RMSPropSGLDInfo]:
        """Evaluate at the position (the minibatch first), draw ``ξ``, move."""
        evaluation, noise = evaluate_then_noise(target, state.position, generator)
        return self.transition(state, evaluation, noise, hyper, target.center, target.mask)

    def transition(self, state: RMSPropSGLDState, evaluation: Evaluation, noise: torch.Tensor,
                   hyper: ChainHyperparameters, center: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[RMSPropSGLDState, RMSPropSGLDInfo]:
        """The pure move given the evaluation at ``state.position`` and the noise ``ξ``."""
        position, square_avg, count = state
        force, _ = force_of(position, evaluation, center, hyper, mask)
        adapting = count < self.update_limit
        square_avg = torch.where(adapting, self.alpha * square_avg + (1.0 - self.alpha) * force * force,
                                 square_avg)
        count = count + adapting.to(count.dtype)
        g = self.preconditioner(square_avg, count, mask)
        half_eps = hyper.half_step
        drift = half_eps * g * force
        kick = hyper.sqrt_step * torch.sqrt(g) * noise
        if mask is not None:
            kick = kick * mask
        new_position = position - drift + kick
        distance, grad_term, loc_term = drift_terms(position - center, evaluation.grad, hyper,
                                                    half_eps * g, mask)
        if mask is not None:
            big = torch.where(mask > 0, g, torch.full_like(g, -math.inf)).amax(-1)
            small = torch.where(mask > 0, g, torch.full_like(g, math.inf)).amin(-1)
        else:
            big, small = g.amax(-1), g.amin(-1)
        finite = rows_finite(new_position) & torch.isfinite(evaluation.loss)
        info = RMSPropSGLDInfo(loss=evaluation.loss, grad_norm=norm(evaluation.grad), distance=distance,
                               drift_norm=norm(drift), noise_norm=norm(kick), grad_term_norm=grad_term,
                               localization_term_norm=loc_term, preconditioner_spread=big / small,
                               finite=finite)
        return RMSPropSGLDState(new_position, square_avg, count), info
