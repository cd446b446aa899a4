"""Deep linear networks: the model, random teachers, data, and the Gaussian-likelihood loss.

A deep linear network (DLN) with widths ``H_1`` (input), ..., ``H_{L+1}`` (output) computes
``f(x) = W_L ⋯ W_1 x`` with ``W_i`` of shape ``H_{i+1} × H_i`` and no biases. Its parameter is one
flat vector ``w`` (the layers' entries, row-major, first layer first), ``d = Σ_i H_i H_{i+1}``.

**The loss and the meaning of nβ.** Data ``y = P* x + e`` with ``e ~ N(0, σ² I)``. The sampled
loss is the Gaussian negative log-likelihood per sample,

    L_n(w) = (1/n) Σ_k ||y_k − P(w) x_k||² / (2σ²)       (+ (N/2) log(2πσ²), dropped),

so that ``nβ L_n`` is the tempered log-likelihood and ``nβ`` means what it says. A plain mean
squared error ``(1/(nN)) Σ ||y − f||²`` is ``(2σ²/N)`` times this: sampling it at ``nβ`` would
sample the likelihood at ``2σ²nβ/N``, silently rescaling the temperature (Lau et al. arXiv
2308.12108, the tempered posterior). The
additive constant cancels in ``λ̂ = nβ (E[L_n] − L_n(w*))`` and is left out.

**Sufficient statistics.** The loss depends on the data only through second moments. Writing
``D = P(w) − P*``, ``e_k = y_k − P* x_k`` (the residual at the centre ``P*``)::

    L_n(w) = [ (1/n)Σ||e_k||² − 2 tr(D R) + tr(D S Dᵀ) ] / (2σ²),
    S = (1/n) Σ x_k x_kᵀ,   R = (1/n) Σ x_k e_kᵀ,

an identity in ``w`` (expand the square). :func:`dln_potential` evaluates it for a batch of
chains in ``O(d)`` work independent of ``n``; with the population moments (``S = E[xxᵀ]``,
``R = 0``, ``(1/n)Σ||e||² → Nσ²``) it is the population NLL, whose excess over its minimum is
``K(w) = tr(D Σ_xx Dᵀ)/(2σ²)``, the function whose learning coefficient Aoyagi computed.

**Random teachers** follow Lau, Furman, Wang, Murfet, Wei (arXiv 2308.12108, appendix on DLNs):
depth and each width uniform in ranges, each layer Gaussian, and with probability 1/2 each layer
reduced to a uniformly random rank by truncating its SVD. See :func:`random_teacher` for the
points of the true-parameter set at which the LLC equals Aoyagi's λ (not every one: the
teacher's own layers can carry rank the product does not use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch
from torch import nn

from toymodels.objectives.objective import Objective

__all__ = [
    "DLNObjective",
    "DLNTeacher",
    "DeepLinearNetwork",
    "SufficientStatistics",
    "dln_potential",
    "dln_step_size",
    "estimate_dln_llc",
    "flatten_layers",
    "gauss_newton_eigenvalues",
    "gaussian_nll_loss",
    "input_covariance",
    "make_data",
    "num_parameters",
    "product_matrix",
    "random_teacher",
    "sample_inputs",
    "teacher_from_product",
    "unflatten_layers",
]

INPUT_DISTRIBUTIONS = ("uniform", "gaussian")


# --------------------------------------------------------------------------------------------
# widths, flat vectors and the product map


def _check_widths(widths) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(
            f"widths must be a sequence of positive integers (input, hidden..., output), got {widths!r}"
        )
    if len(widths) < 2:
        raise ValueError(f"widths needs at least the input and output width, got {tuple(widths)!r}")
    for i, h in enumerate(widths):
        if isinstance(h, bool) or not isinstance(h, Integral) or h < 1:
            raise ValueError(f"widths[{i}] must be a positive integer, got {h!r}")
    return tuple(int(h) for h in widths)


def num_parameters(widths: Sequence[int]) -> int:
    """``d = Σ_i H_i H_{i+1}``, the number of weights of a bias-free DLN."""
    h = _check_widths(widths)
    return sum(a * b for a, b in zip(h[:-1], h[1:]))


def unflatten_layers(w: torch.Tensor, widths: Sequence[int]) -> list[torch.Tensor]:
    """Split ``w`` of shape ``(..., d)`` into layers ``W_i`` of shape ``(..., H_{i+1}, H_i)``.

    Row-major, first layer first; the leading dimensions (chains) are kept, so one call serves a
    single vector and a batch of chains.
    """
    h = _check_widths(widths)
    d = num_parameters(h)
    if w.shape[-1] != d:
        raise ValueError(f"a DLN with widths {h} has {d} parameters, got a vector of length {w.shape[-1]}")
    layers, start = [], 0
    for fan_in, fan_out in zip(h[:-1], h[1:]):
        size = fan_in * fan_out
        layers.append(w[..., start : start + size].reshape(*w.shape[:-1], fan_out, fan_in))
        start += size
    return layers


def flatten_layers(layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`unflatten_layers` for one network: ``[W_1, ..., W_L] -> (d,)``."""
    if len(layers) == 0:
        raise ValueError("need at least one layer")
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
        if a.shape[0] != b.shape[1]:
            raise ValueError(f"layer {i + 1} has {a.shape[0]} outputs but layer {i + 2} takes "
                             f"{b.shape[1]} inputs")
    return torch.cat([W.reshape(-1) for W in layers])


