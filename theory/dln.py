"""Learning coefficients of deep linear networks, in exact rational arithmetic.

A deep linear network with widths ``H_1`` (input), ``H_2``, ..., ``H_{M+1}`` (output) computes
``x -> W_M ... W_1 x`` with ``W_i`` of shape ``H_{i+1} x H_i`` and no biases. Its learning
coefficient (real log canonical threshold) ``lambda`` and multiplicity ``m`` at a truth whose
product has rank ``r`` depend only on the widths and ``r``:

- ``learning_coefficient``: Aoyagi's theorem for any depth (M. Aoyagi, "Consideration on the
  learning efficiency of multiple-layered neural networks with linear units", Neural Networks 172
  (2024) 106132, main theorem; restated in the appendix of Lau, Furman, Wang, Murfet, Wei,
  arXiv 2308.12108).
- ``rrr_learning_coefficient``: the depth-2 case, reduced-rank regression (M. Aoyagi and
  S. Watanabe, "Stochastic complexities of reduced rank regression in Bayesian estimation",
  Neural Networks 18 (2005) 924-933, main theorem), kept as an independent check.

Everything is exact: ``fractions.Fraction`` for ``lambda`` and ``int`` for ``m``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from numbers import Integral

__all__ = [
    "aoyagi_candidate_index_sets",
    "aoyagi_index_set",
    "learning_coefficient",
    "parameter_count",
    "rrr_learning_coefficient",
]


def _check_width(value, name: str) -> int:
    # bool is an Integral subclass, but True as a width is a bug, not a width of 1.
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(
            "widths must be a sequence of positive integers (input, hidden..., output), "
            f"got {widths!r}"
        )
    if len(widths) < 2:
        raise ValueError(
            f"widths needs at least two entries (input and output width), got {tuple(widths)!r}"
        )
    return tuple(_check_width(h, f"widths[{i}]") for i, h in enumerate(widths))


def _check_rank(rank, upper: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, Integral) or not 0 <= rank <= upper:
        raise ValueError(
            f"rank must be an integer in 0..{upper} (the narrowest width), got {rank!r}"
        )
    return int(rank)


def parameter_count(widths: Sequence[int]) -> int:
    """Number of weights ``d = sum_i H_i H_{i+1}`` of a bias-free deep linear network."""
    h = _check_widths(widths)
    return sum(a * b for a, b in zip(h[:-1], h[1:]))


def _passes(deltas: Sequence[int], subset: Sequence[int]) -> bool:
    """Aoyagi's conditions (i)-(iii) for the index set ``subset`` (|subset| = l + 1 >= 2).

    (i) ``max_S Delta < min_notS Delta``; (ii) ``l max_S Delta <= sum_S Delta``;
    (iii) ``sum_S Delta < l min_notS Delta``; (i) and (iii) are vacuous when S is everything.
    """
    inside = [deltas[i] for i in subset]
    outside = [deltas[i] for i in range(len(deltas)) if i not in set(subset)]
    ell = len(inside) - 1
    total = sum(inside)
    if ell < 1 or ell * max(inside) > total:
        return False
    if outside:
        return max(inside) < min(outside) and total < ell * min(outside)
    return True


def aoyagi_candidate_index_sets(widths: Sequence[int], rank: int) -> list[tuple[int, ...]]:
    """All index sets Sigma that pass Aoyagi's conditions, found by scanning prefixes.

    With ``Delta_s = H_s - r`` (0-based positions into ``widths``), condition (i) forces Sigma
    to be a prefix of the indices sorted by ``Delta`` that does not split a tie, so only those
    prefixes of size ``l + 1 = 2, 3, ..., M + 1`` are scanned. ``l >= 1`` is required: allowing
    ``l = 0`` gives wrong answers (e.g. 0 instead of 13/2 for widths (5, 3, 5), r = 0).
    The theorem asserts exactly one set passes; each set is returned as sorted positions.
    """
    h = _check_widths(widths)
    r = _check_rank(rank, min(h))
    deltas = [w - r for w in h]
    order = sorted(range(len(h)), key=lambda i: deltas[i])
    found = []
    for size in range(2, len(h) + 1):
        if size < len(h) and deltas[order[size - 1]] == deltas[order[size]]:
            continue  # this prefix would split a tie, so (i) fails
        prefix = tuple(sorted(order[:size]))
        if _passes(deltas, prefix):
            found.append(prefix)
    return found


def aoyagi_index_set(widths: Sequence[int], rank: int) -> tuple[int, ...]:
    """The unique index set Sigma of Aoyagi's theorem (0-based positions into ``widths``)."""
    found = aoyagi_candidate_index_sets(widths, rank)
    if len(found) != 1:  # would contradict the theorem; never silently pick one
        raise RuntimeError(
            f"expected exactly one Aoyagi index set for widths={tuple(widths)}, rank={rank}, "
            f"found {found}"
        )
    return found[0]


