"""Data and the loss of a deep linear network: inputs, the Gaussian NLL, sufficient statistics, the
potential and the objective built on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from toymodels.objectives import Objective
from toymodels.models.dln.network import check_widths, num_parameters, product_matrix, unflatten_layers
from toymodels.models.dln.teacher import DLNTeacher


INPUT_DISTRIBUTIONS = ("uniform", "gaussian")


# --------------------------------------------------------------------------------------------
# data and the loss


def check_distribution(inputs: str) -> None:
    if inputs not in INPUT_DISTRIBUTIONS:
        raise ValueError(f"inputs must be one of {INPUT_DISTRIBUTIONS}, got {inputs!r}")


def input_covariance(width: int, inputs: str = "gaussian", scale: float = 1.0,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``E[x xᵀ]`` of the input law: ``scale² I`` (Gaussian ``N(0, scale² I)``) or ``scale²/3 I``
    (uniform on ``[-scale, scale]`` per coordinate)."""
    check_distribution(inputs)
    var = scale**2 if inputs == "gaussian" else scale**2 / 3.0
    return var * torch.eye(width, dtype=dtype)


def sample_inputs(n: int, width: int, inputs: str = "gaussian", scale: float = 1.0, *,
                  generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """``n`` inputs ``(n, width)``: ``N(0, scale²)`` or ``U[-scale, scale]`` per coordinate."""
    check_distribution(inputs)
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
    h = check_widths(widths)
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
        D = product_matrix(w, h) - center.to(w)
        quad = ((D @ root.to(w)) ** 2).sum((-2, -1))
        lin = (D * cross_t.to(w)).sum((-2, -1))
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
        self.widths = check_widths(widths)
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
