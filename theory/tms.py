"""Exact population loss of the toy model of superposition with two hidden dimensions.

Source: Z. Chen, E. Lau, J. Mendel, S. Wei, D. Murfet, "Dynamical versus Bayesian phase
transitions in a toy model of superposition", arXiv:2310.06301 (2023): the closed form of the
loss, the k-gon critical points and their learning coefficients; restated, with the derivations
in brief, on this project's page ``docs/theory/tms.md``. The model is Elhage et al. (2022), "Toy
models of superposition", in its high-sparsity limit. (Section numbers of the paper are not
cited: they were not checked.)

Model and data
--------------
``f(x; W, b) = ReLU(WᵀW x + b)`` with ``W ∈ R^{2×c}`` (columns ``W_1..W_c``), ``b ∈ R^c``, and
inputs ``x = μ e_i`` with ``i ~ Uniform{1..c}``, ``μ ~ U[0, 1]``. The loss is
``L(W, b) = E ||x - f(x)||²``, summed over the ``c`` outputs and not halved.

Closed form (Chen et al. 2023, derived again here). With ``a_ji = W_j·W_i`` and ``R = max(·, 0)``::

    L = (1/c) Σ_i [ Q(a_ii, b_i) + Σ_{j≠i} P(a_ji, b_j) ],
    P(s, t) = ∫_0^1 R(sμ + t)² dμ,      Q(s, t) = ∫_0^1 (μ - R(sμ + t))² dμ.

Let ``[u0, u1] ⊆ [0, 1]`` be the set where ``sμ + t > 0`` (empty: ``u0 = u1``; for ``s = 0`` it is
all of ``[0, 1]`` when ``t > 0`` and empty otherwise) and ``M_k = (u1^{k+1} - u0^{k+1})/(k+1)``
the moments ``∫_{u0}^{u1} μ^k dμ``. Then, exactly::

    P = s² M_2 + 2 s t M_1 + t² M_0,        Q = 1/3 - 2 (s M_2 + t M_1) + P.

Derivatives. The integrand of P vanishes at the moving end point ``r = -t/s``, so
``P_s = 2(s M_2 + t M_1)``, ``P_t = 2(s M_1 + t M_0)``, ``P_ss = 2 M_2``, ``P_st = 2 M_1``,
``P_tt = 2 M_0``; and ``Q_s = -2 M_2 + P_s``, ``Q_t = -2 M_1 + P_t``, ``Q_ss = -2 ∂_s M_2 + P_ss``,
``Q_st = -2 ∂_t M_2 + P_st``, ``Q_tt = -2 ∂_t M_1 + P_tt``, where, when ``0 < r < 1`` (else 0),
``∂_t M_k = r^k/|s|`` and ``∂_s M_k = r^{k+1}/|s|``.

Smoothness. Each term is a polynomial in ``(s, t, u0, u1)``, and ``r = -t/s`` is analytic for
``s ≠ 0``, so the loss is analytic away from the *activation boundaries* ``t = 0`` (the root at
``μ = 0``) and ``s + t = 0`` (the root at ``μ = 1``) of some pair ``(j, i)`` with
``s = a_ji``, ``t = b_j``. No touched boundary is flat: across it the two polynomial pieces
differ by ``∓t³/(3s)`` or ``±(s + t)³/(3s)`` (P), by ``s(s + 1) r³/3`` (Q at ``μ = 0``, and
``s = a_ii ≥ 0``) or by a term of order ``(s + t)²`` (Q at ``μ = 1``: the Hessian jumps). At
``s = t = 0`` the gradient of Q itself jumps. Such points are *kinks*: the Hessian there is one
one-sided value and the rank formula for the learning coefficient is not claimed.

Parameter vector
----------------
Every gradient and Hessian uses the flat vector ``w = concat(W[0, :], W[1, :], b)`` of length
``3c`` (``W.reshape(-1)`` in row-major order, then ``b``): ``W[p, k]`` sits at ``p*c + k`` and
``b[k]`` at ``2*c + k``. ``flatten_params`` / ``unflatten_params`` convert.

Exact arithmetic
----------------
Entries that are all ``int`` / ``fractions.Fraction`` are computed in ``Fraction`` arithmetic,
entries with a sympy ``Rational`` in sympy rationals, anything with a float in float64. The same
code path serves all three (constants are built from the input's type, so no float enters an
exact computation); mixing floats with exact rationals is refused.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import sympy

__all__ = [
    "CriticalPointInfo",
    "DEAD_BIAS",
    "classify_critical_point",
    "critical_sample_size",
    "flatten_params",
    "kgon_critical_point",
    "kgon_learning_coefficient",
    "kgon_loss",
    "kgon_parameters",
    "known_plateau_losses",
    "local_free_energy",
    "population_loss",
    "population_loss_gradient",
    "population_loss_hessian",
    "unflatten_params",
]

#: Bias given to the "dead" zero columns of a k-gon (``W_i = 0``, ``b_i < 0``). Any negative value
#: gives the same loss, gradient and Hessian; -1 keeps the point a distance 1 from the kink at
#: ``b_i = 0``. Only the prior term of ``local_free_energy`` depends on it (see there).
DEAD_BIAS = -1

# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _classify_entry(x, where: str) -> str:
    """Kind of one scalar entry: 'int', 'fraction', 'sympy' or 'float'."""
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{where} is a bool ({x!r}); pass real numbers")
    if isinstance(x, sympy.Basic):
        if x.is_Rational:
            return "sympy"
        if x.is_Float:
            value = float(x)
            if not math.isfinite(value):
                raise ValueError(f"{where} is {x}; every entry must be finite")
            return "float"
        raise ValueError(
            f"{where} is the sympy expression {x}; pass sympy Rationals (exact) or floats"
        )
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, Fraction):
        return "fraction"
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            raise ValueError(f"{where} is {x}; every entry must be finite")
        return "float"
    if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        raise ValueError(f"{where} is complex ({x!r}); pass real numbers")
    raise ValueError(
        f"{where} has unsupported type {type(x).__name__}; pass floats, ints, "
        "fractions.Fraction or sympy Rationals"
    )


def _coerce_entries(entries: list, kinds: list[str]) -> tuple[list, str]:
    """Convert scalars to one common type; returns (values, kind)."""
    kind_set = set(kinds)
    if "float" in kind_set and kind_set & {"fraction", "sympy"}:
        raise ValueError(
            "mixed float and exact (Fraction / sympy Rational) entries; pass all entries exact "
            "for an exact result, or all as floats"
        )
    if "float" in kind_set:
        return [float(x) for x in entries], "float"
    if "sympy" in kind_set:
        out = []
        for x in entries:
            if isinstance(x, Fraction):
                out.append(sympy.Rational(x.numerator, x.denominator))
            else:
                out.append(sympy.Rational(int(x)) if not isinstance(x, sympy.Basic) else x)
        return out, "sympy"
    return [Fraction(int(x)) if not isinstance(x, Fraction) else x for x in entries], "fraction"


def _as_object_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=object)
    except (TypeError, ValueError) as err:  # ragged nesting
        raise ValueError(f"{name} must be a rectangular array of numbers: {err}") from err
    return arr


def _coerce_params(W, b) -> tuple[list[list], list, str]:
    """Validate ``W`` (shape (2, c)) and ``b`` (length c); return rows of W, b, and the kind."""
    W_arr = _as_object_array(W, "W")
    b_arr = _as_object_array(b, "b")
    if W_arr.ndim != 2 or W_arr.shape[0] != 2:
        raise ValueError(
            f"W must have shape (2, c) (two hidden dimensions, one column per feature); "
            f"got shape {W_arr.shape}"
        )
    c = W_arr.shape[1]
    if c < 1:
        raise ValueError("W must have at least one column (c >= 1)")
    if b_arr.ndim != 1 or b_arr.shape[0] != c:
        raise ValueError(f"b must be a vector of length c = {c}; got shape {b_arr.shape}")
    entries = list(W_arr.reshape(-1)) + list(b_arr)
    names = [f"W[{p}, {k}]" for p in range(2) for k in range(c)] + [f"b[{k}]" for k in range(c)]
    kinds = [_classify_entry(x, nm) for x, nm in zip(entries, names)]
    values, kind = _coerce_entries(entries, kinds)
    rows = [values[0:c], values[c : 2 * c]]
    return rows, values[2 * c :], kind


def flatten_params(W, b) -> np.ndarray:
    """Flat parameter vector ``w = concat(W[0, :], W[1, :], b)`` (length ``3c``).

    ``W[p, k]`` goes to index ``p*c + k`` and ``b[k]`` to ``2c + k``; this is the order of every
    gradient and Hessian in this module. Float input gives a float64 array; exact input an object
    array of the exact entries.
    """
    rows, bias, kind = _coerce_params(W, b)
    flat = rows[0] + rows[1] + bias
    return np.array(flat, dtype=np.float64 if kind == "float" else object)


def unflatten_params(w, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`flatten_params`: ``w`` of length ``3c`` → ``(W (2, c), b (c,))``."""
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"c must be a positive int (the number of features); got {c!r}")
    arr = np.asarray(w)
    if arr.ndim != 1 or arr.shape[0] != 3 * c:
        raise ValueError(f"w must be a vector of length 3c = {3 * c}; got shape {arr.shape}")
    return arr[: 2 * c].reshape(2, c).copy(), arr[2 * c :].copy()


