"""The k-gon classifier of TMS parameters (Chen et al., arXiv 2310.06301, 2023, §3): which columns of ``W``
are vertices of the convex hull, and the (k, σ) type of a critical point."""

from __future__ import annotations

import math

import numpy as np
import torch

from toymodels.models.tms.loss import num_features, unflatten_params

__all__ = ["convex_hull_vertex_mask", "kgon_label", "kgon_labels", "kgon_type"]


# ---------------------------------------------------------------------------------------------
# The k-gon classifier
# ---------------------------------------------------------------------------------------------


def convex_hull_vertex_mask(points: torch.Tensor, *, norm_tol: float = 0.1,
                            angle_tol: float = 1e-9) -> torch.Tensor:
    """Which of ``points (..., c, 2)`` are vertices of the convex hull of the non-negligible ones.

    Points with norm below ``norm_tol`` are zero columns: never vertices and not used. In the
    plane, ``p`` is a strict vertex of the hull of a finite set iff the directions from ``p`` to
    the other points leave an angular gap larger than ``π`` (a line through ``p`` then has every
    other point strictly on one side); a gap of exactly ``π`` puts ``p`` on an edge. The test is
    sort-and-diff over ``(..., c, c−1)`` angles, so it vectorises over many parameters.
    """
    c = points.shape[-2]
    norms = torch.linalg.vector_norm(points, dim=-1)
    big = norms >= norm_tol  # (..., c)
    diff = points.unsqueeze(-3) - points.unsqueeze(-2)  # (..., c, c, 2): p_j − p_i at [i, j]
    angles = torch.atan2(diff[..., 1], diff[..., 0])  # (..., c, c)
    # others that take part: big, not p itself, not coincident with p (a duplicate is ignored)
    dist = torch.linalg.vector_norm(diff, dim=-1)
    eye = torch.eye(c, dtype=torch.bool, device=points.device)
    use = big.unsqueeze(-2) & ~eye & (dist > angle_tol * norms.amax(-1, keepdim=True).unsqueeze(-1))
    # unused entries copy the angle of some used one, which adds a zero gap and changes nothing
    first_used = torch.argmax(use.to(torch.int8), dim=-1, keepdim=True)
    fill = torch.gather(angles, -1, first_used).expand_as(angles)
    angles = torch.where(use, angles, fill)
    ordered, _ = torch.sort(angles, dim=-1)
    gaps = ordered.diff(dim=-1)
    wrap = ordered[..., :1] + 2 * math.pi - ordered[..., -1:]
    max_gap = torch.cat([gaps, wrap], dim=-1).amax(-1)
    has_other = use.any(-1)
    return big & (~has_other | (max_gap > math.pi + angle_tol))


def kgon_type(w: torch.Tensor, *, norm_tol: float = 0.1,
              positive_bias: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, σ)`` of each parameter ``w (..., 3c)``: the k^{σ+}-gon type of Chen et al. (2023).

    ``k`` = the number of convex-hull vertices of the columns ``W_i`` (columns shorter than
    ``norm_tol`` count as zero, see :func:`convex_hull_vertex_mask`); ``σ`` = the number of the
    other columns with bias above ``positive_bias``. A positive column of a k^{σ+}-gon has bias
    ``1/(2c)``, and the live and dead ones have bias ≤ 0, so the default threshold is halfway,
    ``1/(4c)``: a column whose bias has only drifted slightly above 0 is not yet counted.
    Returns two ``long`` tensors of shape ``(...)``.
    """
    c = num_features(w)
    if positive_bias is None:
        positive_bias = 1.0 / (4 * c)
    W, b = unflatten_params(w.detach())
    vertex = convex_hull_vertex_mask(W.transpose(-1, -2), norm_tol=norm_tol)
    k = vertex.sum(-1)
    sigma = ((~vertex) & (b > positive_bias)).sum(-1)
    return k, sigma


def kgon_label(k: int, sigma: int) -> str:
    """``"5"``, ``"5+"``, ``"4++"``: ``k`` followed by ``σ`` plus signs (the paper's k^{σ+})."""
    return f"{int(k)}" + "+" * int(sigma)


def kgon_labels(w: torch.Tensor, **kwargs) -> np.ndarray:
    """:func:`kgon_type` as an array of labels of shape ``w.shape[:-1]`` (``dtype=object``)."""
    k, sigma = kgon_type(w, **kwargs)
    flat = [kgon_label(a, s) for a, s in zip(k.reshape(-1).tolist(), sigma.reshape(-1).tolist())]
    return np.array(flat, dtype=object).reshape(tuple(k.shape))
