"""Teachers for deep linear networks: random ones (Aoyagi's cases by rank) and ones with a given product."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from toymodels.models.dln.network import DeepLinearNetwork, check_widths, flatten_layers, num_parameters, product_matrix


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


def matrix_rank(A: torch.Tensor) -> int:
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
    return DLNTeacher(widths=widths, layers=tuple(layers), rank=matrix_rank(product),
                      layer_ranks=tuple(matrix_rank(W) for W in layers))


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
    h = check_widths(widths)
    P = torch.as_tensor(product)
    if P.dim() != 2 or tuple(P.shape) != (h[-1], h[0]):
        raise ValueError(f"product must be a {h[-1]} × {h[0]} matrix for widths {h}, got {tuple(P.shape)}")
    r = matrix_rank(P) if rank is None else int(rank)
    if r > min(h):
        raise ValueError(f"rank {r} exceeds the narrowest width {min(h)}: no DLN with widths {h} has this product")
    g = torch.Generator().manual_seed(int(seed))
    U, s, Vh = torch.linalg.svd(P, full_matrices=False)
    L = len(h) - 1
    root = s[:r] ** (1.0 / L)
    frames = [Vh[:r].T] + [_random_frame(hi, r, g, P.dtype) for hi in h[1:-1]] + [U[:, :r]]
    layers = tuple((frames[i + 1] * root) @ frames[i].T for i in range(L))
    return DLNTeacher(widths=h, layers=layers, rank=r, layer_ranks=tuple(matrix_rank(W) for W in layers))