# ---------------------------------------------------------------------------------------------
# The one-pair integrals P and Q and their derivatives (generic arithmetic)
# ---------------------------------------------------------------------------------------------


def _positive_interval(s, t):
    """End points ``(u0, u1)`` of the part of [0, 1] where ``sμ + t > 0`` (``u0 == u1``: empty)."""
    zero = s - s
    one = zero + 1
    if s > 0:
        r = -t / s
        u0 = zero if r < zero else (one if r > one else r)
        return u0, one
    if s < 0:
        r = -t / s
        u1 = zero if r < zero else (one if r > one else r)
        return zero, u1
    return (zero, one) if t > 0 else (zero, zero)


def _pair_term(s, t, diagonal: bool, order: int):
    """Value, gradient ``(∂_s, ∂_t)`` and Hessian ``(ss, st, tt)`` of P(s, t) or Q(s, t).

    ``diagonal`` selects Q (the reconstruction term of output i on input i), else P. ``order``
    0, 1 or 2 says how many derivatives to compute (None in the unused slots).
    """
    u0, u1 = _positive_interval(s, t)
    m0 = u1 - u0
    m1 = (u1 * u1 - u0 * u0) / 2
    m2 = (u1 * u1 * u1 - u0 * u0 * u0) / 3
    p = s * s * m2 + 2 * s * t * m1 + t * t * m0
    if diagonal:
        one = (s - s) + 1
        value = one / 3 - 2 * (s * m2 + t * m1) + p
    else:
        value = p
    if order == 0:
        return value, None, None
    ps = 2 * (s * m2 + t * m1)
    pt = 2 * (s * m1 + t * m0)
    grad = (ps - 2 * m2, pt - 2 * m1) if diagonal else (ps, pt)
    if order == 1:
        return value, grad, None
    pss, pst, ptt = 2 * m2, 2 * m1, 2 * m0
    if not diagonal:
        return value, grad, (pss, pst, ptt)
    # Q also differentiates the moving end point r = -t/s of M_1, M_2 (inside (0, 1) only).
    zero = s - s
    dm1_dt = dm2_dt = dm2_ds = zero
    if s != 0:
        r = -t / s
        if zero < r < 1:
            abs_s = s if s > 0 else -s
            dm1_dt = r / abs_s
            dm2_dt = r * r / abs_s
            dm2_ds = r * r * r / abs_s
    return value, grad, (pss - 2 * dm2_ds, pst - 2 * dm2_dt, ptt - 2 * dm1_dt)


