"""Exact Markov-chain semantics of a noisy code: configuration and output distributions.

**Exact semantics** (this package's convention). One step of a noisy machine in configuration
``(tape, head, state)`` reads ``sigma = tape[head]`` and draws, independently, a written symbol, a
next state and a move from the three distributions of ``(sigma, state)``. This is a Markov chain
on whole configurations; ``configuration_distribution`` propagates it exactly for ``T`` steps.
It is *not* the per-square ("mean-field") relaxation, which keeps a separate distribution for
every square, the head and the state and so forgets their correlations; the two agree for
``T <= 1`` and differ in general. Cost: the number of configurations with nonzero probability is
at most ``|Q| (2T+1) |Sigma|^(2T-1)``, so the chain is exact and cheap for the small ``T`` used
here, and near a vertex far fewer configurations are reached.
"""

from __future__ import annotations

from fractions import Fraction

import sympy

from .codes import NoisyCode, TruncatedPolynomial, is_zero
from .machine import (
    MOVE_OFFSET,
    MOVES,
    Configuration,
    MachineShape,
    check_readout,
    check_steps,
    initial_configuration,
)

__all__ = [
    "configuration_distribution",
    "output_distribution",
]


def one_like(simplices):
    """1 in the arithmetic of the entries (truncated polynomial, sympy, float or Fraction)."""
    for entries in simplices:
        for value in entries:
            if isinstance(value, TruncatedPolynomial):
                return TruncatedPolynomial({(): 1}, value.max_degree)
            if isinstance(value, sympy.Basic):
                return sympy.Integer(1)
            if isinstance(value, float):
                return 1.0
    return Fraction(1)


def _propagate(shape: MachineShape, simplices, x, T: int, marginalise_last: bool):
    """Distribution over ``(tape, head, state)`` after ``T`` steps (exact Markov chain).

    With ``marginalise_last`` the last step draws only the next state: its write and move are
    summed out (each sums to 1), which is all a final-state readout needs.
    """
    start = initial_configuration(shape, x, T)
    n_states = len(shape.states)
    symbol_index = {a: i for i, a in enumerate(shape.symbols)}
    state_index = {q: i for i, q in enumerate(shape.states)}
    offsets = [MOVE_OFFSET[m] for m in MOVES]
    dist = {(start.tape, start.head, start.state): one_like(simplices)}
    for step in range(T):
        last = marginalise_last and step == T - 1
        new: dict = {}
        for (tape, head, state), prob in dist.items():
            base = 3 * (symbol_index[tape[head]] * n_states + state_index[state])
            writes, nexts, moves = simplices[base], simplices[base + 1], simplices[base + 2]
            for qi, q_prob in enumerate(nexts):
                if is_zero(q_prob):
                    continue
                p_q = prob * q_prob
                if is_zero(p_q):
                    continue
                if last:
                    key = (tape, head, shape.states[qi])
                    new[key] = new.get(key, 0) + p_q
                    continue
                for wi, w_prob in enumerate(writes):
                    if is_zero(w_prob):
                        continue
                    p_qw = p_q * w_prob
                    if is_zero(p_qw):
                        continue
                    new_tape = tape[:head] + (shape.symbols[wi],) + tape[head + 1 :]
                    for mi, m_prob in enumerate(moves):
                        if is_zero(m_prob):
                            continue
                        p_all = p_qw * m_prob
                        if is_zero(p_all):
                            continue
                        key = (new_tape, head + offsets[mi], shape.states[qi])
                        new[key] = new.get(key, 0) + p_all
        dist = new
    return dist, start.origin


def check_code(code) -> NoisyCode:
    """``code`` itself if it is a ``NoisyCode``; ValueError otherwise."""
    if not isinstance(code, NoisyCode):
        raise ValueError(
            f"expected a NoisyCode (see vertex_code, code_from_flat), got {type(code).__name__}"
        )
    return code


def finish(value):
    """A result as returned to users: sympy expressions expanded, anything else unchanged."""
    return sympy.expand(value) if isinstance(value, sympy.Basic) else value


def configuration_distribution(code: NoisyCode, x, T: int) -> dict[Configuration, object]:
    """Exact law of the configuration after ``T`` steps of the noisy machine ``code`` on ``x``.

    The Markov chain of the module docstring: from ``(tape, head, q)`` with ``sigma = tape[head]``
    it moves to ``(tape[head := a], head + m, q')`` with probability
    ``w_write(sigma, q)[a] * w_state(sigma, q)[q'] * w_move(sigma, q)[m]``
    (Clift-Murfet-Wallbridge arXiv 2103.16080, without a mean-field step).
    Configurations of probability exactly zero are omitted.
    """
    code = check_code(code)
    T = check_steps(T)
    dist, origin = _propagate(code.shape, code.simplices, x, T, marginalise_last=False)
    return {Configuration(t, h, q, origin): finish(p) for (t, h, q), p in dist.items()}


def raw_output_distribution(shape, simplices, x, T, readout):
    """``output_distribution`` on raw simplices, without checking arguments or finishing values."""
    dist, _ = _propagate(shape, simplices, x, T, marginalise_last=readout == "state")
    labels = shape.states if readout == "state" else shape.symbols
    out: dict = {label: 0 for label in labels}
    for (tape, head, state), prob in dist.items():
        key = state if readout == "state" else tape[head]
        out[key] = out[key] + prob
    return out


def output_distribution(code: NoisyCode, x, T: int, readout: str = "state") -> dict[str, object]:
    """``p(y | x, w)`` for every possible output ``y`` (all states, or all symbols).

    The marginal of ``configuration_distribution`` on the readout; for ``readout="state"`` the
    last step's write and move are summed out first (they sum to 1).
    """
    code = check_code(code)
    T = check_steps(T)
    readout = check_readout(readout)
    out = raw_output_distribution(code.shape, code.simplices, code.shape.check_input(x), T, readout)
    one = one_like(code.simplices)
    return {k: finish(one * v) for k, v in out.items()}
