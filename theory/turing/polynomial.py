"""The output probability as an explicit polynomial in the code entries (for a torch
implementation).

**Polynomial form.** ``p(y | x, w)`` is a polynomial in the code entries with nonnegative integer
coefficients: a sum over *paths* (sequences of choices) of products of the chosen entries.
``output_probability_polynomial`` enumerates it explicitly (for a torch implementation by tensor
gathers). Choices that are never observed are summed out (they sum to 1): a write is expanded only
when the square is read again, and the final move only when the readout needs it. The number of
paths grows like ``(|Sigma| |Q| 3)^T``; use it for ``T <= 4`` on small machines, and the Markov
chain otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .codes import NoisyCode
from .machine import (
    MOVE_OFFSET,
    MOVES,
    MachineShape,
    check_readout,
    check_steps,
    initial_configuration,
)
from .semantics import check_code, finish, one_like
from .synthesis import SynthesisTask, check_task

__all__ = [
    "Monomial",
    "OutputPolynomial",
    "output_distribution_polynomials",
    "output_probability_polynomial",
]


def walk_paths(shape, x, T, readout, allowed=None, classical=None, max_deviations=None):
    """Yield ``(output, factors)`` for every path of the noisy machine on ``x``.

    A path lists the choices that influence the output, each as a factor ``(simplex, entry)``;
    its probability is the product of those entries. Writes are expanded lazily: a written
    square holds the index of the write simplex that produced it and is branched on only when
    it is read again (never-read writes sum out to 1). For ``readout="state"`` the last step's
    move is not branched. ``allowed(simplex, entry)`` prunes factors; with ``classical`` (the
    vertex entry of each simplex) and ``max_deviations`` the search keeps only paths with at
    most that many non-classical factors.
    """
    start = initial_configuration(shape, x, T)
    n_states = len(shape.states)
    symbol_index = {a: i for i, a in enumerate(shape.symbols)}
    state_index = {q: i for i, q in enumerate(shape.states)}
    offsets = [MOVE_OFFSET[m] for m in MOVES]
    n_symbols = len(shape.symbols)

    def ok(simplex, entry, deviations):
        if allowed is not None and not allowed(simplex, entry):
            return None
        if classical is None:
            return deviations
        deviations += entry != classical[simplex]
        return None if max_deviations is not None and deviations > max_deviations else deviations

    def resolve(cell, deviations):
        if isinstance(cell, int):  # a pending write from simplex `cell`
            for j in range(n_symbols):
                d = ok(cell, j, deviations)
                if d is not None:
                    yield shape.symbols[j], ((cell, j),), d
        else:
            yield cell, (), deviations

    def step(t, tape, head, state, factors, deviations):
        if t == T:
            if readout == "state":
                yield state, factors
            else:
                for symbol, extra, _ in resolve(tape[head], deviations):
                    yield symbol, factors + extra
            return
        for read, extra, d0 in resolve(tape[head], deviations):
            base = 3 * (symbol_index[read] * n_states + state_index[state])
            f0 = factors + extra
            for qi in range(n_states):
                d1 = ok(base + 1, qi, d0)
                if d1 is None:
                    continue
                f1 = f0 + ((base + 1, qi),)
                if readout == "state" and t == T - 1:
                    yield shape.states[qi], f1
                    continue
                new_tape = tape[:head] + (base,) + tape[head + 1 :]
                for mi in range(3):
                    d2 = ok(base + 2, mi, d1)
                    if d2 is not None:
                        yield from step(
                            t + 1, new_tape, head + offsets[mi], shape.states[qi],
                            f1 + ((base + 2, mi),), d2,
                        )

    yield from step(0, start.tape, start.head, start.state, (), 0)


@dataclass(frozen=True)
class Monomial:
    """``coefficient * prod_k w[simplex_k][entry_k]`` over ``factors = ((simplex, entry), ...)``.

    Factors are sorted and may repeat (a simplex used at several steps).
    """

    coefficient: int
    factors: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class OutputPolynomial:
    """``p(y | x, w) = sum_m c_m prod_{(s, j) in m} w[s][j]`` as an explicit list of monomials.

    It equals the Markov-chain probability on the parameter space (every simplex summing to 1);
    it is not the same formal polynomial as the full path expansion, because choices that are
    never observed have been summed out. Evaluate it in torch with
    ``flat = cat(simplices)``; ``p = (coefficients * flat[padded_indices].prod(-1)).sum()``
    after appending a 1 to ``flat`` (see ``padded_factor_indices``).
    """

    shape: MachineShape
    monomials: tuple[Monomial, ...]

    @property
    def degree(self) -> int:
        return max((len(m.factors) for m in self.monomials), default=0)

    def evaluate(self, code: NoisyCode):
        """Exact (or float) value at a code of the same shape."""
        code = check_code(code)
        if code.shape != self.shape:
            raise ValueError("the code has a different shape from the polynomial")
        one = one_like(code.simplices)
        total = 0 * one
        for m in self.monomials:
            term = m.coefficient * one
            for s, j in m.factors:
                term = term * code.simplices[s][j]
            total = total + term
        return finish(total)

    def flat_factor_indices(self) -> tuple[tuple[int, ...], ...]:
        """Each monomial's factors as indices into ``NoisyCode.flat()``."""
        offsets = self.shape.simplex_offsets
        return tuple(tuple(offsets[s] + j for s, j in m.factors) for m in self.monomials)

    def padded_factor_indices(self) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """``(coefficients, indices)`` with every index row padded to ``degree`` entries.

        Padding uses the index ``shape.num_entries``, one past the last entry: append a 1 to the
        flat code before gathering.
        """
        width = self.degree
        pad = self.shape.num_entries
        rows = tuple(row + (pad,) * (width - len(row)) for row in self.flat_factor_indices())
        return tuple(m.coefficient for m in self.monomials), rows