def _gram(rows: list[list]) -> list[list]:
    c = len(rows[0])
    return [[rows[0][j] * rows[0][i] + rows[1][j] * rows[1][i] for i in range(c)] for j in range(c)]


def _loss_from_gram(gram: list[list], bias: list):
    """``L`` from the Gram matrix ``a_ji = W_j·W_i`` and the biases (closed form above)."""
    c = len(bias)
    total = bias[0] - bias[0]
    for i in range(c):
        for j in range(c):
            total = total + _pair_term(gram[j][i], bias[j], j == i, 0)[0]
    return total / c


def _derivatives(rows: list[list], bias: list, order: int):
    """Loss, gradient (list, length 3c) and Hessian (nested list) in the input's arithmetic."""
    c = len(bias)
    zero = bias[0] - bias[0]
    gram = _gram(rows)
    n = 3 * c
    loss = zero
    grad = [zero] * n
    hess = [[zero] * n for _ in range(n)] if order >= 2 else None
    for i in range(c):
        for j in range(c):
            value, g, h = _pair_term(gram[j][i], bias[j], j == i, order)
            loss = loss + value
            if order == 0:
                continue
            # Sparse Jacobians of s = a_ji and t = b_j with respect to w.
            if i == j:
                js = [(p * c + i, 2 * rows[p][i]) for p in range(2)]
            else:
                js = [(p * c + j, rows[p][i]) for p in range(2)]
                js += [(p * c + i, rows[p][j]) for p in range(2)]
            jt = [(2 * c + j, zero + 1)]
            for idx, d in js:
                grad[idx] = grad[idx] + g[0] * d
            grad[2 * c + j] = grad[2 * c + j] + g[1]
            if order < 2:
                continue
            hss, hst, htt = h
            for a, da in js:
                for bb, db in js:
                    hess[a][bb] = hess[a][bb] + hss * da * db
                for bb, db in jt:
                    hess[a][bb] = hess[a][bb] + hst * da * db
                    hess[bb][a] = hess[bb][a] + hst * da * db
            for a, da in jt:
                for bb, db in jt:
                    hess[a][bb] = hess[a][bb] + htt * da * db
            # Second derivative of a_ji itself, times ∂T/∂s.
            for p in range(2):
                if i == j:
                    hess[p * c + i][p * c + i] = hess[p * c + i][p * c + i] + 2 * g[0]
                else:
                    hess[p * c + j][p * c + i] = hess[p * c + j][p * c + i] + g[0]
                    hess[p * c + i][p * c + j] = hess[p * c + i][p * c + j] + g[0]
    loss = loss / c
    if order >= 1:
        grad = [x / c for x in grad]
    if order >= 2:
        hess = [[x / c for x in row] for row in hess]
    return loss, grad, hess


def population_loss(W, b):
    """Exact population loss ``L(W, b) = E ||x - ReLU(WᵀWx + b)||²`` (Chen et al. 2023).

    ``L = (1/c) Σ_i [Q(a_ii, b_i) + Σ_{j≠i} P(a_ji, b_j)]`` with ``a_ji = W_j·W_i``,
    ``P = s²M_2 + 2stM_1 + t²M_0``, ``Q = 1/3 - 2(sM_2 + tM_1) + P`` and ``M_k`` the moments of
    the part of [0, 1] where ``sμ + t > 0`` (module docstring). ``W`` has shape (2, c), ``b``
    length c. Float input gives a float; int / Fraction input an exact ``Fraction``; sympy
    Rational input an exact sympy ``Rational``.
    """
    rows, bias, kind = _coerce_params(W, b)
    loss = _loss_from_gram(_gram(rows), bias)
    return float(loss) if kind == "float" else loss


def _to_output(values: list, kind: str, exact: bool) -> np.ndarray:
    """A gradient (list) or Hessian (nested list) as float64, or as exact objects if asked."""
    if not exact:
        return np.array(values, dtype=object).astype(np.float64)
    if kind == "float":
        raise ValueError(
            "exact=True needs exact input (ints, fractions.Fraction or sympy Rationals)"
        )
    return np.array(values, dtype=object)


