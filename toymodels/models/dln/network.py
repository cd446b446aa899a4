"""Deep linear networks: widths, flat parameter vectors, the product map and the module."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn



# --------------------------------------------------------------------------------------------
# widths, flat vectors and the product map


def check_widths(widths) -> tuple[int, ...]:
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
    h = check_widths(widths)
    return sum(a * b for a, b in zip(h[:-1], h[1:]))


def unflatten_layers(w: torch.Tensor, widths: Sequence[int]) -> list[torch.Tensor]:
    """Split ``w`` of shape ``(..., d)`` into layers ``W_i`` of shape ``(..., H_{i+1}, H_i)``.

    Row-major, first layer first; the leading dimensions (chains) are kept, so one call serves a
    single vector and a batch of chains.
    """
    h = check_widths(widths)
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


def widths_of(layers: Sequence[torch.Tensor]) -> tuple[int, ...]:
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
        self.widths = check_widths(widths)
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