def _widths_of(layers: Sequence[torch.Tensor]) -> tuple[int, ...]:
    return (layers[0].shape[-1],) + tuple(W.shape[-2] for W in layers)


def product_matrix(w: torch.Tensor, widths: Sequence[int]) -> torch.Tensor:
    """``P(w) = W_L ⋯ W_1``, shape ``(..., H_{L+1}, H_1)``, for one vector or a batch."""
    layers = unflatten_layers(w, widths)
    P = layers[0]
    for W in layers[1:]:
        P = W @ P
    return P


# --------------------------------------------------------------------------------------------
# the network as an nn.Module (for the generic estimate_llc(model, data=...) path)


class DeepLinearNetwork(nn.Module):
    """``x ↦ W_L ⋯ W_1 x`` as a stack of bias-free ``nn.Linear`` layers.

    Args:
        widths: ``(H_1, ..., H_{L+1})``, input first.
        layers: optional weights ``[W_1, ..., W_L]`` (``W_i`` is ``H_{i+1} × H_i``); default:
            entries ``N(0, init_scale²)``.
        init_scale: the standard deviation of the default initialisation.
        generator: randomness for the default initialisation.
        dtype: parameter dtype (float64 by default: exact comparisons need it).
    """

    def __init__(self, widths: Sequence[int], layers: Sequence[torch.Tensor] | None = None, *,
                 init_scale: float = 1.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.widths = _check_widths(widths)
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=False, dtype=dtype) for a, b in zip(self.widths[:-1], self.widths[1:])
        )
        with torch.no_grad():
            if layers is None:
                for lin in self.layers:
                    lin.weight.copy_(init_scale * torch.randn(lin.weight.shape, generator=generator,
                                                              dtype=dtype))
            else:
                if len(layers) != len(self.layers):
                    raise ValueError(f"widths {self.widths} need {len(self.layers)} layers, got {len(layers)}")
                for i, (lin, W) in enumerate(zip(self.layers, layers)):
                    if tuple(W.shape) != tuple(lin.weight.shape):
                        raise ValueError(f"layer {i + 1} must have shape {tuple(lin.weight.shape)}, "
                                         f"got {tuple(W.shape)}")
                    lin.weight.copy_(W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, H_1) -> (n, H_{L+1})
        for lin in self.layers:
            x = lin(x)
        return x

    def flat_parameters(self) -> torch.Tensor:
        """The flat vector ``w`` in the order of :func:`unflatten_layers` (a detached copy)."""
        return torch.cat([lin.weight.detach().reshape(-1) for lin in self.layers]).clone()

    def product(self) -> torch.Tensor:
        """The end-to-end matrix ``W_L ⋯ W_1`` (``H_{L+1} × H_1``)."""
        return product_matrix(self.flat_parameters(), self.widths)


