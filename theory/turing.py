"""Noisy Turing machines with exact semantics, their potential, and learning coefficients at codes.

Sources: J. Clift, D. Murfet, J. Wallbridge, "Geometry of program synthesis", arXiv 2103.16080
(noisy codes, the potential ``K`` of a synthesis problem); D. Murfet, W. Troiani,
"Programs as singularities", arXiv 2504.08075 (Taylor expansion of ``K`` at a classical code and
error syndromes; two machines with the same function can sit at singularities of different
geometry). Sources: Clift, Murfet & Wallbridge arXiv 2103.16080; Murfet & Troiani arXiv 2504.08075.

**Machines.** A Turing machine has a finite alphabet ``Sigma`` (containing the blank), a finite
set of states ``Q``, a start state, and a *total* transition function
``(read symbol, state) -> (write symbol, next state, move)``, ``move`` in ``{L, S, R}``. There is no
halting state: a machine is run for exactly ``T`` steps and then read out.

**Tape.** The input ``x = x_0 ... x_{n-1}`` is written on squares ``0 .. n-1`` and every other
square is blank; the head starts on square 0 (the first input symbol, or a blank if ``x`` is
empty) in the start state. In ``T`` steps the head reads and writes only squares in
``[-(T-1), T-1]`` and ends in ``[-T, T]``, so the bounded tape of squares ``-T .. n+T`` (both
ends included, ``n + 2T + 1`` squares) loses nothing. ``Configuration.tape[k]`` is square
``k - T``; ``Configuration.head`` is an index into that tuple.

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

**Exact semantics** (this module's convention). One step of a noisy machine in configuration
``(tape, head, state)`` reads ``sigma = tape[head]`` and draws, independently, a written symbol, a
next state and a move from the three distributions of ``(sigma, state)``. This is a Markov chain
on whole configurations; ``configuration_distribution`` propagates it exactly for ``T`` steps.
It is *not* the per-square ("mean-field") relaxation, which keeps a separate distribution for
every square, the head and the state and so forgets their correlations; the two agree for
``T <= 1`` and differ in general. Cost: the number of configurations with nonzero probability is
at most ``|Q| (2T+1) |Sigma|^(2T-1)``, so the chain is exact and cheap for the small ``T`` used
here, and near a vertex far fewer configurations are reached.

**Model and potential.** ``p(y | x, w)`` is the distribution of a readout of the configuration
after ``T`` steps: ``readout="state"`` (the default; the final state, as in Murfet-Troiani) or
``readout="head_symbol"`` (the symbol under the head). For a deterministic synthesis task with
examples ``(x, y(x))`` and input probabilities ``q(x)``,
``K(w) = -sum_x q(x) log p(y(x) | x, w)`` (``potential``). Classical machines that solve the task
are exactly the vertices with ``K = 0``.

**Polynomial form.** ``p(y | x, w)`` is a polynomial in the code entries with nonnegative integer
coefficients: a sum over *paths* (sequences of choices) of products of the chosen entries.
``output_probability_polynomial`` enumerates it explicitly (for a torch implementation by tensor
gathers). Choices that are never observed are summed out (they sum to 1): a write is expanded only
when the square is read again, and the final move only when the readout needs it. The number of
paths grows like ``(|Sigma| |Q| 3)^T``; use it for ``T <= 4`` on small machines, and the Markov
chain otherwise.

**Learning coefficient at a vertex.** ``vertex_expansion`` gives the exact Taylor expansion of
``K`` to second order in the error coordinates; ``learning_coefficient_at_vertex`` reads off
``lambda`` when the linear terms settle it (see its docstring).

Arithmetic is exact whenever the inputs are: ``fractions.Fraction`` (or ``int``) codes give
``Fraction`` probabilities, sympy codes give sympy expressions, float codes give floats.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Rational, Real
from types import MappingProxyType

import sympy

__all__ = [
    "MOVES",
    "READOUTS",
    "Configuration",
    "ErrorCoordinate",
    "MachinePair",
    "MachineShape",
    "Monomial",
    "NoisyCode",
    "OutputPolynomial",
    "SynthesisTask",
    "TuringMachine",
    "VertexExpansion",
    "VertexLearningCoefficient",
    "all_strings",
    "barycentric_to_squared",
    "code_from_distributions",
    "code_from_flat",
    "code_from_squared",
    "configuration_distribution",
    "detect_a",
    "detect_a_split_reject",
    "detect_a_task",
    "detect_a_verify",
    "error_coordinate_code",
    "error_coordinates",
    "initial_configuration",
    "learning_coefficient_at_vertex",
    "machine_pairs",
    "output_distribution",
    "output_distribution_polynomials",
    "output_probabilities",
    "output_probability_polynomial",
    "parity",
    "parity_split_even",
    "parity_task",
    "potential",
    "run",
    "single_step_llc",
    "single_step_llc_dirichlet",
    "squared_to_barycentric",
    "tape_length",
    "uniform_code",
    "vertex_code",
    "vertex_expansion",
]

MOVES: tuple[str, ...] = ("L", "S", "R")
_MOVE_OFFSET = {"L": -1, "S": 0, "R": 1}
_KINDS = ("write", "state", "move")
READOUTS: tuple[str, ...] = ("state", "head_symbol")


# --------------------------------------------------------------------------------------------
# Shapes, machines, configurations
# --------------------------------------------------------------------------------------------


def _check_labels(values, name: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a sequence of distinct strings, got {values!r}")
    labels = tuple(values)
    if not labels:
        raise ValueError(f"{name} must not be empty")
    for label in labels:
        if not isinstance(label, str) or not label:
            raise ValueError(f"every entry of {name} must be a non-empty string, got {label!r}")
    if len(set(labels)) != len(labels):
        duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
        raise ValueError(f"{name} must be distinct; repeated: {duplicates}")
    return labels


def _check_steps(T) -> int:
    if isinstance(T, bool) or not isinstance(T, Integral) or T < 0:
        raise ValueError(f"T (the number of steps) must be a non-negative integer, got {T!r}")
    return int(T)


def _check_readout(readout) -> str:
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    return readout


@dataclass(frozen=True)
class MachineShape:
    """The alphabet, states, start state and blank: everything but the transitions.

    It fixes the parameter space ``W`` of noisy codes: ``3 |Sigma||Q|`` simplices, laid out as in
    the module docstring (pair ``i = symbol_index * |Q| + state_index``; simplices ``3i`` write,
    ``3i+1`` next state, ``3i+2`` move), with ``num_entries = |Sigma||Q| (|Sigma| + |Q| + 3)``
    barycentric entries and ``dimension = |Sigma||Q| (|Sigma| + |Q|)`` free coordinates
    (Clift-Murfet-Wallbridge arXiv 2103.16080).
    """

    symbols: tuple[str, ...]
    states: tuple[str, ...]
    start_state: str
    blank: str = "_"

    def __post_init__(self):
        symbols = _check_labels(self.symbols, "symbols")
        states = _check_labels(self.states, "states")
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "states", states)
        if self.blank not in symbols:
            raise ValueError(f"the blank {self.blank!r} must be one of the symbols {symbols}")
        if self.start_state not in states:
            raise ValueError(f"start_state {self.start_state!r} must be one of the states {states}")

    @property
    def shape(self) -> MachineShape:
        return self

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (read symbol, state) pairs in layout order (symbol-major)."""
        return tuple(itertools.product(self.symbols, self.states))

    def pair_index(self, symbol: str, state: str) -> int:
        return self.symbols.index(symbol) * len(self.states) + self.states.index(state)

    @property
    def num_simplices(self) -> int:
        return 3 * len(self.symbols) * len(self.states)

    def simplex_labels(self, simplex: int) -> tuple[str, ...]:
        """Entry labels of a simplex: symbols (write), states (next state) or ``L, S, R``."""
        kind = simplex % 3
        return (self.symbols, self.states, MOVES)[kind]

    def describe_simplex(self, simplex: int) -> tuple[str, str, str]:
        """``(read symbol, state, kind)`` of a simplex, kind in ``write, state, move``."""
        if not 0 <= simplex < self.num_simplices:
            raise ValueError(f"simplex index must be in 0..{self.num_simplices - 1}, got {simplex}")
        symbol, state = self.pairs[simplex // 3]
        return symbol, state, _KINDS[simplex % 3]

    @property
    def simplex_sizes(self) -> tuple[int, ...]:
        return tuple(len(self.simplex_labels(s)) for s in range(self.num_simplices))

    @property
    def simplex_offsets(self) -> tuple[int, ...]:
        """Index in ``NoisyCode.flat()`` of each simplex's first entry."""
        return tuple(itertools.accumulate(self.simplex_sizes, initial=0))[:-1]

    @property
    def num_entries(self) -> int:
        return sum(self.simplex_sizes)

    @property
    def dimension(self) -> int:
        """Free coordinates ``|Sigma||Q|(|Sigma| + |Q|)``: a simplex of size k gives k-1."""
        return self.num_entries - self.num_simplices

    def check_input(self, x) -> tuple[str, ...]:
        """An input as a tuple of symbols; a ``str`` is split into characters."""
        if isinstance(x, str):
            x = tuple(x)
        if isinstance(x, bytes) or not isinstance(x, Sequence):
            raise ValueError(f"an input must be a string or a sequence of symbols, got {x!r}")
        x = tuple(x)
        bad = [s for s in x if s not in self.symbols]
        if bad:
            raise ValueError(
                f"input {x!r} uses {bad}, which are not symbols of the machine {self.symbols}"
            )
        return x


@dataclass(frozen=True)
class TuringMachine:
    """A classical Turing machine: shape data plus a total transition function.

    ``transitions`` maps ``(read symbol, state)`` to ``(write symbol, next state, move)`` with
    ``move`` in ``{"L", "S", "R"}``; every pair must be present (a vertex of the noisy-code space
    needs all of them). The machine has no halting state; it runs for a fixed number of steps.
    """

    symbols: tuple[str, ...]
    states: tuple[str, ...]
    start_state: str
    transitions: Mapping[tuple[str, str], tuple[str, str, str]] = field(hash=False)
    blank: str = "_"

    def __post_init__(self):
        shape = MachineShape(self.symbols, self.states, self.start_state, self.blank)
        object.__setattr__(self, "symbols", shape.symbols)
        object.__setattr__(self, "states", shape.states)
        if not isinstance(self.transitions, Mapping):
            raise ValueError(
                "transitions must be a mapping (read symbol, state) -> (write, next state, move), "
                f"got {type(self.transitions).__name__}"
            )
        table = {}
        for key, value in self.transitions.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"transition keys must be (read symbol, state) pairs, got {key!r}")
            symbol, state = key
            if symbol not in shape.symbols or state not in shape.states:
                raise ValueError(
                    f"transition key {key!r} is not a (symbol, state) pair of symbols "
                    f"{shape.symbols} and states {shape.states}"
                )
            if not (isinstance(value, tuple) and len(value) == 3):
                raise ValueError(
                    f"transition {key!r} must map to (write symbol, next state, move), "
                    f"got {value!r}"
                )
            write, new_state, move = value
            if write not in shape.symbols:
                raise ValueError(f"transition {key!r} writes {write!r}, not one of {shape.symbols}")
            if new_state not in shape.states:
                raise ValueError(
                    f"transition {key!r} goes to {new_state!r}, not one of {shape.states}"
                )
            if move not in MOVES:
                raise ValueError(f"transition {key!r} moves {move!r}; moves are {MOVES}")
            table[key] = (write, new_state, move)
        missing = [pair for pair in shape.pairs if pair not in table]
        if missing:
            raise ValueError(
                f"transitions must be total; add entries for the (symbol, state) pairs {missing}"
            )
        object.__setattr__(
            self, "transitions", MappingProxyType({pair: table[pair] for pair in shape.pairs})
        )

    @property
    def shape(self) -> MachineShape:
        return MachineShape(self.symbols, self.states, self.start_state, self.blank)

    def transition(self, symbol: str, state: str) -> tuple[str, str, str]:
        return self.transitions[(symbol, state)]