def population_loss_gradient(W, b, *, exact: bool = False) -> np.ndarray:
    """Gradient of :func:`population_loss` in ``w = concat(W[0, :], W[1, :], b)`` (length 3c).

    Closed form: ``∂L/∂b_j = (1/c) Σ_i T_t(a_ji, b_j)`` and ``∂L/∂W = (1/c) W (G + Gᵀ)`` with
    ``G_ji = T_s(a_ji, b_j)``, ``T = Q`` on the diagonal and ``P`` off it, and ``P_s, P_t, Q_s,
    Q_t`` as in the module docstring (no finite differences). Returns float64; with
    ``exact=True`` (exact input only) an object array of exact rationals. At a kink where the
    loss is not differentiable (a column with ``W_i = 0, b_i = 0``) this is one one-sided value;
    :func:`classify_critical_point` reports kinks.
    """
    rows, bias, kind = _coerce_params(W, b)
    _, grad, _ = _derivatives(rows, bias, 1)
    return _to_output(grad, kind, exact)


def population_loss_hessian(W, b, *, exact: bool = False) -> np.ndarray:
    """Hessian of :func:`population_loss` in ``w = concat(W[0, :], W[1, :], b)``, shape (3c, 3c).

    Chain rule through ``(s, t) = (a_ji, b_j)`` of each pair term, with the second derivatives
    of P and Q from the module docstring, including the moving-end-point terms of Q; exact, no
    finite differences. Returns float64; with ``exact=True`` (exact input only) an object array
    of exact rationals. On an activation boundary (a kink) it is one one-sided value.
    """
    rows, bias, kind = _coerce_params(W, b)
    _, _, hess = _derivatives(rows, bias, 2)
    return _to_output(hess, kind, exact)


# ---------------------------------------------------------------------------------------------
# k-gon critical points
# ---------------------------------------------------------------------------------------------

#: Starting points for Newton's method on the k-gon stationarity equations, k = 5..8 (rounded
#: minimisers of the loss restricted to the k-gon family; Newton then converges quadratically).
_KGON_NEWTON_START = {5: (1.17, -0.28), 6: (1.32, -0.62), 7: (1.45, -0.97), 8: (1.55, -1.29)}
_KGON_MAX_SOLVED = 8


