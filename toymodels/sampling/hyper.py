"""The sampler's hyperparameters: one type for the user, one for the kernels.

Users give :class:`SGLDHyperparameters` (three floats, checked when built). The driver broadcasts
them once, at its entry, into :class:`ChainHyperparameters`: three ``(num_chains, 1)`` tensors,
one value per chain, so every kernel does the same tensor arithmetic whether the chains share
their settings or each has its own (a calibration grid run as one batch). Nothing downstream
branches on float-or-tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

__all__ = ["SGLDHyperparameters", "ChainHyperparameters", "broadcast_hyperparameters",
           "sgld_hyperparameters_from_scales", "HYPERPARAMETER_NAMES"]

HYPERPARAMETER_NAMES = ("step_size", "nbeta", "localization")


@dataclass(frozen=True)
class SGLDHyperparameters:
    """Hyperparameters of one run, shared by its chains.

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


class _ChainFields(NamedTuple):
    step_size: torch.Tensor  #: (C, 1) ε
    nbeta: torch.Tensor  #: (C, 1) nβ
    localization: torch.Tensor  #: (C, 1) γ
    # derived once, so that a step's arithmetic costs no more tensor operations than with floats
    half_step: torch.Tensor  #: (C, 1) ε/2
    sqrt_step: torch.Tensor  #: (C, 1) √ε
    nbeta_row: torch.Tensor  #: (C,) nβ
    half_localization_row: torch.Tensor  #: (C,) γ/2
    two_step_row: torch.Tensor  #: (C,) 2ε
    half_step_nbeta_row: torch.Tensor  #: (C,) ε nβ / 2, the gradient's factor in the drift
    half_step_localization_row: torch.Tensor  #: (C,) ε γ / 2, the localization's factor
    neg_half_step_nbeta: torch.Tensor  #: (C, 1) −ε nβ / 2, for the fused step's multiply-adds
    neg_half_step_localization: torch.Tensor  #: (C, 1) −ε γ / 2


class ChainHyperparameters(_ChainFields):
    """Per-chain hyperparameters: ``step_size``, ``nbeta``, ``localization`` as ``(num_chains, 1)``
    tensors (they broadcast over the parameters), built from those three; the other fields are
    derived from them once. Change the step size with :meth:`with_step_size`."""

    __slots__ = ()

    def __new__(cls, step_size: torch.Tensor, nbeta: torch.Tensor, localization: torch.Tensor):
        half_step = 0.5 * step_size
        return super().__new__(
            cls, step_size, nbeta, localization, half_step, step_size.sqrt(), nbeta.squeeze(-1),
            (0.5 * localization).squeeze(-1), (2.0 * step_size).squeeze(-1),
            (half_step * nbeta).squeeze(-1), (half_step * localization).squeeze(-1),
            -(half_step * nbeta), -(half_step * localization))

    def with_step_size(self, step_size: torch.Tensor) -> ChainHyperparameters:
        """The same nβ and γ with another ``(C, 1)`` step size (step-size adaptation)."""
        return ChainHyperparameters(step_size, self.nbeta, self.localization)

    def select(self, chains: slice) -> ChainHyperparameters:
        """The hyperparameters of a block of the chains (a process's share of a split run)."""
        return ChainHyperparameters(self.step_size[chains], self.nbeta[chains], self.localization[chains])


def broadcast_hyperparameters(hyper: SGLDHyperparameters, per_chain: Mapping[str, torch.Tensor] | None,
                              num_chains: int, dtype: torch.dtype,
                              device: torch.device) -> ChainHyperparameters:
    """``hyper`` as ``(num_chains, 1)`` tensors, with ``per_chain`` values ``{name: (C,)}`` overriding it."""
    per_chain = dict(per_chain or {})
    unknown = set(per_chain) - set(HYPERPARAMETER_NAMES)
    if unknown:
        raise ValueError(f"chain_hyper keys must be step_size, nbeta or localization, got {sorted(unknown)}")
    values = {}
    for key in HYPERPARAMETER_NAMES:
        if key in per_chain:
            v = torch.as_tensor(per_chain[key], dtype=dtype, device=device).reshape(-1)
            if v.shape != (num_chains,):
                raise ValueError(f"chain_hyper[{key!r}] must have one value per chain ({num_chains}), "
                                 f"got shape {tuple(v.shape)}")
            lower_ok = (v >= 0) if key == "localization" else (v > 0)
            if not (torch.isfinite(v).all() and lower_ok.all()):
                raise ValueError(f"chain_hyper[{key!r}] must be finite and "
                                 f"{'≥ 0' if key == 'localization' else '> 0'}")
        else:
            v = torch.full((num_chains,), float(getattr(hyper, key)), dtype=dtype, device=device)
        values[key] = v.unsqueeze(1)
    return ChainHyperparameters(**values)


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


def _check_positive(name: str, value: float, hint: str = "") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        msg = f"{name} must be a finite number > 0, got {value!r}"
        raise ValueError(msg + (f"; {hint}" if hint else ""))