@dataclass(frozen=True)
class Configuration:
    """A configuration on the bounded tape: ``tape[k]`` is square ``k - origin``.

    ``head`` is an index into ``tape``; ``origin`` (= ``T``) is the index of square 0, where the
    input starts.
    """

    tape: tuple[str, ...]
    head: int
    state: str
    origin: int

    @property
    def position(self) -> int:
        """Head position in squares relative to the first input square."""
        return self.head - self.origin

    @property
    def head_symbol(self) -> str:
        return self.tape[self.head]

    def readout(self, readout: str = "state") -> str:
        return self.state if _check_readout(readout) == "state" else self.head_symbol


def tape_length(input_length: int, T: int) -> int:
    """Squares ``-T .. n+T`` inclusive: ``n + 2T + 1`` (module docstring)."""
    return input_length + 2 * _check_steps(T) + 1


def initial_configuration(shape, x, T: int) -> Configuration:
    """Input on squares ``0..n-1``, blanks elsewhere on ``-T..n+T``, head on square 0."""
    shape = shape.shape
    T = _check_steps(T)
    x = shape.check_input(x)
    tape = (shape.blank,) * T + x + (shape.blank,) * (T + 1)
    return Configuration(tape=tape, head=T, state=shape.start_state, origin=T)


def run(machine: TuringMachine, x, T: int) -> Configuration:
    """Run a classical machine for exactly ``T`` steps and return the final configuration."""
    if not isinstance(machine, TuringMachine):
        raise ValueError(f"run needs a TuringMachine, got {type(machine).__name__}")
    config = initial_configuration(machine, x, T)
    tape, head, state = list(config.tape), config.head, config.state
    for _ in range(int(T)):  # T was validated by initial_configuration
        write, state, move = machine.transitions[(tape[head], state)]
        tape[head] = write
        head += _MOVE_OFFSET[move]
    return Configuration(tuple(tape), head, state, config.origin)


