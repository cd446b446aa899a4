"""Taylor expansion of the potential and the learning coefficient at a classical code (a vertex).

**Learning coefficient at a vertex.** ``vertex_expansion`` gives the exact Taylor expansion of
``K`` to second order in the error coordinates; ``learning_coefficient_at_vertex`` reads off
``lambda`` when the linear terms settle it (see its docstring).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

import sympy

from .codes import ErrorCoordinate, TruncatedPolynomial, error_coordinates, vertex_code
from .machine import TuringMachine, check_steps, run
from .polynomial import walk_paths
from .semantics import raw_output_distribution
from .synthesis import SynthesisTask, check_task

__all__ = [
    "VertexExpansion",
    "VertexLearningCoefficient",
    "learning_coefficient_at_vertex",
    "vertex_expansion",
]


def _check_solves(machine: TuringMachine, task: SynthesisTask, T: int) -> None:
    wrong = [
        "".join(x) for x, y in task.examples if run(machine, x, T).readout(task.readout) != y
    ]
    if wrong:
        raise ValueError(
            f"the machine does not compute the task's output on inputs {wrong} in T={T} steps; "
            "the vertex is not a zero of K, so there is no learning coefficient to compute there"
        )


def _truncated_vertex(machine, coords, max_degree):
    """Vertex entries as truncated polynomials: ``e_j`` off the vertex, ``1 - sum_j e_j`` on it."""
    vertex = vertex_code(machine)
    terms = [[{(): 1} if v == 1 else {} for v in s] for s in vertex.simplices]
    for c in coords:
        terms[c.simplex][c.entry] = {(c.index,): 1}
        terms[c.simplex][vertex.simplices[c.simplex].index(1)][(c.index,)] = -1
    return [tuple(TruncatedPolynomial(t, max_degree) for t in s) for s in terms]


@dataclass(frozen=True)
class VertexExpansion:
    """Taylor expansion to second order of ``K`` at a classical code, in error coordinates.

    ``error_first_order[k]`` and ``error_second_order[k]`` are the integer coefficients of the
    error probability ``D_x = 1 - p(y(x) | x, w)`` for the ``k``-th example: ``{i: a_i}`` for
    ``a_i e_i`` and ``{(i, j): b_ij}`` (``i <= j``) for ``b_ij e_i e_j``. Since
    ``K = sum_x q(x) (D_x + D_x^2 / 2 + ...)``,
    ``potential_first_order[i] = sum_x q(x) a_i`` and
    ``potential_second_order[(i, j)] = sum_x q(x) (b_ij + a_i a_j)`` for ``i < j``,
    ``sum_x q(x) (b_ii + a_i^2 / 2)`` for ``i = j`` (zero coefficients omitted).

    ``a_i`` counts the single-error paths that change the output: an error in coordinate ``i``
    at one step, every other choice classical (Murfet-Troiani arXiv 2504.08075, error
    syndromes). ``first_order_syndromes[i]`` lists the inputs on which that happens.
    """

    coordinates: tuple[ErrorCoordinate, ...]
    inputs: tuple[tuple[str, ...], ...]
    error_first_order: tuple[Mapping[int, int], ...]
    error_second_order: tuple[Mapping[tuple[int, int], int], ...]
    potential_first_order: Mapping[int, Fraction]
    potential_second_order: Mapping[tuple[int, int], Fraction]

    @property
    def relevant(self) -> tuple[ErrorCoordinate, ...]:
        """Coordinates with a positive first-order coefficient in ``K``."""
        return tuple(self.coordinates[i] for i in sorted(self.potential_first_order))

    @property
    def first_order_syndromes(self) -> dict[ErrorCoordinate, tuple[tuple[str, ...], ...]]:
        return {
            self.coordinates[i]: tuple(
                x for x, a in zip(self.inputs, self.error_first_order) if a.get(i, 0)
            )
            for i in sorted(self.potential_first_order)
        }

    @property
    def second_order_pairs(self) -> tuple[tuple[ErrorCoordinate, ErrorCoordinate], ...]:
        """Pairs ``(e_i, e_j)`` with a nonzero second-order coefficient in some ``D_x``."""
        keys = sorted({k for b in self.error_second_order for k, v in b.items() if v})
        return tuple((self.coordinates[i], self.coordinates[j]) for i, j in keys)

    def potential_sympy(self) -> sympy.Expr:
        """``sum_i c_i e_i + sum_{i<=j} c_ij e_i e_j``, error coordinates as sympy symbols."""
        e = [c.sympy_symbol for c in self.coordinates]
        total = sympy.Integer(0)
        for i, c in self.potential_first_order.items():
            total += sympy.Rational(c.numerator, c.denominator) * e[i]
        for (i, j), c in self.potential_second_order.items():
            total += sympy.Rational(c.numerator, c.denominator) * e[i] * e[j]
        return total


def vertex_expansion(machine: TuringMachine, task: SynthesisTask, T: int) -> VertexExpansion:
    """Exact second-order Taylor expansion of ``K`` at the vertex of ``machine``.

    Runs the Markov chain with entries that are polynomials in the error coordinates
    (``1 - sum_j e_j`` on the classical entry, ``e_j`` elsewhere), truncated above degree 2, so
    configurations reached with three or more errors drop out as they arise; then expands
    ``-log(1 - D_x) = D_x + D_x^2/2 + ...``. Requires that ``machine`` solves ``task`` in ``T``
    steps (a zero of ``K``). Murfet-Troiani arXiv 2504.08075 (Taylor series of the potential at a
    code in terms of error syndromes).
    """
    if not isinstance(machine, TuringMachine):
        raise ValueError(f"expected a TuringMachine, got {type(machine).__name__}")
    shape = machine.shape
    task = check_task(task, shape)
    T = check_steps(T)
    _check_solves(machine, task, T)
    coords = error_coordinates(machine)
    simplices = _truncated_vertex(machine, coords, 2)
    first, second = [], []
    for x, y in task.examples:
        p = raw_output_distribution(shape, simplices, x, T, task.readout)[y]
        error = (1 - p).terms
        if error.get((), 0) != 0:  # cannot happen once _check_solves passed
            raise RuntimeError("the vertex does not reproduce the classical output")
        first.append(MappingProxyType({k[0]: v for k, v in sorted(error.items()) if len(k) == 1}))
        second.append(MappingProxyType({k: v for k, v in sorted(error.items()) if len(k) == 2}))
    k1: dict[int, Fraction] = {}
    k2: dict[tuple[int, int], Fraction] = {}
    for q, a, b in zip(task.probabilities, first, second):
        for i, v in a.items():
            k1[i] = k1.get(i, 0) + q * v
        for key, v in b.items():
            k2[key] = k2.get(key, 0) + q * v
        for i, j in itertools.combinations_with_replacement(sorted(a), 2):
            k2[(i, j)] = k2.get((i, j), 0) + q * (a[i] * a[j] if i < j else Fraction(a[i] ** 2, 2))
    return VertexExpansion(
        coordinates=coords,
        inputs=task.inputs,
        error_first_order=tuple(first),
        error_second_order=tuple(second),
        potential_first_order=MappingProxyType({i: v for i, v in sorted(k1.items()) if v}),
        potential_second_order=MappingProxyType({k: v for k, v in sorted(k2.items()) if v}),
    )


@dataclass(frozen=True)
class VertexLearningCoefficient:
    """Result of ``learning_coefficient_at_vertex``.

    ``learning_coefficient`` is ``None`` when the linear terms do not settle it; ``reason`` then
    says why and ``witness`` gives an input and a set of individually harmless errors that
    together change its output.
    """

    learning_coefficient: Fraction | None
    multiplicity: int | None
    relevant_coordinates: tuple[ErrorCoordinate, ...]
    coordinates: str
    reason: str
    witness: tuple[tuple[str, ...], tuple[ErrorCoordinate, ...]] | None = None


def learning_coefficient_at_vertex(
    machine: TuringMachine, task: SynthesisTask, T: int, coordinates: str = "barycentric"
) -> VertexLearningCoefficient:
    """Local learning coefficient of ``K`` at a machine solving ``task``, if linear terms settle it.

    Let ``R`` be the error coordinates with a positive first-order coefficient in ``K``
    (``vertex_expansion``; first-order coefficients at a zero of ``K`` are never negative since
    ``p <= 1``). If ``K`` vanishes identically on the face ``{e_i = 0, i in R}`` then near the
    vertex ``c sum_R e_i <= K <= C sum_R e_i`` on the orthant, and

    - barycentric coordinates, uniform (Dirichlet(1)) prior: ``lambda = |R|``, ``m = 1``
      (linear potential on an orthant, Watanabe 2009, ch. 2–3: each relevant coordinate gives 1);
    - squared coordinates ``p = u^2/|u|^2``, prior smooth and positive in ``u``:
      ``lambda = |R| / 2``, ``m = 1`` (``K ~ sum_R c_i u_i^2``).

    The face condition is decided exactly: on the face, ``1 - p(y(x)|x)`` is a sum of products
    of entries over wrong-output paths, each product nonnegative, so it vanishes identically iff
    it vanishes at one point of the face's relative interior (all other entries positive), which
    is checked with exact Fractions by the Markov chain. If it fails, errors outside ``R`` (no
    first-order effect) combine to change an output (higher-order syndromes), the linear terms
    do not determine ``lambda``, and ``learning_coefficient`` is ``None`` with a reason and a
    witness. Source: Murfet-Troiani arXiv 2504.08075 (geometry at a code from error syndromes).
    """
    if coordinates not in ("barycentric", "squared"):
        raise ValueError(f"coordinates must be 'barycentric' or 'squared', got {coordinates!r}")
    expansion = vertex_expansion(machine, task, T)
    shape = machine.shape
    relevant = set(expansion.potential_first_order)
    if any(v < 0 for v in expansion.potential_first_order.values()):  # p <= 1 forbids this
        raise RuntimeError("negative first-order coefficient at a zero of K")
    coords = expansion.coordinates
    relevant_entries = {(coords[i].simplex, coords[i].entry) for i in relevant}

    # A point in the relative interior of the face {e_R = 0}: other errors 1/(2k) each.
    vertex = vertex_code(machine)
    simplices = []
    for s, entries in enumerate(vertex.simplices):
        k = len(entries)
        row = [Fraction(0) if (s, j) in relevant_entries or v == 1 else Fraction(1, 2 * k)
               for j, v in enumerate(entries)]
        row[entries.index(1)] = 1 - sum(row)
        simplices.append(tuple(row))
    broken = [
        (x, y) for x, y in task.examples
        if raw_output_distribution(shape, simplices, x, T, task.readout)[y] != 1
    ]
    selected = tuple(coords[i] for i in sorted(relevant))
    if not broken:
        size = len(relevant)
        value = Fraction(size) if coordinates == "barycentric" else Fraction(size, 2)
        return VertexLearningCoefficient(
            value, 1, selected, coordinates,
            f"K is linear in {size} relevant error coordinates and vanishes identically on the "
            f"face where they are zero; each contributes "
            f"{1 if coordinates == 'barycentric' else '1/2'}",
        )
    witness = _find_witness(machine, broken, relevant_entries, T, task.readout, coords)
    return VertexLearningCoefficient(
        None, None, selected, coordinates,
        "the linear terms do not settle lambda: errors with no first-order effect "
        "(outside the relevant coordinates) together change the output on inputs "
        f"{[''.join(x) for x, _ in broken]}, so K does not vanish on the face of irrelevant "
        "coordinates and higher-order terms enter",
        witness,
    )


def _find_witness(machine, broken, relevant_entries, T, readout, coords):
    shape = machine.shape
    classical = [entries.index(1) for entries in vertex_code(machine).simplices]
    by_entry = {(c.simplex, c.entry): c for c in coords}
    x, y = broken[0]
    for budget in range(2, 4 * T + 2):  # a path has at most 4T factors
        paths = walk_paths(
            shape, x, T, readout,
            allowed=lambda s, j: (s, j) not in relevant_entries,
            classical=classical, max_deviations=budget,
        )
        for output, factors in paths:
            if output != y:
                errors = tuple(sorted({by_entry[f] for f in factors if f in by_entry},
                                      key=lambda c: c.index))
                return x, errors
    return None
