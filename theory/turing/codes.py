"""Noisy codes: points of the product of simplices, their coordinates, and error coordinates.

**Noisy codes** (Clift-Murfet-Wallbridge). For every pair ``(sigma, q)`` three
independent distributions: the symbol written (a point of the simplex ``Delta_Sigma``), the next
state (``Delta_Q``) and the head move (``Delta_{L,S,R}``). The parameter space ``W`` is the product
of these ``3 |Sigma||Q|`` simplices; its dimension is
``|Sigma||Q| ((|Sigma|-1) + (|Q|-1) + 2) = |Sigma||Q| (|Sigma| + |Q|)`` free coordinates
(the count is right), and the classical machines are its vertices. Simplices are
laid out in a fixed order (see ``MachineShape``): for the pair with index ``i`` (pairs in the order
symbols x states, symbol-major) simplex ``3i`` is the write distribution (entries in the order of
``symbols``), ``3i+1`` the next-state distribution (order of ``states``) and ``3i+2`` the move
distribution (order ``L, S, R``). ``NoisyCode.flat()`` concatenates the simplices in that order.

Two coordinate conventions on one simplex ``Delta_k``:

- *barycentric* ``p = (p_1..p_k)``, ``p_i >= 0``, ``sum p_i = 1``. At a vertex ``p = e_c`` the
  *error coordinates* are the ``k-1`` entries ``p_j`` (``j != c``), with ``p_c = 1 - sum_j p_j``;
  the uniform prior (Dirichlet(1)) is flat in them and lives on an orthant. ``K`` is *linear* in
  them at leading order, and a coordinate with positive slope contributes 1 to ``lambda``
  (Watanabe 2009, ch. 2–3: a linear potential on an orthant).
- *squared* ``u in R^k \\ 0`` with ``p = u^2 / sum u^2`` (``squared_to_barycentric``); ``u`` and
  ``-u`` and ``c u`` give the same ``p``. Near a vertex ``p_j ~ u_j^2``, so ``K`` is *quadratic* in
  the ``u_j`` and a relevant coordinate contributes 1/2. A prior smooth and positive in ``u``
  (e.g. uniform on the sphere, which is Dirichlet(1/2, ..., 1/2) in ``p``) gives these values.
  The two conventions are different models (the priors differ), not a reparametrisation:
  ``u -> u^2`` is not a diffeomorphism at 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real

import sympy

from .machine import KINDS, MOVES, MachineShape, TuringMachine

__all__ = [
    "ErrorCoordinate",
    "NoisyCode",
    "barycentric_to_squared",
    "code_from_distributions",
    "code_from_flat",
    "code_from_squared",
    "error_coordinate_code",
    "error_coordinates",
    "squared_to_barycentric",
    "uniform_code",
    "vertex_code",
]


def is_zero(value) -> bool:
    """Exactly zero: an empty truncated polynomial, a sympy zero, or a number equal to 0."""
    if isinstance(value, TruncatedPolynomial):
        return not value.terms
    if isinstance(value, sympy.Basic):
        return value.is_zero is True
    return value == 0


def _check_simplex_entries(entries, where: str) -> None:
    total = 0
    exact_numeric = True
    for value in entries:
        if isinstance(value, bool) or not isinstance(value, (Real, sympy.Expr)):
            raise ValueError(
                f"{where}: entries must be numbers or sympy expressions, got {value!r}"
            )
        if isinstance(value, sympy.Expr) and value.free_symbols:
            exact_numeric = False
        elif float(value) < 0:
            raise ValueError(f"{where}: entries must be nonnegative, got {value!r}")
        total = total + value
    if any(isinstance(v, float) for v in entries) and exact_numeric:
        if not math.isclose(float(total), 1.0, rel_tol=0.0, abs_tol=1e-12):
            raise ValueError(f"{where}: entries must sum to 1, they sum to {float(total)!r}")
        return
    if isinstance(total, sympy.Basic):
        if sympy.expand(total - 1) != 0:
            raise ValueError(f"{where}: entries must sum to 1, they sum to {total}")
    elif total != 1:
        raise ValueError(f"{where}: entries must sum to 1, they sum to {total!r}")


@dataclass(frozen=True)
class NoisyCode:
    """A point of the noisy-code space: one distribution per simplex of ``shape``.

    ``simplices[s]`` lists the barycentric entries of simplex ``s`` in the order of
    ``shape.simplex_labels(s)``. Entries may be ``int``/``Fraction`` (exact), ``float`` or sympy
    expressions; each simplex must sum to 1 (exactly, or within 1e-12 for floats) and numeric
    entries must be nonnegative.
    """

    shape: MachineShape
    simplices: tuple[tuple, ...]

    def __post_init__(self):
        if not isinstance(self.shape, MachineShape):
            raise ValueError(f"shape must be a MachineShape, got {type(self.shape).__name__}")
        simplices = tuple(tuple(s) for s in self.simplices)
        if len(simplices) != self.shape.num_simplices:
            raise ValueError(
                f"a code of this shape has {self.shape.num_simplices} simplices, "
                f"got {len(simplices)}"
            )
        for s, (entries, size) in enumerate(zip(simplices, self.shape.simplex_sizes)):
            symbol, state, kind = self.shape.describe_simplex(s)
            where = f"simplex {s} ({kind} distribution of ({symbol!r}, {state!r}))"
            if len(entries) != size:
                raise ValueError(f"{where} needs {size} entries, got {len(entries)}")
            _check_simplex_entries(entries, where)
        object.__setattr__(self, "simplices", simplices)

    def flat(self) -> tuple:
        """All entries, simplices concatenated in layout order (length ``shape.num_entries``)."""
        return tuple(v for s in self.simplices for v in s)

    def distributions(self, symbol: str, state: str) -> tuple[tuple, tuple, tuple]:
        """``(write, next state, move)`` distributions of the pair ``(symbol, state)``."""
        i = self.shape.pair_index(symbol, state)
        return self.simplices[3 * i], self.simplices[3 * i + 1], self.simplices[3 * i + 2]

    def to_squared(self) -> tuple[tuple, ...]:
        """Squared coordinates of every simplex (``barycentric_to_squared`` per simplex)."""
        return tuple(barycentric_to_squared(s) for s in self.simplices)


def vertex_code(machine: TuringMachine) -> NoisyCode:
    """The classical machine as a vertex: each simplex is the indicator of its transition."""
    shape = machine.shape
    simplices = []
    for symbol, state in shape.pairs:
        write, new_state, move = machine.transitions[(symbol, state)]
        simplices.append(tuple(Fraction(int(a == write)) for a in shape.symbols))
        simplices.append(tuple(Fraction(int(a == new_state)) for a in shape.states))
        simplices.append(tuple(Fraction(int(a == move)) for a in MOVES))
    return NoisyCode(shape, tuple(simplices))


def uniform_code(shape) -> NoisyCode:
    """The barycentre of ``W``: every simplex uniform (exact Fractions)."""
    shape = shape.shape
    return NoisyCode(shape, tuple((Fraction(1, k),) * k for k in shape.simplex_sizes))


def code_from_flat(shape, flat: Sequence) -> NoisyCode:
    """Inverse of ``NoisyCode.flat``."""
    shape = shape.shape
    flat = tuple(flat)
    if len(flat) != shape.num_entries:
        raise ValueError(
            f"a flat code of this shape has {shape.num_entries} entries, got {len(flat)}"
        )
    return NoisyCode(
        shape,
        tuple(flat[o : o + k] for o, k in zip(shape.simplex_offsets, shape.simplex_sizes)),
    )


def code_from_distributions(shape, distributions: Mapping, default: TuringMachine | None = None):
    """Build a code from ``{(symbol, state): (write, next_state, move)}`` distributions.

    Each distribution is a sequence in label order or a mapping ``label -> probability``
    (missing labels get 0). Pairs absent from ``distributions`` take the vertex of ``default``;
    without a default every pair must be given.
    """
    shape = shape.shape
    extra = [key for key in distributions if key not in shape.pairs]
    if extra:
        raise ValueError(f"{extra} are not (symbol, state) pairs of this shape")
    base = vertex_code(default).simplices if default is not None else None
    if default is not None and default.shape != shape:
        raise ValueError("default machine has a different shape")
    simplices = []
    for i, pair in enumerate(shape.pairs):
        if pair not in distributions:
            if base is None:
                raise ValueError(f"no distributions given for {pair} and no default machine")
            simplices.extend(base[3 * i : 3 * i + 3])
            continue
        triple = distributions[pair]
        if len(triple) != 3:
            raise ValueError(f"{pair} needs (write, next_state, move) distributions")
        for kind, dist in enumerate(triple):
            labels = shape.simplex_labels(3 * i + kind)
            if isinstance(dist, Mapping):
                unknown = [k for k in dist if k not in labels]
                if unknown:
                    raise ValueError(
                        f"{pair} {KINDS[kind]} distribution has unknown labels {unknown}"
                    )
                dist = tuple(dist.get(label, 0) for label in labels)
            simplices.append(tuple(dist))
    return NoisyCode(shape, tuple(simplices))


def squared_to_barycentric(u: Sequence) -> tuple:
    """``p_i = u_i^2 / sum_j u_j^2`` (squared coordinates to barycentric); ``u`` must be nonzero.

    Exact for ``int``/``Fraction``/sympy input, float for float input.
    """
    u = tuple(u)
    if not u:
        raise ValueError("a simplex needs at least one coordinate")
    norm = sum(v * v for v in u)
    if is_zero(norm):
        raise ValueError("squared coordinates must not all be zero")
    if isinstance(norm, Integral):
        norm = Fraction(norm)
    return tuple(v * v / norm for v in u)


def barycentric_to_squared(p: Sequence) -> tuple:
    """The representative ``u_i = sqrt(p_i)`` on the unit sphere, ``u >= 0``.

    Inverse of ``squared_to_barycentric`` up to ``u -> c u`` and sign flips. Float input gives
    floats; exact input gives sympy (``sqrt`` of a rational is generally irrational).
    """
    p = tuple(p)
    _check_simplex_entries(p, "barycentric point")
    if all(isinstance(v, float) for v in p):
        return tuple(math.sqrt(v) for v in p)
    exact = (sympy.nsimplify(v) if isinstance(v, float) else sympy.sympify(v) for v in p)
    return tuple(sympy.sqrt(v) for v in exact)


def code_from_squared(shape, squared: Sequence[Sequence]) -> NoisyCode:
    """Code whose simplex ``s`` is ``squared_to_barycentric(squared[s])``."""
    shape = shape.shape
    if len(squared) != shape.num_simplices:
        raise ValueError(
            f"need {shape.num_simplices} simplices of squared coordinates, got {len(squared)}"
        )
    return NoisyCode(shape, tuple(squared_to_barycentric(u) for u in squared))


@dataclass(frozen=True)
class ErrorCoordinate:
    """One barycentric error coordinate at a vertex: entry ``entry`` of simplex ``simplex``.

    It is the probability that the pair ``(symbol, state)`` chooses ``label`` instead of the
    classical ``classical_label`` for its ``kind`` (write, state or move).
    """

    index: int
    simplex: int
    entry: int
    symbol: str
    state: str
    kind: str
    label: str
    classical_label: str

    @property
    def name(self) -> str:
        return f"e[{self.kind}({self.symbol},{self.state})={self.label}]"

    @property
    def sympy_symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, nonnegative=True)


def error_coordinates(machine: TuringMachine) -> tuple[ErrorCoordinate, ...]:
    """The ``dimension`` error coordinates at the vertex of ``machine``, in layout order."""
    shape = machine.shape
    vertex = vertex_code(machine)
    coords = []
    for s, entries in enumerate(vertex.simplices):
        symbol, state, kind = shape.describe_simplex(s)
        labels = shape.simplex_labels(s)
        classical = entries.index(1)
        for j in range(len(entries)):
            if j != classical:
                coords.append(
                    ErrorCoordinate(
                        len(coords), s, j, symbol, state, kind, labels[j], labels[classical]
                    )
                )
    return tuple(coords)


def error_coordinate_code(machine: TuringMachine) -> tuple[NoisyCode, tuple[ErrorCoordinate, ...]]:
    """The code near the vertex as sympy expressions in the error coordinates.

    Entry ``j != c`` of a simplex whose vertex is ``c`` is the symbol ``e_j``; entry ``c`` is
    ``1 - sum_j e_j``. Returns ``(code, coordinates)``.
    """
    coords = error_coordinates(machine)
    vertex = vertex_code(machine)
    simplices = [list(map(sympy.Integer, s)) for s in vertex.simplices]
    for c in coords:
        classical = vertex.simplices[c.simplex].index(1)
        simplices[c.simplex][c.entry] = c.sympy_symbol
        simplices[c.simplex][classical] -= c.sympy_symbol
    return NoisyCode(machine.shape, tuple(tuple(s) for s in simplices)), coords


class TruncatedPolynomial:
    """Polynomial in error coordinates, truncated above a fixed degree (exact integer terms).

    ``terms`` maps a sorted tuple of coordinate indices (with repetition: ``(i, i)`` is
    ``e_i^2``) to its coefficient. Used to run the Markov chain at a vertex and keep only the
    Taylor coefficients up to ``max_degree``: paths with more errors drop out as they arise.
    """

    __slots__ = ("terms", "max_degree")

    def __init__(self, terms: dict, max_degree: int):
        self.terms = terms
        self.max_degree = max_degree

    def _new(self, terms):
        return TruncatedPolynomial({k: v for k, v in terms.items() if v != 0}, self.max_degree)

    def __add__(self, other):
        if isinstance(other, int) and other == 0:
            return self
        terms = dict(self.terms)
        for k, v in other.terms.items():
            terms[k] = terms.get(k, 0) + v
        return self._new(terms)

    __radd__ = __add__

    def __mul__(self, other):
        terms: dict = {}
        for k1, v1 in self.terms.items():
            for k2, v2 in other.terms.items():
                if len(k1) + len(k2) <= self.max_degree:
                    k = tuple(sorted(k1 + k2))
                    terms[k] = terms.get(k, 0) + v1 * v2
        return self._new(terms)

    def __rsub__(self, other):  # other - self, other a number
        terms = {k: -v for k, v in self.terms.items()}
        terms[()] = terms.get((), 0) + other
        return self._new(terms)