# --------------------------------------------------------------------------------------------
# Noisy codes and coordinates
# --------------------------------------------------------------------------------------------


def _is_zero(value) -> bool:
    if isinstance(value, _Truncated):
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
                        f"{pair} {_KINDS[kind]} distribution has unknown labels {unknown}"
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
    if _is_zero(norm):
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


class _Truncated:
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
        return _Truncated({k: v for k, v in terms.items() if v != 0}, self.max_degree)

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


# --------------------------------------------------------------------------------------------
# Exact Markov-chain semantics
# --------------------------------------------------------------------------------------------


def _one_like(simplices):
    for entries in simplices:
        for value in entries:
            if isinstance(value, _Truncated):
                return _Truncated({(): 1}, value.max_degree)
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
    offsets = [_MOVE_OFFSET[m] for m in MOVES]
    dist = {(start.tape, start.head, start.state): _one_like(simplices)}
    for step in range(T):
        last = marginalise_last and step == T - 1
        new: dict = {}
        for (tape, head, state), prob in dist.items():
            base = 3 * (symbol_index[tape[head]] * n_states + state_index[state])
            writes, nexts, moves = simplices[base], simplices[base + 1], simplices[base + 2]
            for qi, q_prob in enumerate(nexts):
                if _is_zero(q_prob):
                    continue
                p_q = prob * q_prob
                if _is_zero(p_q):
                    continue
                if last:
                    key = (tape, head, shape.states[qi])
                    new[key] = new.get(key, 0) + p_q
                    continue
                for wi, w_prob in enumerate(writes):
                    if _is_zero(w_prob):
                        continue
                    p_qw = p_q * w_prob
                    if _is_zero(p_qw):
                        continue
                    new_tape = tape[:head] + (shape.symbols[wi],) + tape[head + 1 :]
                    for mi, m_prob in enumerate(moves):
                        if _is_zero(m_prob):
                            continue
                        p_all = p_qw * m_prob
                        if _is_zero(p_all):
                            continue
                        key = (new_tape, head + offsets[mi], shape.states[qi])
                        new[key] = new.get(key, 0) + p_all
        dist = new
    return dist, start.origin


