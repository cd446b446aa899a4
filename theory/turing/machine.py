"""Turing machines, their shapes and configurations on a bounded tape, and classical runs.

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

The layout of the noisy-code space that a ``MachineShape`` fixes is described in
``theory.turing.codes``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from types import MappingProxyType

__all__ = [
    "MOVES",
    "READOUTS",
    "Configuration",
    "MachineShape",
    "TuringMachine",
    "initial_configuration",
    "run",
    "tape_length",
]


MOVES: tuple[str, ...] = ("L", "S", "R")
#: head displacement of each move, in squares
MOVE_OFFSET = {"L": -1, "S": 0, "R": 1}
#: the three simplices of a (symbol, state) pair, in layout order
KINDS = ("write", "state", "move")
READOUTS: tuple[str, ...] = ("state", "head_symbol")


def check_labels(values, name: str) -> tuple[str, ...]:
    """``values`` as a tuple of distinct non-empty strings; ValueError naming ``name`` otherwise."""
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


def check_steps(T) -> int:
    """The step count ``T`` as an ``int``; ValueError unless a non-negative integer."""
    if isinstance(T, bool) or not isinstance(T, Integral) or T < 0:
        raise ValueError(f"T (the number of steps) must be a non-negative integer, got {T!r}")
    return int(T)


def check_readout(readout) -> str:
    """``readout`` itself if it is one of ``READOUTS``; ValueError otherwise."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    return readout


@dataclass(frozen=True)
class MachineShape:
    """The alphabet, states, start state and blank: everything but the transitions.

    It fixes the parameter space ``W`` of noisy codes: ``3 |Sigma||Q|`` simplices, laid out as in
    the ``theory.turing.codes`` docstring (pair ``i = symbol_index * |Q| + state_index``;
    simplices ``3i`` write, ``3i+1`` next state, ``3i+2`` move), with
    ``num_entries = |Sigma||Q| (|Sigma| + |Q| + 3)``
    barycentric entries and ``dimension = |Sigma||Q| (|Sigma| + |Q|)`` free coordinates
    (Clift-Murfet-Wallbridge arXiv 2103.16080).
    """

    symbols: tuple[str, ...]
    states: tuple[str, ...]
    start_state: str
    blank: str = "_"

    def __post_init__(self):
        symbols = check_labels(self.symbols, "symbols")
        states = check_labels(self.states, "states")
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
        return symbol, state, KINDS[simplex % 3]

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
        return self.state if check_readout(readout) == "state" else self.head_symbol


def tape_length(input_length: int, T: int) -> int:
    """Squares ``-T .. n+T`` inclusive: ``n + 2T + 1`` (module docstring)."""
    return input_length + 2 * check_steps(T) + 1


def initial_configuration(shape, x, T: int) -> Configuration:
    """Input on squares ``0..n-1``, blanks elsewhere on ``-T..n+T``, head on square 0."""
    shape = shape.shape
    T = check_steps(T)
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
        head += MOVE_OFFSET[move]
    return Configuration(tuple(tape), head, state, config.origin)