# --------------------------------------------------------------------------------------------
# teachers


@dataclass(frozen=True)
class DLNTeacher:
    """A teacher network: its widths and layers, and the rank of its end-to-end matrix.

    Attributes:
        widths: ``(H_1, ..., H_{L+1})``.
        layers: ``(W_1, ..., W_L)``, float64.
        rank: the rank ``r`` of ``P* = W_L ⋯ W_1``, the argument of Aoyagi's formula.
        layer_ranks: the ranks of the individual layers.
    """

    widths: tuple[int, ...]
    layers: tuple[torch.Tensor, ...]
    rank: int
    layer_ranks: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.widths)

    @property
    def flat(self) -> torch.Tensor:
        """The teacher as one flat parameter vector ``w*``."""
        return flatten_layers(self.layers)

    @property
    def product(self) -> torch.Tensor:
        return product_matrix(self.flat, self.widths)

    @property
    def is_minimal(self) -> bool:
        """Every layer has rank exactly ``r``: the point lies on the most singular stratum."""
        return all(q == self.rank for q in self.layer_ranks)

    def network(self) -> DeepLinearNetwork:
        return DeepLinearNetwork(self.widths, list(self.layers), dtype=self.layers[0].dtype)

    def minimal_factorization(self, seed: int = 0, singular_values: Sequence[float] | None = None
                              ) -> "DLNTeacher":
        """The same widths and end-to-end rank, factorised with every layer of rank ``r``.

        See :func:`teacher_from_product`. With ``singular_values=None`` the product is kept
        exactly (``P*`` unchanged); otherwise its nonzero singular values are replaced (singular
        vectors kept), e.g. to bound the conditioning of the sampling problem.
        """
        P = self.product
        if singular_values is not None:
            U, s, Vh = torch.linalg.svd(P)
            new = torch.as_tensor(list(singular_values), dtype=P.dtype)
            if new.numel() != self.rank or (new <= 0).any():
                raise ValueError(f"give exactly rank = {self.rank} positive singular values, got "
                                 f"{list(singular_values)}")
            P = (U[:, : self.rank] * new) @ Vh[: self.rank]
        return teacher_from_product(P, self.widths, seed=seed, rank=self.rank)


def _matrix_rank(A: torch.Tensor) -> int:
    # relative tolerance well above float64 round-off of products of a few Gaussian matrices and
    # well below the smallest singular value a truncation leaves (those are O(1) by construction)
    if A.numel() == 0:
        return 0
    s = torch.linalg.svdvals(A)
    if s[0] == 0:
        return 0
    return int((s > 1e-9 * s[0]).sum())


def _check_range(name: str, value) -> tuple[int, int]:
    ok = (isinstance(value, Sequence) and len(value) == 2
          and all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)
          and 1 <= value[0] <= value[1])
    if not ok:
        raise ValueError(f"{name} must be a pair (low, high) of integers with 1 ≤ low ≤ high, got {value!r}")
    return int(value[0]), int(value[1])