def _code_arg(code) -> NoisyCode:
    if not isinstance(code, NoisyCode):
        raise ValueError(
            f"expected a NoisyCode (see vertex_code, code_from_flat), got {type(code).__name__}"
        )
    return code


def _finish(value):
    return sympy.expand(value) if isinstance(value, sympy.Basic) else value


def configuration_distribution(code: NoisyCode, x, T: int) -> dict[Configuration, object]:
    """Exact law of the configuration after ``T`` steps of the noisy machine ``code`` on ``x``.

    The Markov chain of the module docstring: from ``(tape, head, q)`` with ``sigma = tape[head]``
    it moves to ``(tape[head := a], head + m, q')`` with probability
    ``w_write(sigma, q)[a] * w_state(sigma, q)[q'] * w_move(sigma, q)[m]``
    (Clift-Murfet-Wallbridge arXiv 2103.16080, without a mean-field step).
    Configurations of probability exactly zero are omitted.
    """
    code = _code_arg(code)
    T = _check_steps(T)
    dist, origin = _propagate(code.shape, code.simplices, x, T, marginalise_last=False)
    return {Configuration(t, h, q, origin): _finish(p) for (t, h, q), p in dist.items()}


def _output_distribution(shape, simplices, x, T, readout):
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
    code = _code_arg(code)
    T = _check_steps(T)
    readout = _check_readout(readout)
    out = _output_distribution(code.shape, code.simplices, code.shape.check_input(x), T, readout)
    one = _one_like(code.simplices)
    return {k: _finish(one * v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Synthesis tasks and the potential
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthesisTask:
    """A deterministic synthesis problem: examples ``(x, y(x))`` with input probabilities ``q(x)``.

    ``examples`` is a sequence of ``(input, output)``; a ``str`` input is split into characters.
    ``probabilities`` are exact (``int``/``Fraction``), positive, and sum to 1; by default every
    input is equally likely. ``readout`` says what the output is: the final ``"state"`` or the
    ``"head_symbol"`` after ``T`` steps.
    """

    examples: tuple[tuple[tuple[str, ...], str], ...]
    probabilities: tuple[Fraction, ...] | None = None
    readout: str = "state"

    def __post_init__(self):
        _check_readout(self.readout)
        if isinstance(self.examples, (str, bytes)) or not isinstance(self.examples, Iterable):
            raise ValueError("examples must be a sequence of (input, output) pairs")
        examples = []
        for example in self.examples:
            if not (isinstance(example, (tuple, list)) and len(example) == 2):
                raise ValueError(f"each example must be an (input, output) pair, got {example!r}")
            x, y = example
            x = tuple(x) if isinstance(x, (str, list, tuple)) else x
            if not isinstance(x, tuple) or not all(isinstance(a, str) for a in x):
                raise ValueError(
                    f"an input must be a string or a sequence of symbols, got {example[0]!r}"
                )
            if not isinstance(y, str):
                raise ValueError(f"an output must be a state or symbol name (str), got {y!r}")
            examples.append((x, y))
        if not examples:
            raise ValueError("a task needs at least one example")
        inputs = [x for x, _ in examples]
        if len(set(inputs)) != len(inputs):
            raise ValueError("each input may appear only once in a deterministic task")
        object.__setattr__(self, "examples", tuple(examples))
        if self.probabilities is None:
            probs = (Fraction(1, len(examples)),) * len(examples)
        else:
            probs = tuple(self.probabilities)
            if len(probs) != len(examples):
                raise ValueError(
                    f"need one probability per example ({len(examples)}), got {len(probs)}"
                )
            for p in probs:
                if isinstance(p, bool) or not isinstance(p, Rational):
                    raise ValueError(
                        f"probabilities must be exact (int or fractions.Fraction), got {p!r}"
                    )
            probs = tuple(Fraction(p) for p in probs)
            if any(p <= 0 for p in probs):
                raise ValueError("probabilities must be positive; drop examples of probability 0")
            if sum(probs) != 1:
                raise ValueError(f"probabilities must sum to 1, they sum to {sum(probs)}")
        object.__setattr__(self, "probabilities", probs)

    @property
    def inputs(self) -> tuple[tuple[str, ...], ...]:
        return tuple(x for x, _ in self.examples)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(y for _, y in self.examples)

    def check_against(self, shape) -> None:
        """Fail unless every input uses the shape's symbols and every output is a readout value."""
        shape = shape.shape
        labels = shape.states if self.readout == "state" else shape.symbols
        for x, y in self.examples:
            shape.check_input(x)
            if y not in labels:
                raise ValueError(
                    f"output {y!r} for input {''.join(x)!r} is not a possible "
                    f"{self.readout} {labels}"
                )


def _task_arg(task, shape) -> SynthesisTask:
    if not isinstance(task, SynthesisTask):
        raise ValueError(f"expected a SynthesisTask, got {type(task).__name__}")
    task.check_against(shape)
    return task


def output_probabilities(code: NoisyCode, task: SynthesisTask, T: int) -> tuple:
    """``p(y(x) | x, w)`` for every example of the task, by the exact Markov chain."""
    code = _code_arg(code)
    task = _task_arg(task, code.shape)
    T = _check_steps(T)
    one = _one_like(code.simplices)
    return tuple(
        _finish(one * _output_distribution(code.shape, code.simplices, x, T, task.readout)[y])
        for x, y in task.examples
    )


def potential(code: NoisyCode, task: SynthesisTask, T: int):
    """``K(w) = -sum_x q(x) log p(y(x) | x, w)`` (Clift et al. arXiv 2103.16080).

    For a deterministic task the true conditional entropy is 0, so this is both the average
    negative log-likelihood ``L(w)`` and the KL divergence ``K(w)``. Float codes give a float
    (``inf`` if some ``p = 0``); exact and sympy codes give a sympy expression (``oo`` if some
    ``p = 0``), exact, e.g. ``log(2)`` rather than ``0.693...``.
    """
    probs = output_probabilities(code, task, T)
    if all(isinstance(p, float) for p in probs):
        if any(p <= 0 for p in probs):
            return math.inf
        return -math.fsum(float(q) * math.log(p) for q, p in zip(task.probabilities, probs))
    total = sympy.Integer(0)
    for q, p in zip(task.probabilities, probs):
        p = sympy.sympify(p)
        if p.is_zero:
            return sympy.oo
        total -= sympy.Rational(q.numerator, q.denominator) * sympy.log(p)
    return total


# --------------------------------------------------------------------------------------------
# The output probability as an explicit polynomial (for a torch implementation)
# --------------------------------------------------------------------------------------------


def _walk_paths(shape, x, T, readout, allowed=None, classical=None, max_deviations=None):
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
    offsets = [_MOVE_OFFSET[m] for m in MOVES]
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
        code = _code_arg(code)
        if code.shape != self.shape:
            raise ValueError("the code has a different shape from the polynomial")
        one = _one_like(code.simplices)
        total = 0 * one
        for m in self.monomials:
            term = m.coefficient * one
            for s, j in m.factors:
                term = term * code.simplices[s][j]
            total = total + term
        return _finish(total)

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
    T = _check_steps(T)
    readout = _check_readout(readout)
    x = shape.check_input(x)
    counts: dict[str, Counter] = {
        label: Counter() for label in (shape.states if readout == "state" else shape.symbols)
    }
    for n, (output, factors) in enumerate(_walk_paths(shape, x, T, readout)):
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
    task = _task_arg(task, shape)
    return tuple(
        output_distribution_polynomials(shape, x, T, task.readout, max_paths)[y]
        for x, y in task.examples
    )


# --------------------------------------------------------------------------------------------
# Taylor expansion and learning coefficient at a vertex
# --------------------------------------------------------------------------------------------


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
    return [tuple(_Truncated(t, max_degree) for t in s) for s in terms]


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
    task = _task_arg(task, shape)
    T = _check_steps(T)
    _check_solves(machine, task, T)
    coords = error_coordinates(machine)
    simplices = _truncated_vertex(machine, coords, 2)
    first, second = [], []
    for x, y in task.examples:
        p = _output_distribution(shape, simplices, x, T, task.readout)[y]
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
        if _output_distribution(shape, simplices, x, T, task.readout)[y] != 1
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
        paths = _walk_paths(
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


# --------------------------------------------------------------------------------------------
# Finite-temperature oracle for one-step tasks
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
# A small library of machines and tasks
# --------------------------------------------------------------------------------------------

_LETTERS = ("A", "B")
_SYMBOLS = ("_", "A", "B")


def all_strings(alphabet: Sequence[str], lengths: Iterable[int]) -> tuple[tuple[str, ...], ...]:
    """Every string over ``alphabet`` of each length in ``lengths``, shortest first."""
    alphabet = _check_labels(alphabet, "alphabet")
    lengths = tuple(lengths)
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise ValueError(f"lengths must be non-negative integers, got {n!r}")
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"lengths must be distinct, got {lengths}")
    return tuple(x for n in sorted(lengths) for x in itertools.product(alphabet, repeat=n))


def detect_a_task(lengths: Iterable[int] = (1,)) -> SynthesisTask:
    """Strings over ``{A, B}`` of given lengths, equiprobable; output ``accept`` iff an A occurs.

    ``lengths=(1,)`` is the one-step task of Murfet & Troiani (inputs ``A`` and ``B``, ``T = 1``).
    """
    return SynthesisTask(
        tuple((x, "accept" if "A" in x else "reject") for x in all_strings(_LETTERS, lengths))
    )


def parity_task(lengths: Iterable[int] = (2,)) -> SynthesisTask:
    """Strings over ``{A, B}`` of given lengths, equiprobable; output the parity of #A.

    Outputs are the state names ``even`` and ``odd``.
    """
    return SynthesisTask(
        tuple((x, "odd" if x.count("A") % 2 else "even") for x in all_strings(_LETTERS, lengths))
    )


def _with_sink(transitions: dict, state: str) -> dict:
    # A state that only errors can reach: it keeps the tape and the head still and never leaves.
    transitions.update({(s, state): (s, state, "S") for s in _SYMBOLS})
    return transitions


def detect_a(extra_state: bool = False) -> TuringMachine:
    """detectA (Murfet-Troiani arXiv 2504.08075): accept iff the input has an A.

    Symbols ``{_, A, B}``, states ``{reject, accept}``, start ``reject``. In ``reject`` it moves
    right over B's; reading A it moves to ``accept``, which is absorbing (every symbol is left
    in place, the head stays). On a blank in ``reject`` it stays put in ``reject``.
    With ``extra_state`` a third state ``spare`` is added that nothing classical reaches (it is
    absorbing too): same function, larger parameter space (54 instead of 30 coordinates).
    """
    states = ("reject", "accept", "spare") if extra_state else ("reject", "accept")
    transitions = {
        ("A", "reject"): ("A", "accept", "R"),
        ("B", "reject"): ("B", "reject", "R"),
        ("_", "reject"): ("_", "reject", "S"),
    }
    _with_sink(transitions, "accept")
    if extra_state:
        _with_sink(transitions, "spare")
    return TuringMachine(_SYMBOLS, states, "reject", transitions)


def detect_a_verify() -> TuringMachine:
    """detectA by *erase and verify*: same function as ``detect_a()`` on the detectA tasks below.

    Reading A in ``reject`` it erases the A, moves to ``accept`` and stays on the square; in
    ``accept`` it checks its own write: a blank confirms (stay in ``accept``), a letter means
    the erasure failed and it moves to ``reject``. B's are skipped as in ``detect_a``. Reading
    back what it wrote makes the write coordinates of ``(A, reject)`` relevant: on the task
    ``detect_a_task((1, 2))`` with ``T = 2`` its learning coefficient is 9, against 8 for
    ``detect_a()`` (``machine_pairs``).
    """
    transitions = {
        ("A", "reject"): ("_", "accept", "S"),
        ("B", "reject"): ("B", "reject", "R"),
        ("_", "reject"): ("_", "reject", "S"),
        ("_", "accept"): ("_", "accept", "S"),
        ("A", "accept"): ("A", "reject", "S"),
        ("B", "accept"): ("B", "reject", "S"),
    }
    return TuringMachine(_SYMBOLS, ("reject", "accept"), "reject", transitions)


def detect_a_split_reject() -> TuringMachine:
    """detectA with "no A yet" split over two states (for inputs of length <= 2, T = 2).

    States ``{reject, accept, spare}``: a first B sends ``reject`` to ``spare`` (read it as
    "no A yet, one B seen"), which behaves like ``reject`` on the next square (A -> accept,
    B or blank -> reject). Same outputs as ``detect_a(extra_state=True)`` on
    ``detect_a_task((1, 2))`` with ``T = 2``, but it uses the transitions of ``spare`` as well,
    whose errors are then relevant: learning coefficient 18 against 14.
    """
    transitions = {
        ("A", "reject"): ("A", "accept", "R"),
        ("B", "reject"): ("B", "spare", "R"),
        ("_", "reject"): ("_", "reject", "S"),
        ("A", "spare"): ("A", "accept", "R"),
        ("B", "spare"): ("B", "reject", "R"),
        ("_", "spare"): ("_", "reject", "S"),
    }
    _with_sink(transitions, "accept")
    return TuringMachine(_SYMBOLS, ("reject", "accept", "spare"), "reject", transitions)


def parity(extra_state: bool = False) -> TuringMachine:
    """Parity of the number of A's: states ``{even, odd}``, start ``even``; the final state answers.

    Reading A flips the state, reading B keeps it, both move right; on a blank it stays put.
    With ``extra_state`` a third, classically unreachable absorbing state ``spare`` is added.
    """
    states = ("even", "odd", "spare") if extra_state else ("even", "odd")
    transitions = {
        ("A", "even"): ("A", "odd", "R"),
        ("A", "odd"): ("A", "even", "R"),
        ("B", "even"): ("B", "even", "R"),
        ("B", "odd"): ("B", "odd", "R"),
        ("_", "even"): ("_", "even", "S"),
        ("_", "odd"): ("_", "odd", "S"),
    }
    if extra_state:
        _with_sink(transitions, "spare")
    return TuringMachine(_SYMBOLS, states, "even", transitions)


def parity_split_even() -> TuringMachine:
    """Parity with "even after a first B" held in a separate state (length-2 inputs, T = 2).

    States ``{even, odd, spare}``: a first B sends ``even`` to ``spare``, which behaves like
    ``even`` on the second square (A -> odd, B -> even). Same outputs as
    ``parity(extra_state=True)`` on ``parity_task((2,))`` with ``T = 2``; it uses two more
    (symbol, state) pairs at the final step, so two more next-state simplices are relevant:
    learning coefficient 16 against 12.
    """
    transitions = {
        ("A", "even"): ("A", "odd", "R"),
        ("A", "odd"): ("A", "even", "R"),
        ("B", "even"): ("B", "spare", "R"),
        ("B", "odd"): ("B", "odd", "R"),
        ("_", "even"): ("_", "even", "S"),
        ("_", "odd"): ("_", "odd", "S"),
        ("A", "spare"): ("A", "odd", "R"),
        ("B", "spare"): ("B", "even", "R"),
        ("_", "spare"): ("_", "even", "S"),
    }
    return TuringMachine(_SYMBOLS, ("even", "odd", "spare"), "even", transitions)


@dataclass(frozen=True)
class MachinePair:
    """Two machines with the same outputs on ``task`` after ``T`` steps, at different geometry."""

    name: str
    first: TuringMachine
    second: TuringMachine
    task: SynthesisTask
    T: int
    description: str

    @property
    def same_parameter_space(self) -> bool:
        return self.first.shape == self.second.shape


def machine_pairs() -> tuple[MachinePair, ...]:
    """Pairs of machines with the same function on a task and different learning coefficients.

    Murfet-Troiani (arXiv 2504.08075) point: the posterior distinguishes implementations, not
    only functions. Each pair's ``lambda`` (barycentric coordinates, uniform prior) is settled by
    the linear terms (``learning_coefficient_at_vertex``):

    ============================ ===== ======== ============= ===================
    pair                          T    d        first lambda   second lambda
    ============================ ===== ======== ============= ===================
    detect_a vs detect_a_verify   2    30, 30   8              9
    detect_a(3) vs split_reject   2    54, 54   14             18
    parity(3) vs split_even       2    54, 54   12             16
    parity vs parity(3)           2    30, 54   8              12
    ============================ ===== ======== ============= ===================

    The last pair differs only by an unreachable extra state (different parameter spaces):
    every wrong-state direction of a used transition is relevant, so each extra state adds one
    relevant coordinate per next-state simplex used.
    """
    detect_task = detect_a_task((1, 2))
    return (
        MachinePair(
            "detect_a: scan vs erase-and-verify", detect_a(), detect_a_verify(), detect_task, 2,
            "reading back its own write makes write errors relevant",
        ),
        MachinePair(
            "detect_a: one reject state vs split reject", detect_a(extra_state=True),
            detect_a_split_reject(), detect_task, 2,
            "the split machine uses the transitions of a third state",
        ),
        MachinePair(
            "parity: one even state vs split even", parity(extra_state=True),
            parity_split_even(), parity_task((2,)), 2,
            "the split machine uses the transitions of a third state",
        ),
        MachinePair(
            "parity: two states vs an extra unused state", parity(), parity(extra_state=True),
            parity_task((2,)), 2,
            "an unreachable extra state adds a wrong-state direction to every used "
            "next-state simplex",
        ),
    )


# --------------------------------------------------------------------------------------------
# Finite-temperature oracle for one-step tasks under a Dirichlet prior (localised or squared)
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
