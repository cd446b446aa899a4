"""In-context linear regression: tasks, exact Bayes predictors, and batched training utilities.

Task family (Garg et al. 2022; Raventós et al. 2023, arXiv 2306.15063; Hoogland et al. 2024,
arXiv 2402.02364): a sequence holds K pairs ``(x_k, y_k)``, ``x_k ~ N(0, I_D)``,
``y_k = wᵀx_k + N(0, σ²)``, with one task ``w`` per sequence. Either ``w ~ N(0, I_D)`` afresh for
every sequence (M = ∞), or ``w`` is drawn uniformly from a pool of M tasks. Pools are *nested*:
``T_M`` is the first M tasks of one seeded infinite sequence of Gaussian tasks, so that a sweep
over M compares runs whose pools contain one another (Carroll et al. 2025).

Exact predictors (batched, any leading shape): the prediction at position k (1-indexed) uses the
first ``k - 1`` pairs and ``x_k``.

* ridge, the posterior mean for ``w ~ N(0, I)``: ``ŵ = (XᵀX + σ²I)⁻¹XᵀY``;
* dMMSE_M, the posterior mean for the uniform prior on the pool:
  ``ŵ = Σ_m softmax_m(-Σ_{j<k}(y_j - t_mᵀx_j)²/(2σ²)) t_m`` (Raventós et al. 2023, eq. 3).

Their exact risks live in ``theory.icl``; ``position_risks`` gives Monte-Carlo risks with standard
errors for any predictor. Randomness always comes in as a ``torch.Generator``.

Training: ``ModelEnsemble`` holds E copies of one architecture with parameters stacked along a
leading axis and evaluates them with ``torch.func.vmap`` + ``functional_call``; because Adam acts
element-wise and the members' parameters are disjoint, one Adam on the stacked tensors, stepped on
the *sum* of the members' losses, is exactly E independent Adam runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = [
    "InContextRegression",
    "ICLBatch",
    "nested_task_pool",
    "sample_tasks",
    "sample_icl_batch",
    "ridge_predictions",
    "dmmse_predictions",
    "position_risks",
    "icl_mse",
    "ModelEnsemble",
    "warmup_cosine_lr",
    "log_spaced_steps",
]

_POOL_CHUNK = 256  # tasks are drawn in fixed-size chunks so that T_M is a prefix of T_{M'}


class ICLBatch(NamedTuple):
    """One batch of sequences: ``xs (..., K, D)``, ``ys (..., K)``, ``tasks (..., D)``."""

    xs: Tensor
    ys: Tensor
    tasks: Tensor


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _check_noise_variance(noise_variance: float) -> None:
    if not (isinstance(noise_variance, (int, float)) and noise_variance > 0 and math.isfinite(noise_variance)):
        raise ValueError(f"noise_variance must be a positive finite float (σ²); got {noise_variance!r}")


def nested_task_pool(num_tasks: int, dim: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The first ``num_tasks`` tasks ``(M, D)`` of the infinite task sequence fixed by ``seed``.

    Tasks are i.i.d. ``N(0, I_D)``. They are drawn in chunks of a fixed size from one generator
    seeded with ``seed``; every call draws the same chunks in the same order, so
    ``nested_task_pool(M, …)`` is a prefix of ``nested_task_pool(M', …)`` for ``M ≤ M'``
    (a single ``randn(M, D)`` would not guarantee this: CPU kernels vectorise differently by size).
    """
    _check_positive_int("num_tasks", num_tasks)
    _check_positive_int("dim", dim)
    generator = torch.Generator().manual_seed(int(seed))
    num_chunks = -(-num_tasks // _POOL_CHUNK)
    chunks = [torch.randn(_POOL_CHUNK, dim, generator=generator, dtype=torch.float64) for _ in range(num_chunks)]
    return torch.cat(chunks)[:num_tasks].to(dtype)


def sample_tasks(
    num_tasks: Sequence[int | None],
    batch_size: int,
    generator: torch.Generator,
    *,
    dim: int,
    task_pool: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Tasks ``(R, B, D)`` for R rows of B sequences; row r draws from the first ``num_tasks[r]``
    tasks of ``task_pool`` uniformly, or from ``N(0, I_D)`` where ``num_tasks[r]`` is ``None`` (M = ∞).

    Rows are independent draws (each row is one model's data stream in an ensemble).
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("dim", dim)
    sizes = list(num_tasks)
    if not sizes:
        raise ValueError("num_tasks must name at least one pool size (an int, or None for M = ∞)")
    finite = [m for m in sizes if m is not None]
    for m in finite:
        _check_positive_int("each finite entry of num_tasks", m)
    if finite:
        if task_pool is None or task_pool.ndim != 2 or task_pool.shape[1] != dim:
            raise ValueError(f"finite pool sizes need task_pool of shape (M_max, {dim}); got {task_pool!r:.60}")
        if task_pool.shape[0] < max(finite):
            raise ValueError(
                f"task_pool holds {task_pool.shape[0]} tasks but num_tasks asks for {max(finite)}; "
                "build a larger pool with nested_task_pool"
            )
    uniforms = torch.rand(len(sizes), batch_size, generator=generator, dtype=torch.float64)
    tasks = torch.randn(len(sizes), batch_size, dim, generator=generator, dtype=dtype)
    for row, m in enumerate(sizes):
        if m is not None:
            index = (uniforms[row] * m).long().clamp_max(m - 1)
            tasks[row] = task_pool[index].to(dtype)
    return tasks


def sample_icl_batch(
    tasks: Tensor,
    num_examples: int,
    noise_variance: float,
    generator: torch.Generator,
) -> ICLBatch:
    """Sequences for given tasks ``(..., D)``: ``x_k ~ N(0, I_D)``, ``y_k = wᵀx_k + N(0, σ²)``."""
    _check_positive_int("num_examples", num_examples)
    _check_noise_variance(noise_variance)
    *lead, dim = tasks.shape
    xs = torch.randn(*lead, num_examples, dim, generator=generator, dtype=tasks.dtype)
    noise = torch.randn(*lead, num_examples, generator=generator, dtype=tasks.dtype)
    ys = (xs @ tasks.unsqueeze(-1)).squeeze(-1) + math.sqrt(noise_variance) * noise
    return ICLBatch(xs, ys, tasks)


@dataclass(frozen=True)
class InContextRegression:
    """One in-context regression task distribution: D, K, σ² and the pool size M (``None`` = ∞)."""

    dim: int = 4
    """D, dimension of x and of the task w."""
    num_examples: int = 8
    """K, pairs per sequence."""
    noise_variance: float = 0.125
    """σ², variance of the label noise."""
    num_tasks: int | None = None
    """M, size of the task pool; None for M = ∞ (a fresh Gaussian task per sequence)."""
    task_seed: int = 0
    """Seed of the infinite task sequence whose first M entries form the pool."""

    def __post_init__(self) -> None:
        _check_positive_int("dim", self.dim)
        _check_positive_int("num_examples", self.num_examples)
        _check_noise_variance(self.noise_variance)
        if self.num_tasks is not None:
            _check_positive_int("num_tasks (or None for M = ∞)", self.num_tasks)

    def task_pool(self, dtype: torch.dtype = torch.float32) -> Tensor | None:
        """The pool ``T_M`` (M, D), or ``None`` for M = ∞."""
        if self.num_tasks is None:
            return None
        return nested_task_pool(self.num_tasks, self.dim, self.task_seed, dtype)

    def sample(
        self, batch_size: int, generator: torch.Generator, *, gaussian_tasks: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> ICLBatch:
        """A batch of ``batch_size`` sequences; ``gaussian_tasks=True`` ignores the pool and draws
        fresh ``w ~ N(0, I_D)`` (the out-of-distribution evaluation of Raventós et al.)."""
        num_tasks = None if gaussian_tasks else self.num_tasks
        tasks = sample_tasks(
            [num_tasks], batch_size, generator, dim=self.dim,
            task_pool=self.task_pool(dtype) if num_tasks is not None else None, dtype=dtype,
        )[0]
        return sample_icl_batch(tasks, self.num_examples, self.noise_variance, generator)


def _check_sequences(xs: Tensor, ys: Tensor) -> None:
    if xs.ndim < 2 or ys.shape != xs.shape[:-1]:
        raise ValueError(
            f"xs must have shape (..., K, D) and ys (..., K); got {tuple(xs.shape)} and {tuple(ys.shape)}"
        )


def _exclusive_cumsum(values: Tensor, dim: int) -> Tensor:
    """``out_k = Σ_{j<k} values_j`` along ``dim`` (the context seen before position k)."""
    return values.cumsum(dim) - values


def ridge_predictions(xs: Tensor, ys: Tensor, noise_variance: float) -> Tensor:
    """Ridge predictions ``(..., K)``: ``x_kᵀ(X_{<k}ᵀX_{<k} + σ²I)⁻¹X_{<k}ᵀY_{<k}``.

    This is the posterior mean of ``y_k`` for the prior ``w ~ N(0, I_D)``, hence Bayes-optimal
    for M = ∞; at k = 1 it is 0 (the prior mean).
    """
    _check_sequences(xs, ys)
    _check_noise_variance(noise_variance)
    dim = xs.shape[-1]
    outer = xs.unsqueeze(-1) * xs.unsqueeze(-2)  # (..., K, D, D)
    gram = _exclusive_cumsum(outer, dim=-3)  # Σ_{j<k} x_j x_jᵀ
    moment = _exclusive_cumsum(ys.unsqueeze(-1) * xs, dim=-2)  # Σ_{j<k} y_j x_j, (..., K, D)
    eye = torch.eye(dim, dtype=xs.dtype, device=xs.device)
    weights = torch.linalg.solve(gram + noise_variance * eye, moment.unsqueeze(-1)).squeeze(-1)
    return (weights * xs).sum(-1)


def dmmse_predictions(
    xs: Tensor, ys: Tensor, task_pool: Tensor, noise_variance: float, *, max_elements: int = 2**24
) -> Tensor:
    """dMMSE predictions ``(..., K)``: the posterior mean of ``y_k`` for the uniform prior on the pool.

    ``ŵ_k = Σ_m softmax_m(-Σ_{j<k}(y_j - t_mᵀx_j)²/(2σ²)) t_m`` and the prediction is ``x_kᵀŵ_k``
    (Raventós et al. 2023, eq. 3). Sequences are processed in chunks so that no intermediate holds
    more than about ``max_elements`` numbers (the pool may be large).
    """
    _check_sequences(xs, ys)
    _check_noise_variance(noise_variance)
    if task_pool.ndim != 2 or task_pool.shape[1] != xs.shape[-1] or task_pool.shape[0] < 1:
        raise ValueError(f"task_pool must have shape (M, {xs.shape[-1]}); got {tuple(task_pool.shape)}")
    *lead, k, d = xs.shape
    flat_xs, flat_ys = xs.reshape(-1, k, d), ys.reshape(-1, k)
    pool = task_pool.to(xs.dtype)
    chunk = max(1, max_elements // (k * pool.shape[0]))
    outputs = []
    for start in range(0, flat_xs.shape[0], chunk):
        cx, cy = flat_xs[start : start + chunk], flat_ys[start : start + chunk]
        residuals = cy.unsqueeze(-1) - cx @ pool.T  # (b, K, M): y_j - t_mᵀx_j
        log_weights = -_exclusive_cumsum(residuals.square(), dim=-2) / (2.0 * noise_variance)
        posterior = log_weights.softmax(dim=-1)  # (b, K, M)
        weights = posterior @ pool  # (b, K, D)
        outputs.append((weights * cx).sum(-1))
    return torch.cat(outputs).reshape(*lead, k)


def position_risks(predictions: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """Monte-Carlo risk per position: mean and standard error of ``(prediction - y)²`` over
    all leading axes; both of shape ``(K,)``."""
    if predictions.shape != ys.shape:
        raise ValueError(f"predictions and ys must have the same shape; got {tuple(predictions.shape)} and {tuple(ys.shape)}")
    errors = (predictions - ys).square().reshape(-1, ys.shape[-1])
    n = errors.shape[0]
    if n < 2:
        raise ValueError("position_risks needs at least two sequences for a standard error")
    return errors.mean(0), errors.std(0) / math.sqrt(n)


def icl_mse(predictions: Tensor, ys: Tensor) -> Tensor:
    """Plain mean squared error over sequences and positions (the training loss of Hoogland et al.;
    not the Gaussian negative log-likelihood ``(ŷ - y)²/(2σ²)``)."""
    return (predictions - ys).square().mean()


def warmup_cosine_lr(step: int, *, peak_lr: float, num_steps: int, warmup_steps: int, final_fraction: float = 0.01) -> float:
    """Learning rate at ``step``: linear warm-up from 0 to ``peak_lr`` over ``warmup_steps``, then a
    cosine decay to ``final_fraction · peak_lr`` at ``num_steps`` (a one-cycle schedule)."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, num_steps - warmup_steps))
    return peak_lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def log_spaced_steps(num_steps: int, num_points: int, first: int = 1) -> list[int]:
    """About ``num_points`` distinct integer steps from ``first`` to ``num_steps``, log-spaced,
    always including 0 and ``num_steps``."""
    _check_positive_int("num_steps", num_steps)
    _check_positive_int("num_points", num_points)
    grid = torch.logspace(math.log10(first), math.log10(num_steps), num_points, dtype=torch.float64)
    return sorted({0, num_steps, *(int(round(s)) for s in grid.tolist())})


class ModelEnsemble:
    """E models of one architecture with parameters stacked along a leading axis.

    ``make_model(generator)`` builds one member; member e is initialised from
    ``torch.Generator().manual_seed(seeds[e])``. ``ensemble(inputs)`` maps ``(E, B, …)`` to
    ``(E, B, …)`` with ``torch.func.vmap(functional_call)``: one batched computation instead of a
    Python loop over members. ``params`` are leaf tensors that an optimiser can step directly.
    """

    def __init__(self, make_model: Callable[[torch.Generator], nn.Module], seeds: Sequence[int]) -> None:
        if len(seeds) < 1:
            raise ValueError("ModelEnsemble needs at least one seed (one member per seed)")
        members = [make_model(torch.Generator().manual_seed(int(s))) for s in seeds]
        params, buffers = stack_module_state(members)
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        # A template on the meta device: functional_call only needs its structure.
        self._template = copy.deepcopy(members[0]).to("meta")
        self._member_template = members[0]
        self.num_members = len(members)

        def call_one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._template, (p, b), (x,))

        self._call = vmap(call_one)

    def __call__(self, inputs: Tensor) -> Tensor:
        if inputs.shape[0] != self.num_members:
            raise ValueError(f"inputs must have leading size {self.num_members} (one slice per member); got {tuple(inputs.shape)}")
        return self._call(self.params, self.buffers, inputs)

    def snapshot(self) -> dict[str, Tensor]:
        """Detached copies of the stacked parameters (a checkpoint)."""
        return {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def load(self, snapshot: dict[str, Tensor]) -> None:
        """Overwrite the stacked parameters with a snapshot."""
        for name, p in self.params.items():
            p.copy_(snapshot[name])

    def member(self, index: int, snapshot: dict[str, Tensor] | None = None) -> nn.Module:
        """A stand-alone module holding member ``index`` (of ``snapshot`` if given)."""
        if not 0 <= index < self.num_members:
            raise ValueError(f"index must lie in [0, {self.num_members}); got {index}")
        source = snapshot if snapshot is not None else self.params
        model = copy.deepcopy(self._member_template)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(source[name][index])
        return model
