"""Stochastic-gradient Langevin dynamics with localization, as a pure step function.

The step (Welling & Teh 2011, in the convention of Lau et al. arXiv 2308.12108, eq. 12)::

    w ← w − (ε/2) [ nβ ∇L(w) − ∇log φ(w) + γ (w − w*) ] + N(0, ε I)

has noise variance ε, so for ε → 0 with full-batch gradients its stationary law is exactly the
localized tempered posterior ``p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)``. ``φ`` is the prior
(flat unless a ``log_prior`` is given).

Everything here is a pure function of tensors whose leading dimension is the chain: many chains
step as one tensor operation. Randomness is passed in as pre-drawn standard-normal ``noise``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict
from typing import NamedTuple

import torch

__all__ = [
    "SGLDHyperparameters",
    "SGLDInfo",
    "sgld_step",
    "sgld_hyperparameters_from_scales",
]


@dataclass(frozen=True)
class SGLDHyperparameters:
    """Hyperparameters of one SGLD run.

    Attributes:
        step_size: ε > 0, the step size; the injected noise has variance ε.
        nbeta: nβ > 0, the inverse temperature times the sample size (``t``).
        localization: γ ≥ 0, the strength of the pull back to ``w*``.
    """

    step_size: float
    nbeta: float
    localization: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("step_size", self.step_size, hint="try 1e-4 and lower it if chains diverge")
        _check_positive("nbeta", self.nbeta, hint="the default for n samples is n / log n")
        if not math.isfinite(self.localization) or self.localization < 0:
            raise ValueError(
                f"localization must be a finite number ≥ 0, got {self.localization!r}; "
                "use 0 for no localization"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def scales(self) -> dict:
        """The same step in the in-context-regression code's parametrisation.

        ``gradient_scale = ε nβ / 2``, ``localization_scale = ε γ / 2``, ``noise_scale = ε``.
        """
        eps = self.step_size
        return {
            "gradient_scale": eps * self.nbeta / 2,
            "localization_scale": eps * self.localization / 2,
            "noise_scale": eps,
        }


def sgld_hyperparameters_from_scales(
    gradient_scale: float, localization_scale: float, noise_scale: float
) -> SGLDHyperparameters:
    """Convert the scale parametrisation to (ε, nβ, γ).

    The step ``w ← w − gradient_scale ∇L − localization_scale (w − w*) + N(0, noise_scale)`` is
    the SGLD step with ``ε = noise_scale``, ``nβ = 2 gradient_scale / ε`` and
    ``γ = 2 localization_scale / ε``. (The noise scale is a variance here, as in the
    Welling–Teh convention; a code that multiplies standard normals by ``noise_scale`` directly
    means ``ε = noise_scale²``: convert before calling.)
    """
    _check_positive("noise_scale", noise_scale)
    _check_positive("gradient_scale", gradient_scale)
    return SGLDHyperparameters(
        step_size=noise_scale,
        nbeta=2 * gradient_scale / noise_scale,
        localization=2 * localization_scale / noise_scale,
    )


class SGLDInfo(NamedTuple):
    """Per-chain record of one step, all evaluated at the parameters *before* the step.

    Every field has shape ``(num_chains,)``.
    """

    loss: torch.Tensor  #: L(w) on the batch used for the gradient
    grad_norm: torch.Tensor  #: ||∇L(w)||
    distance: torch.Tensor  #: ||w − w*||
    drift_norm: torch.Tensor  #: ||(ε/2)(nβ∇L − ∇log φ + γ(w − w*))||, the deterministic move
    noise_norm: torch.Tensor  #: ||√ε ξ||, the random move
    finite: torch.Tensor  #: bool, loss and new parameters all finite


def sgld_step(
    params: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    center: torch.Tensor,
    hyper: SGLDHyperparameters,
    *,
    loss: torch.Tensor | None = None,
    grad_log_prior: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SGLDInfo]:
    """One SGLD step for a batch of chains; pure (no argument is modified).

    Args:
        params: ``(num_chains, d)`` current parameters ``w``.
        grad: ``(num_chains, d)`` gradient ``∇L(w)`` of the (batch-mean) loss.
        noise: ``(num_chains, d)`` standard-normal draws ``ξ``; the step adds ``√ε ξ``.
        center: ``(d,)`` the localization centre ``w*``.
        hyper: step size ε, nβ and localization γ (floats; or ``(num_chains, 1)`` tensors, one
            value per chain, as in :class:`toymodels.sampling.kernels.ChainHyperparameters`).
        loss: optional ``(num_chains,)`` loss at ``params``, copied into the info record.
        grad_log_prior: optional ``(num_chains, d)`` gradient of the log prior density.
        mask: optional ``(d,)`` boolean; only these coordinates move (weight-restricted sampling).

    Returns:
        The new parameters and an :class:`SGLDInfo` record.
    """
    eps = hyper.step_size
    offset = params - center
    force = hyper.nbeta * grad + hyper.localization * offset
    if grad_log_prior is not None:
        force = force - grad_log_prior
    drift = (0.5 * eps) * force
    # a (num_chains, 1) tensor of step sizes (a calibration grid run as one batch) also works
    kick = (eps.sqrt() if isinstance(eps, torch.Tensor) else math.sqrt(eps)) * noise
    if mask is not None:
        drift = drift * mask
        kick = kick * mask
    new_params = params - drift + kick
    finite = torch.isfinite(new_params).all(dim=-1)
    if loss is None:  # not given: recorded as NaN, and not part of the finite flag
        loss = torch.full(params.shape[:1], float("nan"), dtype=params.dtype, device=params.device)
    else:
        finite = finite & torch.isfinite(loss)
    info = SGLDInfo(
        loss=loss,
        grad_norm=torch.linalg.vector_norm(grad, dim=-1),
        distance=torch.linalg.vector_norm(offset, dim=-1),
        drift_norm=torch.linalg.vector_norm(drift, dim=-1),
        noise_norm=torch.linalg.vector_norm(kick, dim=-1),
        finite=finite,
    )
    return new_params, info


def _check_positive(name: str, value: float, hint: str = "") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        msg = f"{name} must be a finite number > 0, got {value!r}"
        raise ValueError(msg + (f"; {hint}" if hint else ""))
