"""Exact potentials as torch functions of one flat parameter vector.

These are the torch twins of the closed forms in ``theory/``; they are written independently
(theory has no torch), and the two meet only in tests and experiments. Each function returns a
``potential(w) -> scalar`` for a single ``(d,)`` vector; the sampler lifts it to many chains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["normal_crossing_potential", "normal_crossing_log_prior", "quadratic_potential"]


def _blocks(k) -> list[list[int]]:
    if isinstance(k, int):
        k = [k]
    if not isinstance(k, Sequence) or len(k) == 0:
        raise ValueError(f"k must be a list of exponents or a list of blocks, got {k!r}")
    if all(isinstance(b, Sequence) for b in k):
        return [list(b) for b in k]
    return [list(k)]


def normal_crossing_potential(k, h=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``K(w) = Σ_j Π_{i ∈ block j} w_i^{2 k_i}`` (one block: a single monomial).

    The flat vector lists the blocks' variables in order; its length is the total number of
    exponents. Exponents are as in :func:`theory.normal_crossing.learning_coefficient`.

    Prior exponents ``h_i`` (integers ≥ 0) are realised exactly by a *radial lift*: variable
    ``w_i`` becomes a block ``v_i ∈ R^{h_i+1}`` and ``w_i^{2k_i}`` becomes ``|v_i|^{2k_i}``. In polar
    coordinates the volume element is ``r^{h_i} dr dΩ``, so the law of ``|v_i|`` under a flat (or
    Gaussian-localized) density is that of ``w_i ≥ 0`` under the prior ``∝ |w_i|^{h_i}``, and
    ``E[K]`` is unchanged — while the lifted potential stays smooth (the prior's ``log|w|`` would
    put an infinite force at ``w = 0`` into the SGLD drift). The lifted dimension is
    ``Σ_i (h_i + 1)``.
    """
    blocks = _blocks(k)
    for block in blocks:
        if any((not isinstance(ki, int)) or ki < 0 for ki in block):
            raise ValueError(f"exponents must be integers ≥ 0, got {block}")
    if h is not None:
        return _lifted_normal_crossing(blocks, _blocks(h))
    sizes = [len(b) for b in blocks]
    exps = torch.tensor([2.0 * ki for b in blocks for ki in b])
    dim = sum(sizes)
    # block membership as a 0/1 matrix, so that the block products are one reduction:
    # Σ_j Π_{i∈j} w_i^{2k_i} = Σ_j exp(Σ_i M_ji log|w_i|^{2k_i}) would lose signs and zeros, so
    # instead multiply within blocks by a masked product (few ops: the sampler is op-bound).
    membership = torch.zeros(len(blocks), dim)
    start = 0
    for j, size in enumerate(sizes):
        membership[j, start : start + size] = 1.0
        start += size
    single = len(blocks) == 1

    def potential(w: torch.Tensor) -> torch.Tensor:
        # written over the last dimension, so it also takes a (num_chains, d) batch directly
        powers = w ** exps.to(w)
        if single:
            return torch.prod(powers, dim=-1)
        # entries outside a block become 1 so they do not change that block's product
        m = membership.to(w)
        return torch.prod(powers.unsqueeze(-2) * m + (1 - m), dim=-1).sum(-1)

    potential.dim = dim  # type: ignore[attr-defined]
    potential.batched = True  # type: ignore[attr-defined]  # the sampler may skip vmap
    return potential


def _lifted_normal_crossing(blocks, h_blocks):
    if len(h_blocks) != len(blocks) or any(len(a) != len(b) for a, b in zip(h_blocks, blocks)):
        raise ValueError("h must have the same shape as k")
    flat_h = [hi for b in h_blocks for hi in b]
    if any((not isinstance(hi, int)) or hi < 0 for hi in flat_h):
        raise ValueError("the radial lift needs integer prior exponents h_i ≥ 0; for others use "
                         "normal_crossing_log_prior as a log_prior")
    flat_k = [ki for b in blocks for ki in b]
    groups = torch.repeat_interleave(torch.arange(len(flat_k)), torch.tensor([hi + 1 for hi in flat_h]))
    owner = torch.repeat_interleave(torch.arange(len(blocks)), torch.tensor([len(b) for b in blocks]))
    dim = int(groups.numel())
    # radius² of each lifted variable: (…, d) -> (…, num_vars), as one matrix product
    gather = torch.zeros(dim, len(flat_k))
    gather[torch.arange(dim), groups] = 1.0
    member = torch.zeros(len(flat_k), len(blocks))
    member[torch.arange(len(flat_k)), owner] = 1.0
    exps = torch.tensor([float(ki) for ki in flat_k])

    def potential(w: torch.Tensor) -> torch.Tensor:
        r2 = (w * w) @ gather.to(w)
        powers = r2 ** exps.to(w)  # |v_i|^{2 k_i}
        m = member.to(w)
        return torch.prod(powers.unsqueeze(-1) * m + (1 - m), dim=-2).sum(-1)

    potential.dim = dim  # type: ignore[attr-defined]
    potential.batched = True  # type: ignore[attr-defined]
    return potential


def normal_crossing_log_prior(h) -> Callable[[torch.Tensor], torch.Tensor]:
    """``log φ(w) = Σ_i h_i log|w_i|`` (up to a constant), the prior ``φ ∝ Π |w_i|^{h_i}``.

    Its gradient ``h_i / w_i`` repels the chain from ``w_i = 0`` where ``h_i > 0``.
    """
    flat = [float(x) for block in _blocks(h) for x in block]
    if any(x <= -1 for x in flat):
        raise ValueError("prior exponents must be > -1")
    hs = torch.tensor(flat)

    def log_prior(w: torch.Tensor) -> torch.Tensor:
        return (hs.to(w) * torch.log(torch.abs(w))).sum(-1)

    return log_prior


def quadratic_potential(matrix: torch.Tensor, center: torch.Tensor | None = None):
    """``K(w) = ½ (w − c)ᵀ A (w − c)`` for a symmetric positive semi-definite ``A``."""
    matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
    if not torch.allclose(matrix, matrix.T):
        raise ValueError("matrix must be symmetric")
    c = torch.zeros(matrix.shape[0], dtype=matrix.dtype) if center is None else torch.as_tensor(center)

    def potential(w: torch.Tensor) -> torch.Tensor:
        z = w - c.to(w)
        return 0.5 * (z * (z @ matrix.to(w))).sum(-1)

    potential.batched = True  # type: ignore[attr-defined]
    return potential
