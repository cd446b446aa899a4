"""Training TMS models: vectorised SGD trajectories of the Chen model (Chen et al. 2023, §5) and
the Elhage et al. (2022) model with its dimensions per feature."""

from __future__ import annotations

import math

import torch
from torch import nn

from toymodels.models.tms.loss import flatten_params, num_features, unflatten_params

__all__ = ["ElhageTMS", "dimensions_per_feature", "sgd_trajectories", "train_elhage"]


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
