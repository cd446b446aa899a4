"""A small library of machines and tasks: detectA and parity, their variants, and machine pairs
with the same function at different geometry (Murfet & Troiani arXiv 2504.08075).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

from .machine import TuringMachine, check_labels
from .synthesis import SynthesisTask

__all__ = [
    "MachinePair",
    "all_strings",
    "detect_a",
    "detect_a_split_reject",
    "detect_a_task",
    "detect_a_verify",
    "machine_pairs",
    "parity",
    "parity_split_even",
    "parity_task",
]


_LETTERS = ("A", "B")
_SYMBOLS = ("_", "A", "B")


def all_strings(alphabet: Sequence[str], lengths: Iterable[int]) -> tuple[tuple[str, ...], ...]:
    """Every string over ``alphabet`` of each length in ``lengths``, shortest first."""
    alphabet = check_labels(alphabet, "alphabet")
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