def output_distribution_polynomials(
    shape, x, T: int, readout: str = "state", max_paths: int = 2_000_000
) -> dict[str, OutputPolynomial]:
    """``p(y | x, w)`` as an ``OutputPolynomial`` for every output ``y`` (sum over paths).

    Enumerates paths as in the module docstring, merging equal monomials. The path count is at
    most ``(|Sigma| |Q| 3)^T`` per input (fewer with lazy writes); ``max_paths`` stops a blow-up
    with a ValueError (use the Markov chain, ``output_distribution``, for large ``T``).
    """
    shape = shape.shape
    T = check_steps(T)
    readout = check_readout(readout)
    x = shape.check_input(x)
    counts: dict[str, Counter] = {
        label: Counter() for label in (shape.states if readout == "state" else shape.symbols)
    }
    for n, (output, factors) in enumerate(walk_paths(shape, x, T, readout)):
        if n >= max_paths:
            raise ValueError(
                f"more than max_paths={max_paths} paths for input {''.join(x)!r} at T={T}; lower T "
                "or use output_distribution (the Markov chain) instead"
            )
        counts[output][tuple(sorted(factors))] += 1
    return {
        y: OutputPolynomial(shape, tuple(Monomial(c, f) for f, c in sorted(counter.items())))
        for y, counter in counts.items()
    }


def output_probability_polynomial(
    shape, task: SynthesisTask, T: int, max_paths: int = 2_000_000
) -> tuple[OutputPolynomial, ...]:
    """``p(y(x) | x, w)`` as an ``OutputPolynomial`` for each example of ``task``, in order.

    ``shape`` may be a ``MachineShape`` or a ``TuringMachine`` (only its shape is used). The
    potential is ``K(w) = -sum_x q(x) log(poly_x(w))``; see ``OutputPolynomial`` for a torch
    evaluation by gathers. Sizes: ``parity()`` on length-4 inputs at ``T = 4`` gives about 1400
    monomials of degree <= 10 per input (0.3 s to enumerate); at ``T = 2`` it is 10-15.
    """
    shape = shape.shape
    task = check_task(task, shape)
    return tuple(
        output_distribution_polynomials(shape, x, T, task.readout, max_paths)[y]
        for x, y in task.examples
    )