def _check_kgon_args(k, c, positive) -> None:
    for name, value in (("k", k), ("c", c), ("positive", positive)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int; got {value!r}")
    if not 2 <= k <= _KGON_MAX_SOLVED:
        raise ValueError(
            f"k must be in 2..{_KGON_MAX_SOLVED} (k-gons with k >= 9 are not implemented: "
            f"their stationarity has not been checked); got k = {k}"
        )
    if c < k:
        raise ValueError(f"a k-gon needs c >= k features; got k = {k}, c = {c}")
    if not 0 <= positive <= c - k:
        raise ValueError(
            f"positive (σ, the number of zero columns with bias 1/(2c)) must be in 0..c-k = "
            f"{c - k}; got {positive}"
        )


def _kgon_cosines(k: int, cos=math.cos, pi=math.pi) -> list:
    return [cos(2 * pi * m / k) for m in range(1, k)]


def _kgon_restricted(k: int, length, bias, cosines: list):
    """``φ(l, b) = Q(l², b) + Σ_{m=1}^{k-1} P(l² cos(2πm/k), b)``, its gradient and Hessian.

    ``φ`` is the loss on one live input of the k-gon (all live inputs are equivalent by the
    dihedral symmetry); with ``b < 0`` the zero columns add nothing that depends on ``(l, b)``,
    so ``c·L = k·φ + const`` on the k-gon family and ``(l*, b*)`` does not depend on ``c``.
    ``cosines`` are ``cos(2πm/k)``, m = 1..k-1, in the arithmetic to use (float or mpmath).
    """
    x = length * length
    terms = [(1, _pair_term(x, bias, True, 2))]
    terms += [(cos, _pair_term(x * cos, bias, False, 2)) for cos in cosines]
    value = sum(t[0] for _, t in terms)
    grad_l = sum(g[0] * 2 * length * w for w, (_, g, _) in terms)
    grad_b = sum(g[1] for _, (_, g, _) in terms)
    h_ll = sum(h[0] * (2 * length * w) ** 2 + g[0] * 2 * w for w, (_, g, h) in terms)
    h_lb = sum(h[1] * 2 * length * w for w, (_, g, h) in terms)
    h_bb = sum(h[2] for _, (_, g, h) in terms)
    return value, (grad_l, grad_b), ((h_ll, h_lb), (h_lb, h_bb))


def _solve_kgon(k: int) -> tuple[float, float]:
    """Newton's method on ``∇φ(l, b) = 0`` with the exact gradient and Hessian of φ.

    Run in 40-digit mpmath arithmetic (the closed form is generic in its number type), so the
    float64 values returned are correctly rounded rather than limited by the conditioning of
    the equations in float64.
    """
    import mpmath

    with mpmath.workdps(40):
        cosines = _kgon_cosines(k, mpmath.cos, mpmath.pi)
        length, bias = (mpmath.mpf(x) for x in _KGON_NEWTON_START[k])
        for _ in range(100):
            _, (g_l, g_b), ((h_ll, h_lb), (_, h_bb)) = _kgon_restricted(k, length, bias, cosines)
            det = h_ll * h_bb - h_lb * h_lb
            step_l = -(h_bb * g_l - h_lb * g_b) / det
            step_b = -(h_ll * g_b - h_lb * g_l) / det
            length, bias = length + step_l, bias + step_b
            if abs(step_l) + abs(step_b) < mpmath.mpf(10) ** -35:
                break
        _, grad, _ = _kgon_restricted(k, length, bias, cosines)
        if not (abs(grad[0]) + abs(grad[1]) < mpmath.mpf(10) ** -30 and bias < 0):
            raise RuntimeError(f"Newton's method did not converge for the {k}-gon: {grad}")
        return float(length), float(bias)


_KGON_CACHE: dict[int, tuple[float, float]] = {}


def kgon_parameters(k: int) -> tuple:
    """``(l*, b*)`` of the k-gon: the radius and common bias of its live columns.

    k = 2, 3, 4: ``l = 1, b = 0`` exactly (returned as ints). Every live column then reconstructs
    its own feature exactly, ``Q(1, 0) = 0``, and the others' outputs vanish on it because
    ``a_ji = cos(2πm/k) ≤ 0`` for ``m ≠ 0`` when ``k ≤ 4``: ``P(a, 0) = 0`` for ``a ≤ 0``. This is
    the global minimum of the live inputs' terms, but it sits on the activation boundary
    ``b = 0`` (a kink). k = 5..8: the solution with ``b < 0`` of ``∂φ/∂l = ∂φ/∂b = 0`` for the
    one-feature function φ of Chen et al. (2023) (only nearest neighbours
    interfere, ``l² cos(4π/k) + b < 0``), found by Newton's method in 40-digit mpmath
    arithmetic and rounded to float64 (the tests check an independent 30-digit solution).
    The paper reports ``(1.17046, -0.28230)`` for k = 5.
    """
    _check_kgon_args(k, k, 0)
    if k <= 4:
        return 1, 0
    if k not in _KGON_CACHE:
        _KGON_CACHE[k] = _solve_kgon(k)
    return _KGON_CACHE[k]


def _kgon_layout(k: int, c: int, positive: int):
    """Column roles of the k-gon: live 0..k-1, positive k..k+σ-1, dead k+σ..c-1."""
    return list(range(k)), list(range(k, k + positive)), list(range(k + positive, c))


def kgon_critical_point(k: int, c: int, positive: int = 0, *, exact: bool = False):
    """The k^{σ+}-gon ``(W, b)`` of Chen et al. (2023), ``σ = positive``.

    Columns ``q = 0..k-1`` are live: ``W_q = l*(cos 2πq/k, sin 2πq/k)`` with bias ``b*``
    (:func:`kgon_parameters`). Columns ``k..k+σ-1`` are "positive": ``W = 0``, bias ``1/(2c)``
    (the minimiser of ``Q(0, β) + (c-1)β² = 1/3 - β + cβ²``: such a column outputs the constant
    β on every input). The remaining ``c - k - σ`` columns are "dead": ``W = 0``, bias
    ``DEAD_BIAS = -1``. Near a dead column the loss does not depend on that column's three
    parameters at all as long as every nonzero column has a negative bias (its own Q stays 1/3,
    its outputs stay 0, and the live outputs ignore it), so the dead directions are exactly flat:
    zero gradient and zero Hessian. With a positive column present, though, the term
    ``P(W_p·W_d, β)`` couples a positive column p to a dead column d through a Hessian entry
    ``β/c`` between ``W_p`` and ``W_d`` while the ``W_d`` diagonal is zero: such a point is a
    saddle. Float64 arrays by default; ``exact=True`` returns object arrays of ``Fraction`` and
    is available where all entries are rational (k = 2 and 4).
    """
    _check_kgon_args(k, c, positive)
    live, pos, dead = _kgon_layout(k, c, positive)
    if exact:
        if k not in (2, 4):
            raise ValueError(
                f"exact=True is only available for k = 2 and 4 (rational coordinates); the "
                f"{k}-gon has irrational entries"
            )
        unit = {2: [(1, 0), (-1, 0)], 4: [(1, 0), (0, 1), (-1, 0), (0, -1)]}[k]
        W = np.array([[Fraction(0)] * c for _ in range(2)], dtype=object)
        b = np.array([Fraction(0)] * c, dtype=object)
        for q in live:
            W[0, q], W[1, q] = Fraction(unit[q][0]), Fraction(unit[q][1])
        for q in pos:
            b[q] = Fraction(1, 2 * c)
        for q in dead:
            b[q] = Fraction(DEAD_BIAS)
        return W, b
    length, bias = kgon_parameters(k)
    W = np.zeros((2, c))
    b = np.zeros(c)
    for q in live:
        angle = 2 * math.pi * q / k
        W[:, q] = length * math.cos(angle), length * math.sin(angle)
        b[q] = bias
    b[pos] = 1 / (2 * c)
    b[dead] = DEAD_BIAS
    return W, b


#: Exact ``cos(2πm/k)``, m = 0..k-1, for the k-gons whose Gram matrix is rational.
_EXACT_COSINES = {
    2: (Fraction(1), Fraction(-1)),
    3: (Fraction(1), Fraction(-1, 2), Fraction(-1, 2)),
    4: (Fraction(1), Fraction(0), Fraction(-1), Fraction(0)),
}


def _exact_kgon_gram(k: int, c: int, positive: int):
    """Exact Gram matrix ``a_qq' = cos(2π(q - q')/k)`` and biases of the k-gon, k ≤ 4 (l = 1)."""
    live, pos, dead = _kgon_layout(k, c, positive)
    gram = [[Fraction(0)] * c for _ in range(c)]
    for q in live:
        for q2 in live:
            gram[q][q2] = _EXACT_COSINES[k][(q - q2) % k]
    biases = [Fraction(0)] * c
    for q in pos:
        biases[q] = Fraction(1, 2 * c)
    for q in dead:
        biases[q] = Fraction(DEAD_BIAS)
    return gram, biases


def kgon_loss(k: int, c: int, positive: int = 0):
    """Population loss at the k^{σ+}-gon (:func:`kgon_critical_point`).

    k = 2, 3, 4: exact ``Fraction`` ``(c - k)/(3c) - σ/(4c²)``, computed from the exact Gram
    matrix (``cos 2πm/k`` is rational): each dead feature costs ``Q(0, b<0)/c = 1/(3c)`` and each
    positive column saves ``(1/3 - (1/3 - β + cβ²))/c = 1/(4c²)`` at ``β = 1/(2c)``. k = 5..8:
    float, ``(k φ(l*, b*) + (c - k)/3 - σ/(4c))/c`` evaluated by the closed form.
    """
    _check_kgon_args(k, c, positive)
    if k <= 4:
        return _loss_from_gram(*_exact_kgon_gram(k, c, positive))
    W, b = kgon_critical_point(k, c, positive)
    return population_loss(W, b)


# ---------------------------------------------------------------------------------------------
# Classification of critical points
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalPointInfo:
    """What :func:`classify_critical_point` found at ``(W, b)``.

    ``kind``: ``"kink"`` (an activation boundary is touched: the loss is not analytic there and
    no second-order verdict is given), ``"not critical"`` (gradient norm above tolerance),
    ``"saddle"`` (a negative Hessian eigenvalue), ``"minimum"`` (positive semi-definite Hessian
    whose null space is exactly the tangent space of the known manifold of equal-loss points:
    Morse–Bott, so ``λ = rank/2``, ``m = 1``), or ``"degenerate"`` (positive semi-definite but
    with unexplained null directions: the second-order test is inconclusive).
    """

    kind: str
    loss: float
    gradient_norm: float
    hessian_eigenvalues: np.ndarray
    rank: int
    flat_dimension: int
    learning_coefficient: Fraction | None
    kinks: tuple[tuple[int, int, str], ...] = field(default=())


def _is_zero(x, atol) -> bool:
    return abs(x) <= atol


def _touched_boundaries(gram, bias, atol) -> list[tuple[int, int, str]]:
    """Pairs ``(j, i)`` whose ``s = a_ji, t = b_j`` lie on ``t = 0`` or ``s + t = 0``."""
    c = len(bias)
    touched = []
    for j in range(c):
        for i in range(c):
            s, t = gram[j][i], bias[j]
            if _is_zero(t, atol):
                touched.append((j, i, "mu=0"))
            elif _is_zero(s + t, atol):
                touched.append((j, i, "mu=1"))
    return touched


def _flat_directions(rows, gram, bias, atol) -> np.ndarray:
    """Directions along which the loss is exactly constant near ``(W, b)`` (as columns).

    - The rotation generator ``(J W, 0)``, ``J = [[0, -1], [1, 0]]``: ``L`` depends on ``W`` only
      through ``WᵀW``.
    - ``b_i`` of a switched-off column i (output i vanishes on every input with a margin:
      ``b_i < 0`` and ``a_ij + b_i < 0`` for all j), and also ``W_i`` if moreover no other output
      responds to ``W_i``: every ``j ≠ i`` has ``W_j = 0`` or ``b_j < 0, a_ji + b_j < 0``.
    """
    c = len(bias)
    dirs = []
    rot = np.zeros(3 * c)
    for k in range(c):
        rot[k] = -float(rows[1][k])
        rot[c + k] = float(rows[0][k])
    if np.any(rot != 0):
        dirs.append(rot)

    def off(j, i):  # output j vanishes on input i, with a margin
        return bias[j] < -atol and gram[j][i] + bias[j] < -atol

    for i in range(c):
        if not all(off(i, j) for j in range(c)):
            continue
        unit = np.zeros(3 * c)
        unit[2 * c + i] = 1.0
        dirs.append(unit)
        others_ignore_wi = all(
            (_is_zero(rows[0][j], atol) and _is_zero(rows[1][j], atol)) or off(j, i)
            for j in range(c)
            if j != i
        )
        if others_ignore_wi:
            for p in range(2):
                unit = np.zeros(3 * c)
                unit[p * c + i] = 1.0
                dirs.append(unit)
    return np.array(dirs).T if dirs else np.zeros((3 * c, 0))


def classify_critical_point(
    W,
    b,
    *,
    gradient_tol: float = 1e-8,
    eigenvalue_rtol: float = 1e-9,
    kink_atol: float = 1e-10,
) -> CriticalPointInfo:
    """Classify ``(W, b)`` as a kink, a non-critical point, a saddle, a minimum or degenerate.

    Kink: some pair ``(j, i)`` has ``b_j = 0`` or ``a_ji + b_j = 0`` (within ``kink_atol`` for
    float input, exactly for exact input): the loss is not analytic there (module docstring).
    Otherwise, with the closed-form gradient and Hessian: not critical if
    ``||∇L|| > gradient_tol``; the Hessian eigenvalues ``e`` are called zero when
    ``|e| ≤ eigenvalue_rtol · max|e|`` (the closed-form Hessian is accurate to ~1e-15 relative,
    and the smallest nonzero eigenvalue of the k-gons, k ≤ 8, is above 1e-3 of the largest);
    any eigenvalue below ``-eigenvalue_rtol · max|e|`` makes a saddle. A positive semi-definite
    Hessian is a minimum when its null space is spanned by the exactly flat directions (the
    rotation orbit and switched-off columns, see ``_flat_directions``): the loss is then
    Morse–Bott, and ``λ = rank(H)/2`` with ``m = 1`` (Watanabe 2009, the regular case applied
    transversally to the critical manifold). Otherwise ``"degenerate"``.
    """
    rows, bias, kind_of_input = _coerce_params(W, b)
    atol = kink_atol if kind_of_input == "float" else 0
    loss, grad, hess = _derivatives(rows, bias, 2)
    gram = _gram(rows)
    grad_arr = np.array([float(x) for x in grad])
    hess_arr = np.array([[float(x) for x in row] for row in hess])
    eigenvalues = np.linalg.eigvalsh(hess_arr)
    scale = float(np.max(np.abs(eigenvalues)))
    zero_tol = eigenvalue_rtol * scale
    rank = int(np.sum(np.abs(eigenvalues) > zero_tol))
    flat = _flat_directions(rows, gram, bias, atol)
    flat_dim = int(np.linalg.matrix_rank(flat)) if flat.shape[1] else 0
    gradient_norm = float(np.linalg.norm(grad_arr))
    kinks = tuple(_touched_boundaries(gram, bias, atol))
    common = dict(
        loss=float(loss),
        gradient_norm=gradient_norm,
        hessian_eigenvalues=eigenvalues,
        rank=rank,
        flat_dimension=flat_dim,
        kinks=kinks,
    )
    if kinks:
        return CriticalPointInfo(kind="kink", learning_coefficient=None, **common)
    if gradient_norm > gradient_tol:
        return CriticalPointInfo(kind="not critical", learning_coefficient=None, **common)
    if np.any(eigenvalues < -zero_tol):
        return CriticalPointInfo(kind="saddle", learning_coefficient=None, **common)
    flat_is_null = flat.shape[1] == 0 or np.max(np.abs(hess_arr @ flat)) <= zero_tol
    if flat_is_null and rank + flat_dim == 3 * len(bias):
        return CriticalPointInfo(kind="minimum", learning_coefficient=Fraction(rank, 2), **common)
    return CriticalPointInfo(kind="degenerate", learning_coefficient=None, **common)


def kgon_learning_coefficient(k: int, c: int, positive: int = 0) -> Fraction:
    """Local learning coefficient ``λ = rank(Hessian)/2`` of the k^{σ+}-gon, ``σ = positive``.

    Valid where the loss is analytic and Morse–Bott at the point (:func:`classify_critical_point`
    says ``"minimum"``): for k = 5..8 without both positive and dead zero columns this gives
    ``λ = (3k - 1)/2 + 3σ/2`` (Chen et al. 2023; here: 2k + k live parameters less the
    rotation orbit, 3 per positive column, 0 per exactly flat dead column), e.g. at c = 6:
    5-gon 7, 5⁺ 17/2, 6-gon 17/2. Raises ``ValueError`` on kinks (k ≤ 4: ``b = 0`` puts every
    live column on the activation boundary ``t = 0``), on saddles (a positive and a dead zero
    column together) and where the second-order test is inconclusive.
    """
    _check_kgon_args(k, c, positive)
    if k <= 4:
        raise ValueError(
            f"the {k}-gon (l = 1, b = 0) lies on kinks of the loss: every live column has bias "
            "0, so its activation boundary sμ + b = 0 sits at μ = 0 and the loss is not "
            "analytic there; λ = rank(H)/2 does not apply"
        )
    info = classify_critical_point(*kgon_critical_point(k, c, positive))
    if info.kind == "saddle":
        raise ValueError(
            f"the {k}-gon with σ = {positive} positive and {c - k - positive} dead zero columns "
            f"at c = {c} is a saddle (smallest Hessian eigenvalue "
            f"{info.hessian_eigenvalues[0]:.3g}): a positive column couples to a dead one; "
            "it has no learning coefficient"
        )
    if info.kind != "minimum":
        raise ValueError(f"the {k}^{positive}+-gon at c = {c} is classified {info.kind!r}")
    return info.learning_coefficient


# ---------------------------------------------------------------------------------------------
# Plateau losses and the Bayesian phase transition
# ---------------------------------------------------------------------------------------------


def known_plateau_losses(c: int = 6) -> dict[str, Fraction | float]:
    """Loss of every k^{σ+}-gon at ``c`` features, keyed ``"k" + "+"·σ`` (e.g. ``"4++"``).

    These are the plateau levels of SGD trajectories in Chen et al. (2023). k = 2..4
    are exact ``Fraction`` s, ``(c - k)/(3c) - σ/(4c²)`` (:func:`kgon_loss`); at c = 6:
    4-gon 1/9, 4⁺ 5/48, 4⁺⁺ 7/72. k = 5..min(c, 8) are floats from the closed form. Saddles and
    kinks are included: SGD can stall near them too.
    """
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 2:
        raise ValueError(f"c must be an int >= 2; got {c!r}")
    out: dict[str, Fraction | float] = {}
    for k in range(2, min(c, _KGON_MAX_SOLVED) + 1):
        for positive in range(c - k + 1):
            out[str(k) + "+" * positive] = kgon_loss(k, c, positive)
    return out


def _prior_norm_squared(k: int, c: int, positive: int) -> float:
    """``||w*||²`` for the prior term, with dead columns contributing 0 (see local_free_energy)."""
    length, bias = kgon_parameters(k)
    return k * (length * length + bias * bias) + positive / (4 * c * c)


def local_free_energy(n, k: int, c: int, positive: int = 0, *, include_prior: bool = True) -> float:
    """Asymptotic local free energy ``F_n ≈ n L(w*) + λ log n + ½||w*||²`` of the k^{σ+}-gon.

    Watanabe's expansion ``F_n = n L_n(w*) + λ log n - (m - 1) log log n + O_p(1)`` with
    ``m = 1`` here, the population loss standing in for ``L_n`` (its expectation), and the O(1)
    term approximated by ``-log φ(w*)`` for the standard Gaussian prior ``φ = N(0, I)`` up to the
    constant ``(d/2) log 2π`` that is common to all phases (Chen et al. arXiv 2310.06301;
    ``docs/theory/tms.md``; ``λ`` from :func:`kgon_learning_coefficient`). The dead
    zero columns are exactly flat over ``W_d ≈ 0, b_d < 0``; their prior term is taken at the
    point of that set nearest the origin (``W_d = 0, b_d → 0⁻``), so they add nothing:
    ``||w*||² = k(l*² + b*²) + σ/(4c²)``. This choice reproduces the paper's 5-gon → 6-gon
    crossing at c = 6, n ≈ 601; putting the dead bias at -1 instead moves it to n ≈ 573, and
    dropping the prior term (``include_prior=False``) to n ≈ 446. The neglected O(1) terms
    (Hessian determinants, orbit volumes, the prior mass of the flat sets) differ between phases
    too, so such crossings are estimates, not exact values.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not n >= 1:
        raise ValueError(f"n must be a real number >= 1 (a sample size); got {n!r}")
    loss, lam, prior = _free_energy_terms(k, c, positive, include_prior)
    return float(n * loss + lam * math.log(n) + prior)


def _free_energy_terms(k: int, c: int, positive: int, include_prior: bool):
    """``(L(w*), λ, ½||w*||² or 0)`` as floats for :func:`local_free_energy`."""
    lam = kgon_learning_coefficient(k, c, positive)
    prior = 0.5 * _prior_norm_squared(k, c, positive) if include_prior else 0.0
    return float(kgon_loss(k, c, positive)), float(lam), prior


def critical_sample_size(
    phase_a: tuple[int, int],
    phase_b: tuple[int, int],
    c: int,
    *,
    include_prior: bool = True,
    n_max: float = 1e12,
) -> float:
    """Sample size ``n`` at which the local free energies of two k^{σ+}-gons are equal.

    ``phase_a = (k1, σ1)``, ``phase_b = (k2, σ2)``; ``ΔF(n) = F_a(n) - F_b(n)`` with ``F`` from
    :func:`local_free_energy`. ``ΔF`` is a line in ``n`` plus a multiple of ``log n``, so it has
    at most two zeros on ``[1, ∞)``; they are bracketed on a geometric grid up to ``n_max`` and
    refined by ``scipy.optimize.brentq``. Returns the largest one (beyond it the ordering of the
    two phases never changes again). Raises ``ValueError`` if the free energies do not cross.
    At c = 6 the 5-gon → 6-gon switch is at n ≈ 601 (Chen et al. 2023 report n ≈ 600).
    """
    from scipy.optimize import brentq

    for name, phase in (("phase_a", phase_a), ("phase_b", phase_b)):
        if not (isinstance(phase, tuple) and len(phase) == 2):
            raise ValueError(f"{name} must be a tuple (k, σ); got {phase!r}")

    loss_a, lam_a, prior_a = _free_energy_terms(phase_a[0], c, phase_a[1], include_prior)
    loss_b, lam_b, prior_b = _free_energy_terms(phase_b[0], c, phase_b[1], include_prior)

    def delta(n):
        return n * (loss_a - loss_b) + (lam_a - lam_b) * np.log(n) + (prior_a - prior_b)

    grid = np.geomspace(1.0, n_max, 4001)
    values = delta(grid)
    roots = []
    for lo, hi, f_lo, f_hi in zip(grid[:-1], grid[1:], values[:-1], values[1:]):
        if f_lo == 0.0:
            roots.append(float(lo))
        elif f_lo * f_hi < 0:
            roots.append(brentq(delta, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps))
    if not roots:
        raise ValueError(
            f"the local free energies of {phase_a} and {phase_b} at c = {c} do not cross on "
            f"[1, {n_max:g}]: one phase is preferred at every sample size"
        )
    return float(max(roots))