def random_teacher(seed: int, *, depth: tuple[int, int] = (2, 5), width: tuple[int, int] = (2, 20),
                   reduce_probability: float = 0.5, layer_std: float | None = None,
                   dtype: torch.dtype = torch.float64) -> DLNTeacher:
    """A random DLN teacher following Lau et al. (arXiv 2308.12108, appendix on DLNs).

    The number of layers ``L`` is uniform on ``depth`` (inclusive), each of the ``L + 1`` widths
    uniform on ``width``; each layer ``W_i`` has i.i.d. ``N(0, s_i²)`` entries, and with
    probability ``reduce_probability`` is replaced by its truncated SVD at a rank drawn uniformly
    from ``0, ..., min(H_i, H_{i+1})``. The end-to-end rank ``r`` is computed from the product.

    ``layer_std`` is ``s_i``; the default ``1/sqrt(H_i)`` keeps the product's singular values of
    order one at every depth (Lau et al. use ``s_i = 1`` with inputs on ``[-10, 10]``; the scale of
    the teacher only rescales the curvature, which the step-size rule absorbs).

    Note (the mathematics, not the source): Aoyagi's λ is the learning coefficient at the true
    *distribution*, the minimum of the local one over the fiber ``{w: P(w) = P*}``, attained on
    its most singular stratum (every layer of rank ``r``). A drawn teacher whose layers carry
    rank the product does not use is elsewhere on the fiber, where the local value in the strict
    sense is larger: for widths (5, 5, 5, 5) with ``W_1, W_3`` invertible and ``rank W_2 = 2``,
    ``P(w)`` is a submersion near the teacher, so it is 25/2, against Aoyagi's 11. With
    localization γ = 1 the posterior is not that local: chains started there measure ≈ 12.5 for a
    short while and then drift along the fiber to the most singular stratum within reach, after
    which they agree with chains started on it (measured in ``experiments/dln_llc_vs_aoyagi.py``).
    :meth:`DLNTeacher.minimal_factorization` gives a point of the same fiber on that stratum.
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    lo_depth, hi_depth = _check_range("depth", depth)
    lo_width, hi_width = _check_range("width", width)
    if not 0.0 <= reduce_probability <= 1.0:
        raise ValueError(f"reduce_probability must be in [0, 1], got {reduce_probability!r}")
    g = torch.Generator().manual_seed(int(seed))

    def uniform_int(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (), generator=g))

    num_layers = uniform_int(lo_depth, hi_depth)
    widths = tuple(uniform_int(lo_width, hi_width) for _ in range(num_layers + 1))
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        std = 1.0 / math.sqrt(fan_in) if layer_std is None else float(layer_std)
        W = std * torch.randn(fan_out, fan_in, generator=g, dtype=dtype)
        reduce = bool(torch.rand((), generator=g, dtype=torch.float64) < reduce_probability)
        if reduce:
            target_rank = uniform_int(0, min(fan_in, fan_out))
            U, s, Vh = torch.linalg.svd(W, full_matrices=False)
            W = (U[:, :target_rank] * s[:target_rank]) @ Vh[:target_rank]
        layers.append(W)
    product = product_matrix(flatten_layers(layers), widths)
    return DLNTeacher(widths=widths, layers=tuple(layers), rank=_matrix_rank(product),
                      layer_ranks=tuple(_matrix_rank(W) for W in layers))


def _random_frame(rows: int, cols: int, g: torch.Generator, dtype) -> torch.Tensor:
    """A ``rows × cols`` matrix with orthonormal columns (``cols ≤ rows``), Haar-random."""
    if cols == 0:
        return torch.zeros(rows, 0, dtype=dtype)
    Q, R = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=dtype))
    return Q * torch.sign(torch.diagonal(R))  # sign fix makes the law Haar


def teacher_from_product(product: torch.Tensor, widths: Sequence[int], *, seed: int = 0,
                         rank: int | None = None) -> DLNTeacher:
    """A balanced factorisation of ``product`` through ``widths`` with every layer of rank ``r``.

    With ``P* = U diag(s) Vᵀ`` (rank ``r``, ``r ≤ min(widths)``) and random orthonormal frames
    ``Q_i`` (``H_i × r``) for the hidden layers::

        W_1 = Q_2 diag(s)^{1/L} Vᵀ,   W_i = Q_{i+1} diag(s)^{1/L} Q_iᵀ,   W_L = U diag(s)^{1/L} Q_Lᵀ,

    so ``W_L ⋯ W_1 = P*`` and every layer has rank exactly ``r`` (each hidden layer splits into an
    ``r``-dimensional signal channel and ``H_i − r`` dead units). This is the most singular
    stratum of the fiber ``{P(w) = P*}``, where the local learning coefficient is Aoyagi's λ.
    """
    h = _check_widths(widths)
    P = torch.as_tensor(product)
    if P.dim() != 2 or tuple(P.shape) != (h[-1], h[0]):
        raise ValueError(f"product must be a {h[-1]} × {h[0]} matrix for widths {h}, got {tuple(P.shape)}")
    r = _matrix_rank(P) if rank is None else int(rank)
    if r > min(h):
        raise ValueError(f"rank {r} exceeds the narrowest width {min(h)}: no DLN with widths {h} has this product")
    g = torch.Generator().manual_seed(int(seed))
    U, s, Vh = torch.linalg.svd(P, full_matrices=False)
    L = len(h) - 1
    root = s[:r] ** (1.0 / L)
    frames = [Vh[:r].T] + [_random_frame(hi, r, g, P.dtype) for hi in h[1:-1]] + [U[:, :r]]
    layers = tuple((frames[i + 1] * root) @ frames[i].T for i in range(L))
    return DLNTeacher(widths=h, layers=layers, rank=r, layer_ranks=tuple(_matrix_rank(W) for W in layers))


# --------------------------------------------------------------------------------------------
# data and the loss


def _check_distribution(inputs: str) -> None:
    if inputs not in INPUT_DISTRIBUTIONS:
        raise ValueError(f"inputs must be one of {INPUT_DISTRIBUTIONS}, got {inputs!r}")


def input_covariance(width: int, inputs: str = "gaussian", scale: float = 1.0,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``E[x xᵀ]`` of the input law: ``scale² I`` (Gaussian ``N(0, scale² I)``) or ``scale²/3 I``
    (uniform on ``[-scale, scale]`` per coordinate)."""
    _check_distribution(inputs)
    var = scale**2 if inputs == "gaussian" else scale**2 / 3.0
    return var * torch.eye(width, dtype=dtype)


