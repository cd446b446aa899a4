"""Functions of the flat parameter vector to observe or to perturb with: a network's loss
(:func:`module_loss_function`) and per-sample losses (:func:`per_sample_loss_function`) in the
sampler's layout, and a potential restricted to some coordinates (:func:`restricted_potential`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from toymodels.objectives import FlatModule, check_mask

__all__ = ["module_loss_function", "per_sample_loss_function", "restricted_potential",
           "ModuleFunction"]


def module_loss_function(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """``L(w) = loss_fn(model_w(inputs), targets)`` as a function of the flat parameter vector.

    The flat vector is laid out as the sampler lays it out (the trainable parameters in
    ``named_parameters()`` order), so the function can be an observable or a perturbation
    (e.g. the loss on another data source, ``ΔL = L_{q'} − L_q``).
    """
    return ModuleFunction(model, inputs, targets, loss_fn, per_sample=False)


def per_sample_loss_function(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                             per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """``w ↦ (ℓ_1(w), …, ℓ_n(w))`` with ``per_sample_loss(outputs, targets) -> (n,)``.

    For :func:`bayesian_influence`; the batch-mean of these must be the sampled loss.
    """
    return ModuleFunction(model, inputs, targets, per_sample_loss, per_sample=True)


class ModuleFunction:
    """A loss of a network's flat parameter vector (layout of :class:`ModuleObjective`)."""

    def __init__(self, model, inputs, targets, loss_fn, per_sample):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError("the loss must be callable as loss(outputs, targets)")
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise ValueError("inputs and targets must be tensors")
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(f"inputs and targets must be non-empty with the same length, got "
                             f"{inputs.shape[0]} and {targets.shape[0]}")
        self.flat = FlatModule(model)
        self.model, self.inputs, self.targets, self.loss_fn = model, inputs, targets, loss_fn
        with torch.no_grad():
            value = loss_fn(model(inputs), targets)
        expected = (inputs.shape[0],) if per_sample else ()
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            what = "per-sample losses of shape (n,)" if per_sample else "the scalar batch-mean loss"
            raise ValueError(f"the loss must return {what} = {expected}, got {shape}")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.flat(w, self.inputs), self.targets)



def restricted_potential(potential: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
                         mask) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The potential as a function of the masked coordinates alone, the rest fixed at ``init``.

    Returns ``(potential_sub, init_sub)`` with ``potential_sub(v) = potential(w)`` where
    ``w[mask] = v`` and ``w[~mask] = init[~mask]``. Sampling ``potential_sub`` is the direct
    computation that weight-restricted sampling (``restrict_to=mask``) must agree with. A batched
    potential (``potential.batched``) stays batched.
    """
    init = torch.as_tensor(init)
    if init.dim() != 1:
        raise ValueError(f"init must be one flat vector, got shape {tuple(init.shape)}")
    mask = check_mask(mask, init.numel())
    index = mask.nonzero().flatten().to(init.device)
    # embedding (k, d): w = init + (v − init[mask]) @ embed, one matrix product that works for a
    # single vector and for a (chains, k) batch alike
    embed = torch.zeros(index.numel(), init.numel(), dtype=init.dtype, device=init.device)
    embed[torch.arange(index.numel(), device=init.device), index] = 1.0
    init_sub = init[index].clone()

    def potential_sub(v: torch.Tensor) -> torch.Tensor:
        return potential(init.to(v) + (v - init_sub.to(v)) @ embed.to(v))

    potential_sub.batched = bool(getattr(potential, "batched", False))  # type: ignore[attr-defined]
    return potential_sub, init_sub