def learning_coefficient(widths: Sequence[int], rank: int) -> tuple[Fraction, int]:
    """Learning coefficient ``lambda`` and multiplicity ``m`` of a deep linear network.

    Aoyagi (Neural Networks 172 (2024) 106132, main theorem; Lau et al. arXiv 2308.12108,
    appendix). Widths ``H_1`` (input) ... ``H_{M+1}`` (output), true product rank ``r``,
    ``Delta_s = H_s - r``, Sigma the unique index set of size ``l + 1`` (``l >= 1``) from
    ``aoyagi_index_set``, ``S = sum_Sigma Delta``, ``a = S - (ceil(S/l) - 1) l``::

        lambda = (-r^2 + r (H_1 + H_{M+1})) / 2 + a (l - a) / (4 l)
                 - (l (l - 1) / 4) (S / l)^2 + (1/2) sum_{i<j in Sigma} Delta_i Delta_j
        m      = a (l - a) + 1

    Returns ``(lambda, m)`` as ``(Fraction, int)``. One layer (two widths) gives
    ``H_1 H_2 / 2``; depth 2 agrees with ``rrr_learning_coefficient``.
    """
    h = _check_widths(widths)
    r = _check_rank(rank, min(h))
    sigma = aoyagi_index_set(h, r)
    deltas = [h[i] - r for i in sigma]
    ell = len(deltas) - 1
    total = sum(deltas)
    a = total - (-(-total // ell) - 1) * ell  # -(-x // y) is ceil(x / y) for integers
    pair_sum = (total * total - sum(x * x for x in deltas)) // 2  # sum_{i<j} Delta_i Delta_j
    lam = (
        Fraction(-r * r + r * (h[0] + h[-1]), 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction(ell * (ell - 1), 4) * Fraction(total, ell) ** 2
        + Fraction(pair_sum, 2)
    )
    return lam, a * (ell - a) + 1


def rrr_learning_coefficient(M: int, H: int, N: int, rank: int) -> tuple[Fraction, int]:
    """Reduced-rank regression ``x in R^M -> B A x``, ``A: H x M``, ``B: N x H``, true rank r.

    Aoyagi & Watanabe, Neural Networks 18 (2005) 924-933, main theorem. The cases are
    exclusive because ``r <= min(M, H, N)``:

    - Case 1 (``N + r <= M + H``, ``M + r <= N + H``, ``H + r <= M + N``):
      ``lambda = [2 (H + r)(M + N) - (M - N)^2 - (H + r)^2] / 8``, ``m = 1`` if
      ``M + H + N + r`` is even; if odd, add 1 inside the bracket and ``m = 2``.
    - Case 2 (``M + H < N + r``): ``lambda = (H M - H r + N r) / 2``, ``m = 1``.
    - Case 3 (``N + H < M + r``): ``lambda = (H N - H r + M r) / 2``, ``m = 1``.
    - Case 4 (``M + N < H + r``): ``lambda = M N / 2``, ``m = 1``.
    """
    M, H, N = (_check_width(v, name) for v, name in ((M, "M"), (H, "H"), (N, "N")))
    r = _check_rank(rank, min(M, H, N))
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2), 1
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2), 1
    if M + N < H + r:
        return Fraction(M * N, 2), 1
    bracket = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
    if (M + H + N + r) % 2 == 0:
        return Fraction(bracket, 8), 1
    return Fraction(bracket + 1, 8), 2
