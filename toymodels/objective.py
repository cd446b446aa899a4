"""What the sampler sees: a loss of one flat parameter vector, evaluated for many chains at once.

Two ways in, one interface (``Objective``):

* :class:`PotentialObjective` wraps a function ``potential(w) -> scalar`` of one flat vector,
  for instance an exact ``K(w)`` from ``theory/`` written in torch;
* :class:`ModuleObjective` wraps a ``torch.nn.Module`` with data ``(inputs, targets)`` and a
  batch-mean ``loss_fn(outputs, targets)``; the module becomes a function of a flat vector through
  ``torch.func.functional_call``, and the data stay tensors (minibatches are gathered by index,
  never collated by a DataLoader in the inner loop).

Both are lifted to ``(num_chains, d)`` parameters with ``torch.func.vmap``; the per-chain
gradients come from one reverse pass through the sum of the chains' losses (chains do not interact,
so ``∂(Σ_c L_c)/∂w_c = ∇L_c(w_c)``), which is cheaper than ``vmap(grad(·))`` on CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch.func import functional_call, vmap

__all__ = ["Objective", "PotentialObjective", "ModuleObjective", "parameter_mask"]


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
        init = _as_flat_vector(init)
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


class ModuleObjective(Objective):
    """A network at ``w*`` with data, as a function of one flat parameter vector.

    Args:
        model: the network; its current parameters are ``w*``. It is not modified.
        inputs: ``(n, ...)`` tensor of inputs, passed as ``model(inputs)``.
        targets: ``(n, ...)`` tensor of targets.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the batch-mean loss.
        batch_size: ``None`` for full-batch gradients; otherwise each chain draws its own
            minibatch of this size, uniformly with replacement, at every step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch_size: int | None = None,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets) -> scalar")
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("data must be (inputs, targets) tensors or a DataLoader yielding them")
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same length, got {inputs.shape[0]} inputs and "
                f"{targets.shape[0]} targets"
            )
        n = inputs.shape[0]
        if n == 0:
            raise ValueError("data is empty: give at least one (input, target) pair")
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
            if batch_size >= n:
                batch_size = None  # a minibatch as large as the data is the full batch
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters to sample")
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.center = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        self.frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
        self.model = model
        self.inputs = inputs
        self.targets = targets
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.num_samples = n

        def loss_one(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, (self.unflatten(w), self.frozen, self.buffers), (x,))
            return self.loss_fn(out, y).reshape(())

        self._full = vmap(loss_one, in_dims=(0, None, None))
        self._mini = vmap(loss_one, in_dims=(0, 0, 0))
        with torch.no_grad():
            value = self.loss_fn(model(inputs[: min(n, 2)]), targets[: min(n, 2)])
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError(
                "loss_fn must return the scalar batch-mean loss, got a tensor of shape "
                f"{tuple(value.shape)}; use reduction='mean'"
            )

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split one flat vector ``(d,)`` into the module's named parameter tensors (views)."""
        out, start = {}, 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels):
            out[name] = w[start : start + numel].view(shape)
            start += numel
        return out

    def batched_loss(self, params, generator=None):
        if self.batch_size is None:
            return self._full(params, self.inputs, self.targets)
        idx = torch.randint(
            self.num_samples, (params.shape[0], self.batch_size), generator=generator,
            device=self.inputs.device,
        )
        return self._mini(params, self.inputs[idx], self.targets[idx])

    def full_loss(self, params):
        with torch.no_grad():
            return self._full(params, self.inputs, self.targets)


def parameter_mask(objective: ModuleObjective, names: Sequence[str]) -> torch.Tensor:
    """Boolean ``(d,)`` mask selecting the named parameters (or every parameter under a prefix).

    ``names`` may list full parameter names (``"layers.0.weight"``) or module prefixes
    (``"layers.0"``). Unknown names raise with the list of valid ones.
    """
    mask = torch.zeros(objective.dim, dtype=torch.bool)
    start = 0
    matched = set()
    for name, numel in zip(objective.names, objective.numels):
        for wanted in names:
            if name == wanted or name.startswith(wanted + "."):
                mask[start : start + numel] = True
                matched.add(wanted)
        start += numel
    unknown = [n for n in names if n not in matched]
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}; the model has {objective.names}")
    return mask


def data_from_loader(loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate a DataLoader's ``(inputs, targets)`` batches once, before sampling."""
    xs, ys = [], []
    for batch in loader:
        if not isinstance(batch, Sequence) or len(batch) != 2:
            raise ValueError("a DataLoader for estimate_llc must yield (inputs, targets) pairs")
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise ValueError("the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def _as_flat_vector(init) -> torch.Tensor:
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
    return init.detach().clone()
