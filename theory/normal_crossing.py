"""Normal crossings: the learning coefficient and the exact finite-temperature LLC target.

A normal crossing is the potential ``K(w) = Π_i w_i^{2k_i}`` with a prior density
``φ(w) ∝ Π_i |w_i|^{h_i}`` near the origin; by resolution of singularities every analytic ``K``
is locally a normal crossing in suitable coordinates (Watanabe, *Algebraic Geometry and Statistical
Learning Theory*, 2009, Thm 2.3 and §2.4; Watanabe, *Mathematical Theory of Bayesian Statistics*,
2018, §7). A "sum of monomials on disjoint variables" is ``K = Σ_j K_j(w^{(j)})`` with each
``K_j`` a monomial in its own block of variables.

Two exact quantities live here:

* :func:`learning_coefficient` — the asymptotic λ and multiplicity m;
* :func:`finite_temperature_llc` — what an *exact* sampler's LLC estimate ``nβ·E[K]`` converges
  to at finite ``nβ`` (and localization), the fair target for an SGLD estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from numbers import Rational

import numpy as np
from scipy import integrate, special

__all__ = ["learning_coefficient", "finite_temperature_llc"]


# --------------------------------------------------------------------------------------------
# input handling


def _as_blocks(k, h) -> tuple[list[list[int]], list[list[Fraction]]]:
    """Normalise ``k`` (one monomial or a list of monomials) and ``h`` to lists of blocks."""
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        k = [k]
    if not isinstance(k, Sequence) or len(k) == 0:
        raise ValueError(f"k must be a non-empty list of exponents (or of lists, one per block), got {k!r}")
    nested = all(isinstance(ki, Sequence) for ki in k)
    if not nested and any(isinstance(ki, Sequence) for ki in k):
        raise ValueError("k mixes exponents and lists: give one monomial [k1, k2, ...] or blocks [[...], [...]]")
    k_blocks = [list(b) for b in k] if nested else [list(k)]
    if h is None:
        h_blocks = [[0] * len(b) for b in k_blocks]
    else:
        if isinstance(h, (int, np.integer, Rational)) and not isinstance(h, bool):
            h = [h]
        h_nested = isinstance(h, Sequence) and len(h) > 0 and all(isinstance(hi, Sequence) for hi in h)
        h_blocks = [list(b) for b in h] if h_nested else [list(h)]
        if len(h_blocks) != len(k_blocks) or any(len(a) != len(b) for a, b in zip(h_blocks, k_blocks)):
            raise ValueError(
                f"h must have the same shape as k (one prior exponent per variable), got k={k!r}, h={h!r}"
            )
    for block in k_blocks:
        if len(block) == 0:
            raise ValueError("every block needs at least one variable")
        for ki in block:
            if isinstance(ki, bool) or not isinstance(ki, (int, np.integer)) or ki < 0:
                raise ValueError(f"exponents k_i must be integers ≥ 0 (K = Π w_i^(2 k_i)), got {ki!r}")
        if all(ki == 0 for ki in block):
            raise ValueError(
                f"block {block} has all k_i = 0: K would be constant 1, not zero at the origin"
            )
    hf_blocks = []
    for block in h_blocks:
        hf = []
        for hi in block:
            if isinstance(hi, bool) or not isinstance(hi, (int, np.integer, Rational, float)):
                raise ValueError(f"prior exponents h_i must be numbers > -1, got {hi!r}")
            hi = Fraction(hi) if not isinstance(hi, float) else Fraction(hi).limit_denominator(10**9)
            if hi <= -1:
                raise ValueError(f"prior exponent h_i = {hi} makes the prior non-integrable at 0; need h_i > -1")
            hf.append(hi)
        hf_blocks.append(hf)
    return k_blocks, hf_blocks


# --------------------------------------------------------------------------------------------
# the learning coefficient


def learning_coefficient(k, h=None) -> tuple[Fraction, int]:
    """Learning coefficient λ and multiplicity m of a normal crossing (Watanabe 2009, Thm 6.6 / §7.1).

    For ``K(w) = Π_i w_i^{2k_i}`` with prior ``φ(w) ∝ Π_i |w_i|^{h_i}`` near 0::

        λ = min_{i : k_i > 0} (h_i + 1) / (2 k_i),    m = #{i attaining the minimum}.

    For a sum of monomials on disjoint blocks of variables, ``K = Σ_j K_j``, the zeta function
    factorises and (Watanabe 2018, Remark 7.5 / §7.3)::

        λ = Σ_j λ_j,    m = Σ_j (m_j − 1) + 1.

    Args:
        k: exponents ``[k_1, …, k_d]`` of one monomial, or a list of such lists (one per block).
        h: prior exponents of the same shape (default all 0: a prior positive at the origin).

    Returns:
        ``(λ, m)`` with λ an exact :class:`fractions.Fraction`.

    Examples: ``a²b²`` → (1/2, 2); ``a²b⁴`` → (1/4, 1); ``a⁴b⁴`` → (1/4, 2).
    """
    k_blocks, h_blocks = _as_blocks(k, h)
    lam_total, m_total = Fraction(0), 1
    for kb, hb in zip(k_blocks, h_blocks):
        ratios = [(hi + 1) / (2 * ki) for ki, hi in zip(kb, hb) if ki > 0]
        lam = min(ratios)
        m = sum(1 for r in ratios if r == lam)
        lam_total += lam
        m_total += m - 1
    return lam_total, m_total


# --------------------------------------------------------------------------------------------
# the finite-temperature target


def finite_temperature_llc(
    k,
    h=None,
    *,
    nbeta: float,
    localization: float = 0.0,
    box: float | None = 1.0,
    method: str = "auto",
) -> float:
    """Exact ``nβ·E[K]`` under ``p(w) ∝ exp(−nβ K(w) − γ/2 ||w||²) Π_i |w_i|^{h_i}`` on a box.

    This is the value the LLC estimator ``nβ (E[K] − K(0))`` of an exact sampler converges to at
    inverse temperature ``t = nβ`` and localization ``γ`` centred at ``w* = 0``
    (Watanabe 2009, ch. 2–3;
    Lau et al. arXiv 2308.12108 eq. 8). It tends to λ as ``t → ∞`` with ``γ = 0``, slowly
    (~1/log t) when ``m > 1``.

    The density is even in every coordinate, so the integrals run over the positive orthant.
    Coordinates with ``k_i = 0`` do not enter ``K`` and factor out. For independent blocks
    ``E[tK] = Σ_j E[tK_j]`` (the density factorises across blocks).

    Two routes, cross-checked in the tests:

    * ``"reduction"`` — the last variable ``y`` (exponent ``b``, prior ``h``) is integrated in
      closed form. With ``c = t Π_{i<d} w_i^{2k_i}`` and, when ``γ = 0``,
      ``∫_0^B y^h e^{−c y^{2b}} dy = c^{−s} Γ(s) P(s, c B^{2b}) / (2b)`` and
      ``∫_0^B c y^{2b} y^h e^{−c y^{2b}} dy = c^{−s} Γ(s+1) P(s+1, c B^{2b}) / (2b)``,
      ``s = (h+1)/(2b)``, ``P`` the regularised lower incomplete gamma function; when ``γ > 0``
      and ``b = 1`` the same holds with ``c → c + γ/2`` in the exponential. In one variable with
      ``γ = 0`` this is the closed form ``t E[K] = s P(s+1, tB^{2k}) / P(s, tB^{2k})``
      (Watanabe 2009, ch. 2–3), which tends to ``s = (h+1)/(2k)`` as ``t → ∞``. The remaining
      ``d − 1 ≤ 2`` variables are integrated by adaptive quadrature on geometric sub-intervals.
    * ``"direct"`` — adaptive quadrature of both integrals in all variables (``d ≤ 2``).

    ``"auto"`` uses the reduction where it exists (``γ = 0``, or the last variable has ``k = 1``)
    and direct quadrature otherwise.

    Args:
        k, h: as in :func:`learning_coefficient`.
        nbeta: ``t = nβ > 0``.
        localization: ``γ ≥ 0``, a Gaussian pull ``exp(−γ/2 ||w||²)`` towards ``w* = 0``.
        box: the half-width ``B`` of the box ``[−B, B]^d``; ``None`` for all of ``R^d``, which
            needs ``localization > 0`` (otherwise the density is not normalisable).
    """
    k_blocks, h_blocks = _as_blocks(k, h)
    if not (isinstance(nbeta, (int, float)) and math.isfinite(nbeta) and nbeta > 0):
        raise ValueError(f"nbeta must be a finite number > 0, got {nbeta!r}")
    if not (isinstance(localization, (int, float)) and math.isfinite(localization) and localization >= 0):
        raise ValueError(f"localization must be a finite number ≥ 0, got {localization!r}")
    if box is None:
        if localization <= 0:
            raise ValueError("box=None (all of R^d) needs localization > 0 to make the density normalisable")
        bound = math.inf
    else:
        if not (isinstance(box, (int, float)) and math.isfinite(box) and box > 0):
            raise ValueError(f"box must be a finite number > 0 or None, got {box!r}")
        bound = float(box)
    if method not in ("auto", "reduction", "direct"):
        raise ValueError(f"method must be 'auto', 'reduction' or 'direct', got {method!r}")
    total = 0.0
    for kb, hb in zip(k_blocks, h_blocks):
        pairs = [(ki, float(hi)) for ki, hi in zip(kb, hb) if ki > 0]
        total += _monomial_target(pairs, float(nbeta), float(localization), bound, method)
    return total


def _monomial_target(pairs, t, gamma, bound, method) -> float:
    d = len(pairs)
    if gamma > 0 and pairs[-1][0] != 1 and method != "direct":
        # the closed form needs k = 1 in the last variable when γ > 0: put such a variable last
        quadratic = [i for i, (ki, _) in enumerate(pairs) if ki == 1]
        if quadratic:
            i = quadratic[-1]
            pairs = pairs[:i] + pairs[i + 1 :] + [pairs[i]]
    can_reduce = gamma == 0 or pairs[-1][0] == 1
    if method == "auto":
        method = "reduction" if can_reduce else "direct"
    if method == "reduction":
        if not can_reduce:
            raise ValueError("no closed-form reduction when γ > 0 and the last variable has k > 1; use method='direct'")
        if d > 3:
            raise NotImplementedError("the reduction route handles monomials in at most 3 variables")
        return _reduction(pairs, t, gamma, bound)
    if d > 2:
        raise NotImplementedError("direct quadrature handles monomials in at most 2 variables")
    return _direct(pairs, t, gamma, bound)


def _segments(bound: float, scale: float) -> list[tuple[float, float]]:
    """Geometric sub-intervals of [0, bound] (plus [R, ∞) when unbounded).

    The integrands vary on the scale ``scale`` and on every smaller scale down to 0 (their mass
    piles up near the coordinate axes as t grows), so one adaptive quad over [0, B] can miss it;
    decades of intervals resolve each scale.
    """
    top = bound if math.isfinite(bound) else max(1.0, 10 * scale)
    edges = [top * 10.0 ** (-j) for j in range(0, 24)]
    segs = [(edges[j + 1], edges[j]) for j in range(len(edges) - 1)]
    segs.append((0.0, edges[-1]))
    if not math.isfinite(bound):
        segs.append((top, math.inf))
    return segs


def _quad_segments(f, bound, scale) -> float:
    total = 0.0
    for a, b in _segments(bound, scale):
        val, _ = integrate.quad(f, a, b, limit=200, epsabs=0.0, epsrel=1e-11)
        total += val
    return total


def _last_variable_integrals(c: float, b: int, h: float, gamma: float, bound: float) -> tuple[float, float]:
    """``(∫ y^h e^{−c y^{2b} − γy²/2} dy, ∫ c y^{2b} y^h e^{…} dy)`` over ``[0, bound]`` in closed form.

    Valid when ``γ = 0`` or ``b = 1``. Written with the regularised incomplete gamma function and a
    series for tiny arguments, so that ``c → 0`` (where ``c^{−s}`` blows up) stays exact.
    """
    if b == 1:
        rate = c + gamma / 2  # e^{-c y² - γ y²/2} = e^{-rate y²}
        scale_num = c / rate if rate > 0 else 0.0
    else:
        rate, scale_num = c, 1.0
    s = (h + 1) / (2 * b)
    if rate == 0.0:  # y^h on [0, B] only (bounded case; unbounded needs γ > 0)
        return bound ** (h + 1) / (h + 1), 0.0
    z = rate * bound ** (2 * b) if math.isfinite(bound) else math.inf
    if z < 1e-8:
        # P(s, z) Γ(s) = z^s (1/s − z/(s+1) + …):  the c^{−s} factors cancel exactly
        base = bound ** (2 * b * s) / (2 * b)
        i0 = base * (1 / s - z / (s + 1))
        i1 = scale_num * base * z * (1 / (s + 1) - z / (s + 2))
        return i0, i1
    logc = math.log(rate)
    p0 = special.gammainc(s, z) if math.isfinite(z) else 1.0
    p1 = special.gammainc(s + 1, z) if math.isfinite(z) else 1.0
    i0 = math.exp(-s * logc + special.gammaln(s)) * p0 / (2 * b)
    i1 = scale_num * math.exp(-s * logc + special.gammaln(s + 1)) * p1 / (2 * b)
    return i0, i1


def _reduction(pairs, t, gamma, bound) -> float:
    *outer, (b, h_last) = pairs

    def inner(c: float) -> tuple[float, float]:
        return _last_variable_integrals(c, b, h_last, gamma, bound)

    if not outer:
        i0, i1 = inner(t)
        return float(i1 / i0)

    def weight(x: float, h: float) -> float:
        return x**h * math.exp(-gamma * x * x / 2)

    scale = t ** (-1 / (2 * sum(ki for ki, _ in pairs)))
    if len(outer) == 1:
        (a, ha), = outer

        def z(which: int):
            return lambda x: weight(x, ha) * inner(t * x ** (2 * a))[which]

        return _quad_segments(z(1), bound, scale) / _quad_segments(z(0), bound, scale)

    (a1, h1), (a2, h2) = outer

    def z2(which: int):
        def over_x1(x1: float) -> float:
            c1 = t * x1 ** (2 * a1)
            return weight(x1, h1) * _quad_segments(
                lambda x2: weight(x2, h2) * inner(c1 * x2 ** (2 * a2))[which], bound, scale
            )
        return over_x1

    return _quad_segments(z2(1), bound, scale) / _quad_segments(z2(0), bound, scale)


def _direct(pairs, t, gamma, bound) -> float:
    def density(ws) -> float:
        kval = 1.0
        logw = 0.0
        for (ki, hi), w in zip(pairs, ws):
            kval *= w ** (2 * ki)
            logw += hi * math.log(w) if w > 0 else (0.0 if hi == 0 else -math.inf)
            logw -= gamma * w * w / 2
        return kval, math.exp(logw - t * kval) if logw > -math.inf else 0.0

    scale = t ** (-1 / (2 * sum(ki for ki, _ in pairs)))
    if len(pairs) == 1:
        num = _quad_segments(lambda y: (lambda kv, p: t * kv * p)(*density([y])), bound, scale)
        den = _quad_segments(lambda y: density([y])[1], bound, scale)
        return num / den

    def nested(which: int):
        def f(x):
            def g(y):
                kv, p = density([x, y])
                return t * kv * p if which else p
            return _quad_segments(g, bound, scale)
        return f

    return _quad_segments(nested(1), bound, scale) / _quad_segments(nested(0), bound, scale)
