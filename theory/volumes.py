"""Exact prior volumes ``V(ε) = Prior{w : K(w) < ε}`` of the sublevel sets of a potential.

The volume of the sublevel set near ``w*`` scales as ``V(ε) ≈ C ε^λ (log 1/ε)^{m−1}`` as ε → 0,
with ``λ`` the learning coefficient and ``m`` its multiplicity (Watanabe, *Algebraic Geometry and
Statistical Learning Theory*, 2009, Thm 6.7 and §7.1, via the zeta function ``ζ(z) = ∫ K^z φ dw``
whose largest pole is ``−λ`` of order ``m``; Urdshals, Lau, Hoogland, van Wingerden, Murfet,
arXiv 2510.12077, §3, where ``−log V(ε) ≈ λ log(1/ε)`` is the description length of ``w`` to
tolerance ε). Here the volumes are exact, for:

* **normal crossings** ``K = Π_i w_i^{2k_i}`` on the box ``[−B, B]^d`` with the prior
  ``φ ∝ Π_i |w_i|^{h_i}`` (:func:`normal_crossing_volume`). With ``u_i = |w_i|/B`` the variables
  ``Y_i = −2k_i log u_i`` are independent exponentials of rate ``ρ_i = (h_i+1)/(2k_i)`` and
  ``−log(K/B^{2Σk}) = Σ_i Y_i``, so ``V(ε) = P(Σ Y_i > log(B^{2Σk}/ε))``, the survival function of
  a hypoexponential law: a finite sum ``Σ_a ε^{ρ_a} poly_a(log 1/ε)`` by partial fractions of its
  Laplace transform ``Π ρ_i/(s + ρ_i)`` (exact rationals). Its leading term is
  ``λ = min ρ_i`` (:func:`theory.normal_crossing.learning_coefficient`), ``m`` = the number of
  ``i`` attaining it. Cross-checked by direct quadrature of the prior over the last variable
  (``method="quadrature"``). Sums of monomials on disjoint blocks: the law of ``Σ_j K_j`` is the
  convolution of the blocks' laws (one 1-D integral per extra block).
* **regular quadratics** ``K = ½ wᵀ A w`` (:func:`quadratic_volume_gaussian`, Gaussian prior
  ``N(0, I/γ)``: the CDF of a weighted χ², by Ruben's χ²-mixture series and by conditioning on
  one coordinate at a time; :func:`quadratic_volume_box`, uniform prior on a box: the ellipsoid's volume while it
  fits, and nested quadrature otherwise). ``λ = rank(A)/2``, ``m = 1``
  (:func:`theory.regular.regular_learning_coefficient`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy import integrate, special

from theory.normal_crossing import learning_coefficient
from theory.regular import regular_learning_coefficient

__all__ = [
    "hypoexponential_terms",
    "normal_crossing_volume",
    "normal_crossing_leading_term",
    "quadratic_volume_gaussian",
    "quadratic_volume_box",
    "quadratic_leading_term",
    "volume_learning_coefficient",
]


# --------------------------------------------------------------------------------------------
# input checks


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0 (the tolerance K < eps), got {eps!r}")
    return eps


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _blocks(k, h):
    """``(k_blocks, h_blocks)`` as lists of lists, checked by ``learning_coefficient``."""
    learning_coefficient(k, h)  # raises with its own messages on bad exponents
    if isinstance(k, (int, np.integer)):
        k = [k]
    nested = all(isinstance(ki, Sequence) for ki in k)
    k_blocks = [list(b) for b in k] if nested else [list(k)]
    if h is None:
        h_blocks = [[0] * len(b) for b in k_blocks]
    else:
        if not isinstance(h, Sequence):
            h = [h]
        h_blocks = [list(b) for b in h] if nested else [list(h)]
    h_blocks = [[Fraction(x) if not isinstance(x, float) else Fraction(x).limit_denominator(10**9)
                 for x in b] for b in h_blocks]
    return k_blocks, h_blocks


# --------------------------------------------------------------------------------------------
# normal crossings


def hypoexponential_terms(rates: Sequence[Fraction]) -> list[tuple[Fraction, list[Fraction]]]:
    """``P(Σ_i Y_i > L) = Σ_a e^{−ρ_a L} Σ_j c_{a,j} L^j`` for independent ``Y_i ~ Exp(ρ_i)``.

    Returns ``[(ρ_a, [c_{a,0}, c_{a,1}, ...]), ...]`` over the distinct rates, ascending, in exact
    rationals. The Laplace transform of the density is ``F(s) = Π_a (ρ_a/(s+ρ_a))^{n_a}``; its
    partial fractions ``F = Σ_a Σ_{j=1}^{n_a} b_{a,j}/(s+ρ_a)^j`` (``b_{a,j}`` the coefficient of
    ``u^{n_a−j}`` in the Taylor series at ``u = s+ρ_a = 0`` of ``(s+ρ_a)^{n_a} F(s)``) give the
    density ``Σ b_{a,j} x^{j−1} e^{−ρ_a x}/(j−1)!`` and, integrated from ``L`` to ∞, the survival
    ``Σ b_{a,j} e^{−ρ_a L} Σ_{i<j} L^i ρ_a^{−(j−i)}/i!`` (the Erlang tail).
    """
    rates = [Fraction(r) for r in rates]
    if not rates or any(r <= 0 for r in rates):
        raise ValueError(f"rates must be a non-empty list of numbers > 0, got {rates!r}")
    distinct = sorted(set(rates))
    mult = {r: rates.count(r) for r in distinct}
    out = []
    for ra in distinct:
        na = mult[ra]
        # Taylor series in u of ρ_a^{n_a} Π_{b≠a} (ρ_b/(u + ρ_b − ρ_a))^{n_b}, to degree n_a − 1
        series = [Fraction(0)] * na
        series[0] = ra**na
        for rb in distinct:
            if rb == ra:
                continue
            nb, delta = mult[rb], rb - ra
            # (ρ_b/δ)^{n_b} (1 + u/δ)^{−n_b} = (ρ_b/δ)^{n_b} Σ_k binom(−n_b, k) (u/δ)^k
            factor = [(rb / delta) ** nb * Fraction(math.comb(nb + q - 1, q) * (-1) ** q) / delta**q
                      for q in range(na)]
            series = [sum(series[p] * factor[q - p] for p in range(q + 1)) for q in range(na)]
        b = {j: series[na - j] for j in range(1, na + 1)}
        coeffs = [Fraction(0)] * na
        for j, bj in b.items():
            for i in range(j):
                coeffs[i] += bj / (ra ** (j - i) * math.factorial(i))
        out.append((ra, coeffs))
    return out


def _monomial_rates(kb, hb) -> tuple[list[Fraction], int]:
    """Exponential rates ``(h_i+1)/(2k_i)`` of the variables with ``k_i > 0``, and ``Σ k_i``."""
    rates = [(hi + 1) / (2 * ki) for ki, hi in zip(kb, hb) if ki > 0]
    return rates, sum(kb)


def _monomial_volume_closed(kb, hb, eps: float, box: float) -> float:
    rates, ksum = _monomial_rates(kb, hb)
    log_top = 2 * ksum * math.log(box)  # K ≤ B^{2Σk} on the box
    L = log_top - math.log(eps)
    if L <= 0:
        return 1.0
    total = 0.0
    for rho, coeffs in hypoexponential_terms(rates):
        poly = sum(float(c) * L**i for i, c in enumerate(coeffs))
        total += math.exp(-float(rho) * L) * poly
    return min(max(total, 0.0), 1.0)


def _monomial_volume_quadrature(kb, hb, eps: float, box: float) -> float:
    """``V(ε)`` by integrating the prior of the last variable over the closed form of the rest
    (recursively; one variable: ``V = min(1, (ε/B^{2k})^{(h+1)/(2k)})``)."""
    pairs = [(ki, float(hi)) for ki, hi in zip(kb, hb) if ki > 0]

    def vol(ps, e):
        if e <= 0:
            return 0.0
        (k_last, h_last) = ps[-1]
        if len(ps) == 1:
            return min(1.0, (e / box ** (2 * k_last)) ** ((h_last + 1) / (2 * k_last)))
        rest = ps[:-1]
        top = box ** (2 * sum(k for k, _ in rest))

        def integrand(u):  # u = |w_last|/B with prior density (h+1) u^h on [0, 1]
            y = (box * u) ** (2 * k_last)
            inner = 1.0 if y <= e / top else vol(rest, e / y)
            return (h_last + 1) * u**h_last * inner

        # the inner volume is 1 below u0 (kink) and decays above: split there, and by decades
        u0 = min(1.0, (e / top) ** (1 / (2 * k_last)) / box)
        edges = sorted({0.0, u0, 1.0} | {u0 * 10.0**j for j in range(1, 20) if u0 * 10.0**j < 1})
        with warnings.catch_warnings():  # accuracy is checked against the closed form (tests)
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return sum(integrate.quad(integrand, a, b_, limit=200, epsabs=0, epsrel=1e-11)[0]
                       for a, b_ in zip(edges[:-1], edges[1:]) if b_ > a)

    return vol(pairs, eps)


def _block_cdf(kb, hb, box, method):
    return lambda e: (_monomial_volume_closed(kb, hb, e, box) if method == "closed"
                      else _monomial_volume_quadrature(kb, hb, e, box))


def normal_crossing_volume(k, h=None, *, eps: float, box: float = 1.0, method: str = "closed") -> float:
    """``V(ε) = φ{w ∈ [−B, B]^d : K(w) < ε}`` for ``K = Σ_j Π_{i∈j} w_i^{2k_i}``, prior ``φ ∝ Π |w_i|^{h_i}``.

    The prior is normalised on the box. One monomial (module docstring): with
    ``L = log(B^{2Σk}/ε)``, ``V = Σ_a ε'^{ρ_a} poly_a(L)`` (:func:`hypoexponential_terms`,
    ``ε' = e^{−L}``), exact; ``V = 1`` for ``ε ≥ B^{2Σk}``. ``method="quadrature"`` integrates the
    last variable's prior numerically over the one-variable closed form (Watanabe 2009, §2.4: the
    zeta function of a normal crossing factorises over variables), the independent route the
    tests compare with. Several blocks: ``V(ε) = ∫_0^ε V_rest(ε − x) dV_1(x)`` (independence of
    the blocks under the product prior), evaluated as ``V_rest(ε) − ∫_0^ε V_1(x) V_rest'(…)``
    — here by the Stieltjes integral ``∫_0^ε V_1(ε − y) dV_rest(y)`` on a geometric grid.

    Args:
        k, h: exponents and prior exponents as in :func:`theory.normal_crossing.learning_coefficient`.
        eps: the tolerance ε > 0.
        box: the half-width B > 0 of the box.
        method: ``"closed"`` or ``"quadrature"`` (per block).
    """
    eps = _check_eps(eps)
    box = _check_positive(box, "box")
    if method not in ("closed", "quadrature"):
        raise ValueError(f"method must be 'closed' or 'quadrature', got {method!r}")
    k_blocks, h_blocks = _blocks(k, h)
    cdfs = [_block_cdf(kb, hb, box, method) for kb, hb in zip(k_blocks, h_blocks)]
    return _convolve(cdfs, eps)


def _convolve(cdfs, eps: float) -> float:
    """``P(Σ_j X_j < ε)`` for independent ``X_j ≥ 0`` with CDFs ``cdfs``: one 1-D Stieltjes
    integral per extra block, ``P(X + Y < ε) = ∫_0^ε F_X(ε − y) dF_Y(y)``, written as
    ``∫_0^ε F_Y(y) f_X(ε − y) dy`` after integrating by parts with ``F_X(0) = 0`` — computed as
    ``∫_0^ε F_Y(ε − x) dF_X(x)`` with ``F_X`` differentiated numerically on a log grid."""
    if len(cdfs) == 1:
        return cdfs[0](eps)
    first, rest = cdfs[0], cdfs[1:]

    def rest_cdf(e):
        return _convolve(rest, e) if e > 0 else 0.0

    # substitute x = ε e^{−s}, s ∈ [0, ∞): dF_X(x) = F_X'(x) x ds; F_X' from the closed form's
    # derivative in log x (central difference in log, exact to ~1e-8 on these smooth functions)
    def integrand(s):
        x = eps * math.exp(-s)
        hstep = 1e-5
        dlogF = (first(x * math.exp(hstep)) - first(x * math.exp(-hstep))) / (2 * hstep)
        return dlogF * rest_cdf(eps - x)

    s_max = math.log(eps) + 690.0  # x ≥ e^{-690}: below it both CDFs are 0 in floating point
    edges = [e for e in (0.0, 1e-6, 1e-3, 0.1, 1, 3, 10, 30, 100, 300) if e < s_max] + [s_max]
    return sum(integrate.quad(integrand, a, b, limit=200, epsabs=1e-15, epsrel=1e-9)[0]
               for a, b in zip(edges[:-1], edges[1:]))


def normal_crossing_leading_term(k, h=None, *, box: float = 1.0) -> tuple[Fraction, int, float]:
    """``(λ, m, C)`` with ``V(ε) ~ C ε^λ (log 1/ε)^{m−1}`` as ε → 0 (normal crossing on a box).

    One monomial: the coefficient of ``e^{−λL} L^{m−1}`` in :func:`hypoexponential_terms`,
    ``C = λ^{m−1}/(m−1)! Π_{ρ_i ≠ λ} ρ_i/(ρ_i − λ)``, times ``B^{−2λΣk}`` from the box
    (``L = log(1/ε) + 2Σk log B``). Blocks: ``C = Π_j C_j Γ(λ_j + 1) / Γ(λ + 1)`` (the Dirichlet
    integral of the product of the blocks' power laws; the log factors are slowly varying and
    multiply). ``λ, m`` as :func:`theory.normal_crossing.learning_coefficient`.
    """
    box = _check_positive(box, "box")
    k_blocks, h_blocks = _blocks(k, h)
    lam, m = learning_coefficient(k_blocks, h_blocks)
    const = 1.0
    for kb, hb in zip(k_blocks, h_blocks):
        rates, ksum = _monomial_rates(kb, hb)
        rho, coeffs = hypoexponential_terms(rates)[0]
        cj = float(coeffs[-1]) * box ** (-2 * float(rho) * ksum)
        const *= cj * math.gamma(float(rho) + 1)
    return lam, m, const / math.gamma(float(lam) + 1)


# --------------------------------------------------------------------------------------------
# regular quadratics


def _check_eigenvalues(eigenvalues) -> np.ndarray:
    a = np.asarray(eigenvalues, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("eigenvalues must be a non-empty 1-D list of finite numbers ≥ 0 "
                         f"(A positive semi-definite), got {eigenvalues!r}")
    if not np.any(a > 0):
        raise ValueError("all eigenvalues are 0: K ≡ 0 and every sublevel set has volume 1")
    return a


def quadratic_volume_gaussian(eigenvalues, *, eps: float, localization: float = 1.0,
                              method: str = "ruben") -> float:
    """``V(ε) = P(½ wᵀAw < ε)`` for ``w ~ N(0, I/γ)``: the CDF of a weighted χ².

    With ``z ~ N(0, I)``, ``K = Σ_i c_i z_i²``, ``c_i = a_i/(2γ)`` (zero eigenvalues drop out).

    * ``"ruben"`` — Ruben's series (Ruben, Ann. Math. Stat. 33 (1962) 542, eq. 2.3): with
      ``β ≤ min c_i``, ``P(K < ε) = Σ_k g_k P(χ²_{q+2k} < ε/β)``, ``g_0 = Π (β/c_i)^{1/2}``,
      ``g_k = (1/(2k)) Σ_{j<k} G_{k−j} g_j``, ``G_r = Σ_i (1 − β/c_i)^r``; the terms are positive
      and sum to 1, so the truncation error is known.
    * ``"conditional"`` (at most 3 curved directions) — the last ``z`` integrated against its
      normal density over the others' CDF, ``P(K < ε) = ∫ P(K_rest < ε − c_q z²) φ(z) dz``,
      recursively down to ``P(χ²_1 < ε/c)``.
    """
    eps = _check_eps(eps)
    gamma = _check_positive(localization, "localization")
    a = _check_eigenvalues(eigenvalues)
    c = a[a > 0] / (2 * gamma)
    q = c.size
    if method == "ruben":
        beta = float(c.min())
        ratio = beta / c
        x = eps / beta
        # g and G grow together; g_k is a dot product of the first k of each (a convolution)
        max_terms = 200_000
        g = np.zeros(max_terms)
        G = np.zeros(max_terms)
        g[0] = float(np.prod(np.sqrt(ratio)))
        total, mass, k = g[0] * special.gammainc(q / 2, x / 2), g[0], 0
        while mass < 1 - 1e-14 and k + 1 < max_terms:
            k += 1
            G[k] = float(np.sum((1 - ratio) ** k))
            g[k] = float(np.dot(G[k:0:-1], g[:k])) / (2 * k)
            mass += g[k]
            total += g[k] * special.gammainc((q + 2 * k) / 2, x / 2)
        return float(min(max(total, 0.0), 1.0))
    if method == "conditional":
        if q > 3:
            raise NotImplementedError("the conditional route handles at most 3 curved directions")

        def cdf(coeffs, e):  # P(Σ c_i z_i² < e): integrate the last z over the rest's CDF
            if e <= 0:
                return 0.0
            if len(coeffs) == 1:
                return float(special.gammainc(0.5, e / coeffs[0] / 2))  # P(χ²_1 < e/c)
            last, rest = coeffs[-1], coeffs[:-1]
            z_max = math.sqrt(e / last)
            density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
            return 2 * integrate.quad(lambda z: density(z) * cdf(rest, e - last * z * z), 0, z_max,
                                      limit=200, epsabs=0, epsrel=1e-11)[0]

        return cdf(list(c), eps)
    raise ValueError(f"method must be 'ruben' or 'conditional', got {method!r}")


def quadratic_volume_box(eigenvalues, *, eps: float, box: float = 1.0,
                         method: str = "auto") -> float:
    """``V(ε)`` for ``K = ½ Σ_i a_i w_i²`` (axes-aligned) under the uniform prior on ``[−B, B]^d``.

    While the ellipsoid ``{K < ε}`` fits in the box (``2ε/a_i ≤ B²`` for every ``a_i > 0``) its
    volume is the closed form ``ω_q Π_i (2ε/a_i)^{1/2} / (2B)^q``, ``ω_q = π^{q/2}/Γ(q/2 + 1)``
    (directions with ``a_i = 0`` integrate out). Otherwise (``"quadrature"``, at most 3 curved
    directions): ``V(ε) = ∫_0^1 V_{rest}(ε − a_d B² u²/2) du`` recursively, the last variable's
    uniform prior integrated over the others' volume.
    """
    eps = _check_eps(eps)
    box = _check_positive(box, "box")
    a = _check_eigenvalues(eigenvalues)
    a = a[a > 0]
    q = a.size
    fits = bool(np.all(2 * eps / a <= box**2))
    if method not in ("auto", "closed", "quadrature"):
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
    if method == "closed" and not fits:
        raise ValueError(f"the ellipsoid {{K < {eps:g}}} does not fit in the box of half-width "
                         f"{box:g}; use method='quadrature'")
    if method == "closed" or (method == "auto" and fits):
        omega = math.pi ** (q / 2) / math.gamma(q / 2 + 1)
        return float(omega * np.prod(np.sqrt(2 * eps / a)) / (2 * box) ** q)
    if q > 3:
        raise NotImplementedError("the quadrature route handles at most 3 curved directions")

    def vol(coeffs, e):
        if e <= 0:
            return 0.0
        if len(coeffs) == 1:
            return min(1.0, math.sqrt(2 * e / coeffs[0]) / box)
        last, rest = coeffs[-1], coeffs[:-1]
        u_max = min(1.0, math.sqrt(2 * e / last) / box)
        return integrate.quad(lambda u: vol(rest, e - last * (box * u) ** 2 / 2), 0, u_max,
                              limit=200, epsabs=0, epsrel=1e-10)[0]

    return vol(list(a), eps)


def quadratic_leading_term(eigenvalues, *, prior: str = "gaussian", localization: float = 1.0,
                           box: float = 1.0) -> tuple[Fraction, int, float]:
    """``(λ, m, C)`` with ``V(ε) ~ C ε^λ`` for ``K = ½ wᵀAw``: ``λ = q/2`` (``q = rank A``), ``m = 1``.

    Gaussian prior ``N(0, I/γ)``: ``C = Π_i (γ/a_i)^{1/2} / Γ(q/2 + 1)`` (the density at 0,
    ``(γ/2π)^{q/2}``, times the ellipsoid's volume ``ω_q Π (2/a_i)^{1/2}``). Box prior:
    ``C = ω_q Π (2/a_i)^{1/2} / (2B)^q`` (exact for small ε, :func:`quadratic_volume_box`).
    """
    a = _check_eigenvalues(eigenvalues)
    a = a[a > 0]
    q = int(a.size)
    lam, m = regular_learning_coefficient(q)
    if prior == "gaussian":
        gamma = _check_positive(localization, "localization")
        return lam, m, float(np.prod(np.sqrt(gamma / a)) / math.gamma(q / 2 + 1))
    if prior == "box":
        box = _check_positive(box, "box")
        omega = math.pi ** (q / 2) / math.gamma(q / 2 + 1)
        return lam, m, float(omega * np.prod(np.sqrt(2 / a)) / (2 * box) ** q)
    raise ValueError(f"prior must be 'gaussian' or 'box', got {prior!r}")


def volume_learning_coefficient(eps_small: float, eps_large: float, volume) -> float:
    """The local log-slope ``log(V(ε₂)/V(ε₁)) / log(ε₂/ε₁)`` of a volume function between two
    tolerances: tends to λ as both tend to 0 when ``m = 1`` (and to λ with a ``(m−1)/log(1/ε)``
    deficit otherwise, Watanabe 2009 §6). A helper for tables; ``volume(ε)`` is any of the above
    with its other arguments bound."""
    e1, e2 = _check_eps(eps_small), _check_eps(eps_large)
    if not e1 < e2:
        raise ValueError(f"need eps_small < eps_large, got {e1!r}, {e2!r}")
    return math.log(volume(e2) / volume(e1)) / math.log(e2 / e1)
