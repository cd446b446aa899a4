"""What the sampler sees: a loss of one flat parameter vector, evaluated for many chains at once.

Two ways in, one interface (:class:`Objective`):

* :class:`PotentialObjective` (here) wraps a function ``potential(w) -> scalar`` of one flat
  vector, for instance an exact ``K(w)`` from ``theory/`` written in torch;
* :class:`~toymodels.objectives.module.ModuleObjective` wraps a ``torch.nn.Module`` with data
  ``(inputs, targets)`` and a batch-mean ``loss_fn(outputs, targets)``.

Both are lifted to ``(num_chains, d)`` parameters with ``torch.func.vmap``; the per-chain
gradients come from one reverse pass through the sum of the chains' losses (chains do not interact,
so ``∂(Σ_c L_c)/∂w_c = ∇L_c(w_c)``), which is cheaper than ``vmap(grad(·))`` on CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import vmap

__all__ = ["Objective", "PotentialObjective", "check_precision", "as_flat_vector"]


class Objective:
    """A loss ``L(w)`` of a flat parameter vector, batched over chains.

    Attributes:
        center: ``(d,)`` the point ``w*`` (the initial parameters).
        num_samples: the dataset size ``n`` for a network, ``None`` for a potential.
    """

    center: torch.Tensor
    num_samples: int | None = None

    @property
    def dim(self) -> int:
        return self.center.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.center.dtype

    def batched_loss(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``(num_chains, d) -> (num_chains,)`` losses (on a fresh minibatch where minibatching)."""
        raise NotImplementedError

    def loss_and_grad(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses ``(num_chains,)`` and gradients ``(num_chains, d)`` at ``params``."""
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            losses = self.batched_loss(p, generator)
            (grad,) = torch.autograd.grad(losses.sum(), p)
        return losses.detach(), grad

    def full_loss(self, params: torch.Tensor) -> torch.Tensor:
        """Losses on the full data, ``(num_chains, d) -> (num_chains,)``, no gradient."""
        raise NotImplementedError


class PotentialObjective(Objective):
    """An exact potential ``L(w)`` given as a torch function of one flat vector.

    ``potential`` must be written for a single ``(d,)`` vector and return a scalar; it is lifted to
    many chains by ``vmap``, so it may not branch on tensor values in Python (use ``torch.where``).
    A potential that also maps a ``(num_chains, d)`` batch to ``(num_chains,)`` by itself can say so
    with the attribute ``potential.batched = True``; it is then called on the batch directly, which
    saves vmap's per-operation overhead (the sampler of a low-dimensional potential is bound by
    that overhead, not by arithmetic).
    """

    def __init__(self, potential: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor):
        if not callable(potential):
            raise TypeError(f"potential must be callable, got {type(potential).__name__}")
        init = as_flat_vector(init)
        with torch.no_grad():
            value = potential(init.clone())
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.dim() > 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"potential must return a scalar tensor for one flat parameter vector of shape "
                f"({init.numel()},), got {shape}; reduce it to a scalar (e.g. .sum() or .mean())"
            )
        self.potential = potential
        self.center = init
        if getattr(potential, "batched", False):
            self._batched = potential
        else:
            self._batched = vmap(lambda w: potential(w).reshape(()))

    def batched_loss(self, params, generator=None):
        return self._batched(params)

    def full_loss(self, params):
        with torch.no_grad():
            return self._batched(params)


def check_precision(dtype: torch.dtype, what: str) -> None:
    """Refuse half precision, whose rounding swallows the sampler's noise."""
    if dtype in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"{what} are {dtype}: a half-precision step loses the noise √ε·ξ to rounding (bfloat16 "
            "keeps 8 bits), so chains freeze or move on a coarse grid and λ̂ comes out 0 or "
            "wrong. Sample in float32 or float64: model.float() / init.float()")


def as_flat_vector(init) -> torch.Tensor:
    """``init`` as a detached copy of one finite, floating-point ``(d,)`` vector; refused with advice."""
    if not isinstance(init, torch.Tensor):
        try:
            init = torch.as_tensor(init, dtype=torch.get_default_dtype())
        except Exception as exc:  # noqa: BLE001 - re-raised with advice
            raise TypeError(f"init must be a tensor of parameters, got {type(init).__name__}") from exc
    if init.dim() != 1:
        raise ValueError(
            f"init must be one flat parameter vector of shape (d,), got shape {tuple(init.shape)}; "
            "flatten it with .reshape(-1)"
        )
    if init.numel() == 0:
        raise ValueError("init is empty: the potential needs at least one parameter")
    if not torch.is_floating_point(init):
        init = init.to(torch.get_default_dtype())
    if not torch.isfinite(init).all():
        raise ValueError("init contains non-finite values")
    check_precision(init.dtype, "init's values")
    return init.detach().clone()
