"""Synthesis tasks and the potential ``K`` of a noisy code on a task.

**Model and potential.** ``p(y | x, w)`` is the distribution of a readout of the configuration
after ``T`` steps: ``readout="state"`` (the default; the final state, as in Murfet-Troiani) or
``readout="head_symbol"`` (the symbol under the head). For a deterministic synthesis task with
examples ``(x, y(x))`` and input probabilities ``q(x)``,
``K(w) = -sum_x q(x) log p(y(x) | x, w)`` (``potential``). Classical machines that solve the task
are exactly the vertices with ``K = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational

import sympy

from .codes import NoisyCode
from .machine import check_readout, check_steps
from .semantics import check_code, finish, one_like, raw_output_distribution

__all__ = [
    "SynthesisTask",
    "output_probabilities",
    "potential",
]


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
        check_readout(self.readout)
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


def check_task(task, shape) -> SynthesisTask:
    """``task`` itself if it is a ``SynthesisTask`` that fits ``shape`` (``check_against``)."""
    if not isinstance(task, SynthesisTask):
        raise ValueError(f"expected a SynthesisTask, got {type(task).__name__}")
    task.check_against(shape)
    return task


def output_probabilities(code: NoisyCode, task: SynthesisTask, T: int) -> tuple:
    """``p(y(x) | x, w)`` for every example of the task, by the exact Markov chain."""
    code = check_code(code)
    task = check_task(task, code.shape)
    T = check_steps(T)
    one = one_like(code.simplices)
    return tuple(
        finish(one * raw_output_distribution(code.shape, code.simplices, x, T, task.readout)[y])
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