def sample_inputs(n: int, width: int, inputs: str = "gaussian", scale: float = 1.0, *,
                  generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """``n`` inputs ``(n, width)``: ``N(0, scale²)`` or ``U[-scale, scale]`` per coordinate."""
    _check_distribution(inputs)
    if inputs == "gaussian":
        return scale * torch.randn(n, width, generator=generator, dtype=dtype)
    return scale * (2 * torch.rand(n, width, generator=generator, dtype=dtype) - 1)


def make_data(product: torch.Tensor | DLNTeacher, n: int, *, inputs: str = "gaussian",
              input_scale: float = 1.0, noise_std: float = 1.0, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pairs ``(x, y)``, ``y = P* x + N(0, noise_std² I)``; returns ``(X (n, H_1), Y (n, N))``.

    ``product`` is ``P*`` or a teacher. Lau et al. use ``inputs="uniform"``, ``input_scale=10``,
    ``noise_std=1``.
    """
    P = product.product if isinstance(product, DLNTeacher) else torch.as_tensor(product)
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0 (it sets the likelihood's scale), got {noise_std!r}")
    g = torch.Generator().manual_seed(int(seed))
    X = sample_inputs(n, P.shape[1], inputs, input_scale, generator=g, dtype=P.dtype)
    Y = X @ P.T + noise_std * torch.randn(n, P.shape[0], generator=g, dtype=P.dtype)
    return X, Y


def gaussian_nll_loss(noise_std: float = 1.0):
    """``loss_fn(outputs, targets) = mean_k ||y_k − f_k||² / (2σ²)``, the per-sample Gaussian NLL
    (without its constant ``(N/2) log 2πσ²``), for ``estimate_llc(model, data=..., loss_fn=...)``.

    Not ``F.mse_loss``: that averages over the ``N`` outputs too and lacks the ``1/(2σ²)``, which
    would rescale nβ by ``2σ²/N``.
    """
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std!r}")
    scale = 1.0 / (2.0 * noise_std**2)

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return scale * ((outputs - targets) ** 2).sum(-1).mean()

    return loss_fn


@dataclass(frozen=True)
class SufficientStatistics:
    """Second moments from which the DLN's Gaussian NLL is computed exactly (module docstring).

    Attributes:
        center_product: ``P*`` (``N × H_1``), the product the residuals are taken at.
        input_moment: ``S = (1/n) Σ x xᵀ`` (``H_1 × H_1``).
        cross_moment: ``R = (1/n) Σ x eᵀ`` (``H_1 × N``), ``e = y − P* x``.
        residual_moment: ``(1/n) Σ ||e||²``.
        num_samples: ``n``, or ``None`` for population moments.
    """

    center_product: torch.Tensor
    input_moment: torch.Tensor
    cross_moment: torch.Tensor
    residual_moment: float
    num_samples: int | None

    @classmethod
    def from_data(cls, inputs: torch.Tensor, targets: torch.Tensor, center_product: torch.Tensor,
                  chunk: int = 1 << 16) -> "SufficientStatistics":
        """Moments of a dataset, accumulated in chunks (float64)."""
        X, Y = torch.as_tensor(inputs), torch.as_tensor(targets)
        P = torch.as_tensor(center_product)
        if X.dim() != 2 or Y.dim() != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(f"inputs and targets must be (n, H_1) and (n, N), got {tuple(X.shape)} "
                             f"and {tuple(Y.shape)}")
        if tuple(P.shape) != (Y.shape[1], X.shape[1]):
            raise ValueError(f"center_product must be {Y.shape[1]} × {X.shape[1]}, got {tuple(P.shape)}")
        n = X.shape[0]
        P = P.double()
        S = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64)
        R = torch.zeros(X.shape[1], Y.shape[1], dtype=torch.float64)
        ee = 0.0
        for i in range(0, n, chunk):
            x, y = X[i : i + chunk].double(), Y[i : i + chunk].double()
            e = y - x @ P.T
            S += x.T @ x
            R += x.T @ e
            ee += float((e * e).sum())
        return cls(P, S / n, R / n, ee / n, n)

    @classmethod
    def population(cls, center_product: torch.Tensor, input_cov: torch.Tensor,
                   noise_std: float = 1.0) -> "SufficientStatistics":
        """Population moments: ``S = E[xxᵀ]``, ``R = 0``, ``E||e||² = N σ²`` (data from ``P*``)."""
        P = torch.as_tensor(center_product).double()
        S = torch.as_tensor(input_cov).double()
        if tuple(S.shape) != (P.shape[1], P.shape[1]):
            raise ValueError(f"input_cov must be {P.shape[1]} × {P.shape[1]}, got {tuple(S.shape)}")
        return cls(P, S, torch.zeros(P.shape[1], P.shape[0], dtype=torch.float64),
                   P.shape[0] * noise_std**2, None)


def dln_potential(widths: Sequence[int], stats: SufficientStatistics, noise_std: float = 1.0):
    """The exact full-batch Gaussian NLL ``L_n(w)`` of a DLN, as a potential of the flat vector.

    ``L_n(w) = [ (1/n)Σ||e||² − 2 tr(D R) + tr(D S Dᵀ) ] / (2σ²)``, ``D = P(w) − P*`` (module
    docstring); written over the last dimension, so it maps ``(d,)`` to a scalar and
    ``(C, d)`` to ``(C,)`` (``potential.batched = True``: the sampler calls it on all chains at
    once). ``tr(D S Dᵀ) = ||D S^{1/2}||²`` with the symmetric square root, which keeps the
    quadratic term non-negative in floating point.
    """
    h = _check_widths(widths)
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std!r}")
    if tuple(stats.center_product.shape) != (h[-1], h[0]):
        raise ValueError(f"the statistics are for a {tuple(stats.center_product.shape)} product, "
                         f"widths {h} need {h[-1]} × {h[0]}")
    evals, evecs = torch.linalg.eigh(stats.input_moment)
    root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T  # S^{1/2}
    center = stats.center_product
    cross_t = stats.cross_moment.T.contiguous()  # Rᵀ, N × H_1: tr(D R) = Σ D ∘ Rᵀ
    scale = 1.0 / (2.0 * noise_std**2)
    const = stats.residual_moment

    def potential(w: torch.Tensor) -> torch.Tensor:
        D = product_matrix(w, h) - center.to(w.dtype)
        quad = ((D @ root.to(w.dtype)) ** 2).sum((-2, -1))
        lin = (D * cross_t.to(w.dtype)).sum((-2, -1))
        return scale * (const - 2.0 * lin + quad)

    potential.batched = True  # type: ignore[attr-defined]
    potential.dim = num_parameters(h)  # type: ignore[attr-defined]
    return potential


class DLNObjective(Objective):
    """The sufficient-statistics NLL of :func:`dln_potential` with a closed-form gradient.

    Same loss, but the sampler's gradients come from the chain rule through the product written
    out by hand instead of autograd: with ``G = ∂L/∂P = (D S − Rᵀ)/σ²``,

        ∂L/∂W_i = (W_L ⋯ W_{i+1})ᵀ G (W_{i−1} ⋯ W_1)ᵀ,

    a handful of batched matrix products per step. For the small matrices of a DLN the sampler is
    bound by per-operation overhead, and this is several times faster than autograd; the test
    suite checks the gradient against autograd in float64. Use it with
    :func:`toymodels.run_sgld` and :func:`toymodels.llc_from_trace`.

    Args:
        widths: the network's widths.
        stats: the data's (or the population's) sufficient statistics.
        center: ``w*``, the flat vector to localize at (its product need not equal
            ``stats.center_product``, e.g. at a point reached by training).
        noise_std: σ of the Gaussian likelihood.
    """

    def __init__(self, widths: Sequence[int], stats: SufficientStatistics, center: torch.Tensor,
                 noise_std: float = 1.0):
        self.widths = _check_widths(widths)
        self.potential = dln_potential(self.widths, stats, noise_std)
        center = torch.as_tensor(center)
        if center.dim() != 1 or center.numel() != num_parameters(self.widths):
            raise ValueError(f"center must be a flat vector of {num_parameters(self.widths)} "
                             f"parameters, got shape {tuple(center.shape)}")
        self.center = center.detach().clone()
        self.num_samples = stats.num_samples
        dtype = self.center.dtype
        self._target = stats.center_product.to(dtype)
        self._input_moment = stats.input_moment.to(dtype)
        self._cross_t = stats.cross_moment.T.contiguous().to(dtype)
        self._has_cross = bool(stats.cross_moment.abs().max() > 0)  # R = 0 for population moments
        self._residual = float(stats.residual_moment)
        self._inv_var = 1.0 / noise_std**2

    def batched_loss(self, params, generator=None):
        return self.potential(params)

    def full_loss(self, params):
        with torch.no_grad():
            return self.potential(params)

    def loss_and_grad(self, params, generator=None):
        with torch.no_grad():
            layers = unflatten_layers(params, self.widths)
            prefix = [layers[0]]  # prefix[i] = W_{i+1} ⋯ W_1 (0-based: layers[i] ⋯ layers[0])
            for W in layers[1:]:
                prefix.append(W @ prefix[-1])
            D = prefix[-1] - self._target
            G = D @ self._input_moment  # D S for now
            quad = (D * G).sum((-2, -1))  # tr(D S Dᵀ)
            if self._has_cross:
                lin = (D * self._cross_t).sum((-2, -1))  # tr(D R)
                G = G - self._cross_t
            else:
                lin = 0.0
            loss = (0.5 * self._inv_var) * (self._residual - 2.0 * lin + quad)
            G = G * self._inv_var  # ∂L/∂P = (D S − Rᵀ)/σ², (C, N, H_1)
            grads = [None] * len(layers)
            # walk from the output: upstream = (W_L ⋯ W_{i+1})ᵀ G, then multiply by the prefix
            upstream = G
            for i in range(len(layers) - 1, -1, -1):
                grads[i] = upstream if i == 0 else upstream @ prefix[i - 1].transpose(-2, -1)
                if i > 0:
                    upstream = layers[i].transpose(-2, -1) @ upstream
            grad = torch.cat([g.reshape(*params.shape[:-1], -1) for g in grads], dim=-1)
        return loss, grad


def gauss_newton_eigenvalues(widths: Sequence[int], w: torch.Tensor, input_cov: torch.Tensor,
                             noise_std: float = 1.0) -> torch.Tensor:
    """Eigenvalues (descending) of the Gauss–Newton matrix ``Jᵀ (I_N ⊗ Σ_xx) J / σ²`` at ``w``.

    ``J = ∂ vec P / ∂w``. At a point with ``P(w) = P*`` this is the Hessian of the population
    loss ``K``; its largest eigenvalue ``h_max`` sets the SGLD step size (``ε nβ h_max`` must
    stay small), and its positive eigenvalues are the regular directions' curvatures. Computed
    from the ``(N H_1)``-sized matrix ``Σ^{1/2} J Jᵀ Σ^{1/2}`` (same nonzero spectrum), so the
    cost is small even for ``d`` in the thousands. Returns the ``min(N H_1, d)`` eigenvalues.
    """
    h = _check_widths(widths)
    w = torch.as_tensor(w).double()
    jac = torch.func.jacrev(lambda v: product_matrix(v, h).reshape(-1))(w)  # (N H_1, d)
    evals, evecs = torch.linalg.eigh(torch.as_tensor(input_cov).double())
    root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    # vec is row-major: entry (i, j) of P is index i H_1 + j; right-multiplying D by S^{1/2} acts
    # on the j index, i.e. by I_N ⊗ S^{1/2} on vec D
    weighted = torch.einsum("ijd,jk->ikd", jac.reshape(h[-1], h[0], -1), root).reshape(h[-1] * h[0], -1)
    gram = weighted @ weighted.T / noise_std**2
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0)


def dln_step_size(widths: Sequence[int], center: torch.Tensor, input_moment: torch.Tensor, *,
                  nbeta: float, noise_std: float = 1.0, step_fraction: float = 0.1
                  ) -> tuple[float, float]:
    """The SGLD step size ``ε = step_fraction / (nβ h_ref)`` for a DLN at ``center``; returns
    ``(ε, h_ref)``.

    ``h_ref = max(h_max, L ||S|| / σ²)``: ``h_max`` is the largest Gauss–Newton eigenvalue at
    ``center`` (:func:`gauss_newton_eigenvalues`), the stiffest regular direction; an Euler step
    biases that direction's share of ``E[nβ L]`` by the factor ``1/(1 − ε nβ h/4)``, so
    ``step_fraction = 0.1`` costs at most 2.5% there (and less on average). The floor
    ``L ||S||/σ²`` is ``h_max`` of a balanced network with unit end-to-end singular value; it
    governs points whose own curvature is small or zero (rank 0, where ``w* = 0``): there the
    chains spread along the flat directions of ``{P(w) = P*}`` to weights of order ``1/sqrt(γ)``,
    where products of order-one layers set the stiffness.
    """
    h = _check_widths(widths)
    if not (0 < step_fraction <= 1):
        raise ValueError(f"step_fraction must be in (0, 1] (0.1 is a good default), got {step_fraction!r}")
    if not nbeta > 0:
        raise ValueError(f"nbeta must be > 0, got {nbeta!r}")
    S = torch.as_tensor(input_moment).double()
    h_max = float(gauss_newton_eigenvalues(h, center, S, noise_std)[0])
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

    ``sampler="mala"`` (default) runs :class:`toymodels.sampling.kernels.MALA` at that fixed ε (the SGLD
    proposal with a Metropolis test, whose stationary law is exact; a DLN needs it: chains spread
    along the flat directions of the fiber ``{P(w) = P*}`` into regions many times stiffer than
    ``w*``, where a step size set at ``w*`` biases SGLD upwards); ``"sgld"`` runs plain SGLD (:func:`toymodels.run_sgld`), which
    with a step size set at ``w*`` over-estimates λ once chains reach the stiffer parts of the
    fiber (measured: +16% at a regular 5-layer teacher where MALA with the same ε is exact).
    Returns a :class:`toymodels.LLCResult`; for MALA, ``result.trace.records["accepted"]``
    holds the acceptance indicators (chains × draws).
    """
    from toymodels.estimators.llc import llc_from_trace
    from toymodels.sampling import run_sgld
    from toymodels.sampling import SGLDHyperparameters

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
