"""Finite-temperature oracles for one-step tasks: exact ``t E[K]`` under the tempered posterior.

``single_step_llc`` takes the uniform (Dirichlet(1)) prior, ``single_step_llc_dirichlet`` a
Dirichlet prior that may localise at the vertex or take the squared-coordinate convention
(Murfet & Troiani arXiv 2504.08075 for the setting; Watanabe 2009, ch. 2–3 for the limit
``lambda``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Integral, Rational, Real

__all__ = [
    "single_step_llc",
    "single_step_llc_dirichlet",
]


# --------------------------------------------------------------------------------------------
# Uniform prior
# --------------------------------------------------------------------------------------------


def single_step_llc(num_inputs: int, num_states: int, nbeta):
    """Exact ``t E[K]`` at ``t = nbeta`` for a one-step task with its own transition per input.

    Setting (Murfet & Troiani arXiv 2504.08075): ``N`` equiprobable one-symbol inputs, each read in
    the start state by
    its own transition, ``T = 1``, final-state readout, the true machine at a vertex, and the
    uniform (Dirichlet(1)) prior on every simplex. Only the next-state simplices of those ``N``
    pairs matter: ``K = -(1/N) sum_i log v_i`` with ``v_i`` the probability of the correct next
    state. Under Dirichlet(1) on ``|Q|`` states ``v_i ~ Beta(1, |Q|-1)``; the tempered posterior
    ``exp(-tK) prior`` multiplies by ``v_i^{t/N}``, so ``v_i ~ Beta(1 + t/N, |Q|-1)``, and
    ``E[-log v] = psi(a+b) - psi(a)`` for ``Beta(a, b)``. Hence

        t E[K] = t [psi(t/N + |Q|) - psi(t/N + 1)] = t sum_{k=1}^{|Q|-1} 1 / (t/N + k),

    which tends to ``lambda = N(|Q|-1)``. For detectA on ``{A, B}`` (``N = |Q| = 2``):
    ``2t/(t+2)``. Exact (``Fraction``) for ``int``/``Fraction`` ``nbeta``, float for float.
    """
    for value, name in ((num_inputs, "num_inputs"), (num_states, "num_states")):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_states < 2:
        raise ValueError("num_states must be at least 2 (with one state K is identically 0)")
    if (
        isinstance(nbeta, bool)
        or not isinstance(nbeta, Real)
        or not nbeta > 0
        or not math.isfinite(nbeta)
    ):
        raise ValueError(f"nbeta must be a positive finite number, got {nbeta!r}")
    t = Fraction(nbeta) if isinstance(nbeta, Rational) else float(nbeta)
    a = t / int(num_inputs)
    return t * sum(1 / (a + k) for k in range(1, int(num_states)))


# --------------------------------------------------------------------------------------------
# Dirichlet prior (localised or squared)
# --------------------------------------------------------------------------------------------


def single_step_llc_dirichlet(
    num_inputs: int, num_states: int, nbeta, classical_concentration=1, error_concentration=1
):
    """Exact ``t E[K]`` for the one-step task of ``single_step_llc`` under a Dirichlet prior.

    Same setting as ``single_step_llc`` (``N`` equiprobable one-symbol inputs, each read by its
    own transition, ``T = 1``, final-state readout, ``K = -(1/N) sum_i log v_i`` with ``v_i`` the
    probability of the correct next state), but each next-state simplex has the prior
    ``Dirichlet(alpha_c, alpha_e, ..., alpha_e)``: ``alpha_c`` (``classical_concentration``) on
    the correct state, ``alpha_e`` (``error_concentration``) on each of the ``|Q| - 1`` others.

    Derivation: by the aggregation property of the Dirichlet law the prior marginal of ``v_i`` is
    ``Beta(alpha_c, b)`` with ``b = (|Q| - 1) alpha_e``, the ``N`` simplices are independent, and
    ``exp(-t K)`` multiplies the density by ``v_i^{t/N}``, so under the tempered posterior
    ``v_i ~ Beta(alpha_c + t/N, b)``; with ``E[-log v] = psi(a + b) - psi(a)`` for ``Beta(a, b)``

        t E[K] = t [psi(t/N + alpha_c + b) - psi(t/N + alpha_c)]
               = t sum_{k=0}^{b-1} 1 / (t/N + alpha_c + k)      (b a positive integer),

    which tends to ``lambda = N (|Q| - 1) alpha_e`` as ``t -> infinity`` (a linear potential on an
    orthant with prior exponent ``h = alpha_e - 1`` per relevant coordinate, Watanabe 2009, ch.
    2–3).

    ``alpha_c = alpha_e = 1`` is ``single_step_llc``. ``alpha_e = 1/2`` is the squared-coordinate
    convention (``Dirichlet(1/2, ...)`` is the uniform law on the sphere ``p = u^2/|u|^2``), with
    ``lambda`` halved. ``alpha_c > 1`` localises the prior at the vertex without changing
    ``lambda`` (the factor ``v^{alpha_c - 1}`` is smooth and positive at ``v = 1``); at finite
    ``t`` it acts like ``t/N -> t/N + alpha_c - 1`` and pulls the value down. When ``b`` is an
    integer the finite sum is used: exact (``Fraction``) when ``nbeta`` and both concentrations
    are ``int``/``Fraction``, float otherwise; a non-integer ``b`` gives a float from digamma
    values at 40 digits (mpmath), since ``psi(a + b) - psi(a)`` cancels in float64.
    """
    for value, name in ((num_inputs, "num_inputs"), (num_states, "num_states")):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_states < 2:
        raise ValueError("num_states must be at least 2 (with one state K is identically 0)")
    values = {}
    for value, name in ((nbeta, "nbeta"), (classical_concentration, "classical_concentration"),
                        (error_concentration, "error_concentration")):
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not value > 0
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        values[name] = Fraction(value) if isinstance(value, Rational) else float(value)
    t = values["nbeta"]
    a = t / int(num_inputs) + values["classical_concentration"]
    b = (int(num_states) - 1) * values["error_concentration"]
    if float(b).is_integer():  # a finite sum: exact for exact inputs, float otherwise
        return t * sum(1 / (a + k) for k in range(int(b)))
    # psi(a + b) - psi(a) ~ b / a cancels catastrophically in float64 for large a: use mpmath
    # (a sympy dependency) at 40 digits
    import mpmath

    def mp(value):
        if isinstance(value, Fraction):
            return mpmath.mpf(value.numerator) / value.denominator
        return mpmath.mpf(float(value))

    with mpmath.workdps(40):
        return float(mp(t) * (mpmath.digamma(mp(a) + mp(b)) - mpmath.digamma(mp(a))))
