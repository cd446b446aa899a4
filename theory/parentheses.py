"""Exact ground truth of the Dyck-1 (balanced parentheses) classification task, in exact rationals.

Task (Li et al., "Can Interpretation Predict Behavior on Unseen Data?", arXiv 2507.06445, their
balanced-parentheses classification; Wang & Murfet, "Patterning: The Dual of Interpretability",
arXiv 2601.13548, the parentheses task). A string ``s`` over ``(`` and ``)`` of length ``n`` has
the *height profile* ``h_k = #'(' − #')'`` in its first ``k`` characters (``h_0 = 0``). Its label
is **balanced**: ``h_n = 0`` and ``min_k h_k ≥ 0``. Two algorithms fit every training string:

* *Nested* (a stack / running count): balanced iff ``h_n = 0`` and no prefix dips below zero;
* *Equal-Count*: balanced iff ``h_n = 0``.

They disagree exactly on the **discriminating** strings (``h_n = 0`` and ``min_k h_k < 0``), which
the training distribution leaves out: training strings are balanced (both rules say 1) or have an
unequal count (both say 0).

Counting (Feller, *An Introduction to Probability Theory*, vol. 1, ch. III, the reflection
principle and the ballot theorem). The number of strings of length ``n`` whose prefixes never dip
below zero and that end at height ``k ≥ 0`` (``n − k`` even) is::

    N(n, k) = C(n, (n − k)/2) − C(n, (n − k)/2 − 1),

so balanced strings of length ``2m`` number ``N(2m, 0) = Catalan(m) = C(2m, m)/(m + 1)``; strings
with an equal count number ``C(2m, m)``, and discriminating ones ``C(2m, m) − Catalan(m)``. Other
classes (deep nesting, late dips, near-equal counts) are counted by the exact dynamic programme
over heights in :func:`count_strings` and checked against enumeration in the tests.

Distributions. Every distribution here draws a length ``n`` uniformly from the given even lengths
and then a string uniformly from one class of strings of that length (balanced strings uniformly
"by the standard counting rule": each of the ``Catalan(n/2)`` strings has probability
``1/Catalan(n/2)``). They are ``{string: Fraction}`` dictionaries (the strings are enumerated,
so lengths up to about 16). The label of a string is always its balanced label; the Bayes-optimal
classifier of a distribution is its conditional label probability, which is 0 or 1 on the
support because the label is a function of the string (:func:`bayes_classifier`), and the exact
accuracy of either algorithm on a distribution is :func:`algorithm_accuracy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import product
from math import comb
from numbers import Integral

__all__ = [
    "ALGORITHMS",
    "CLASSES",
    "algorithm_accuracy",
    "algorithm_label",
    "ballot_number",
    "bayes_classifier",
    "bayes_cross_entropy",
    "catalan",
    "class_distribution",
    "count_strings",
    "discriminating_distribution",
    "enumerate_strings",
    "height_profile",
    "in_class",
    "is_balanced",
    "is_equal_count",
    "mixture",
    "train_distribution",
]

MAX_LENGTH = 20  # enumeration of 2^n strings; beyond this use count_strings only

ALGORITHMS = ("nested", "equal_count")


# ----------------------------------------------------------------------------- strings


def _check_string(s) -> str:
    if not isinstance(s, str) or any(c not in "()" for c in s):
        raise ValueError(f"a string over '(' and ')' is expected, got {s!r}")
    return s


def _check_length(n, name: str = "n", *, even: bool = False) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if even and n % 2:
        raise ValueError(f"{name} must be even (only even lengths can be balanced), got {n}")
    return int(n)


def height_profile(s: str) -> list[int]:
    """``[h_0, h_1, …, h_n]`` with ``h_k = #'(' − #')'`` in the first ``k`` characters."""
    _check_string(s)
    heights = [0]
    for c in s:
        heights.append(heights[-1] + (1 if c == "(" else -1))
    return heights


def is_balanced(s: str) -> bool:
    """The Nested rule (the task's label): ``h_n = 0`` and ``min_k h_k ≥ 0``."""
    heights = height_profile(s)
    return heights[-1] == 0 and min(heights) >= 0


def is_equal_count(s: str) -> bool:
    """The Equal-Count rule: ``h_n = 0``."""
    return height_profile(s)[-1] == 0


def algorithm_label(s: str, algorithm: str) -> int:
    """The label that ``algorithm`` (``"nested"`` or ``"equal_count"``) gives to ``s``."""
    if algorithm == "nested":
        return int(is_balanced(s))
    if algorithm == "equal_count":
        return int(is_equal_count(s))
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


# ----------------------------------------------------------------------------- string classes


def _first_dip(heights: Sequence[int]) -> int | None:
    """The first ``k`` with ``h_k < 0`` (None if the string never dips)."""
    return next((k for k, h in enumerate(heights) if h < 0), None)


def _deep_threshold(n: int) -> int:
    return max(2, n // 3)


def _predicates() -> dict[str, Callable[[list[int]], bool]]:
    def balanced(h):
        return h[-1] == 0 and min(h) >= 0

    def late(h):
        n = len(h) - 1
        k = _first_dip(h)
        return h[-1] == 0 and k is not None and 3 * k > 2 * n

    return {
        "all": lambda h: True,
        "balanced": balanced,
        "unequal_count": lambda h: h[-1] != 0,
        "equal_count": lambda h: h[-1] == 0,
        "discriminating": lambda h: h[-1] == 0 and min(h) < 0,
        "deep": lambda h: balanced(h) and max(h) >= _deep_threshold(len(h) - 1),
        "late_dip": late,
        "near_count_dip": lambda h: abs(h[-1]) == 2 and min(h) < 0,
        "open_heavy": lambda h: h[-1] > 0 and min(h) >= 0,
    }


CLASSES = {
    "all": "every string",
    "balanced": "h_n = 0 and every prefix ≥ 0 (label 1; both algorithms say 1)",
    "unequal_count": "h_n ≠ 0 (label 0; both algorithms say 0)",
    "equal_count": "h_n = 0",
    "discriminating": "h_n = 0 and some prefix < 0 (label 0; Equal-Count says 1)",
    "deep": "balanced with maximum height ≥ max(2, n // 3) (label 1; both say 1)",
    "late_dip": "h_n = 0 and the first negative prefix after two thirds of the string, "
                "3k > 2n (label 0; Equal-Count says 1)",
    "near_count_dip": "|h_n| = 2 and some prefix < 0 (label 0; both say 0)",
    "open_heavy": "h_n > 0 and no prefix < 0 (label 0; both say 0)",
}
"""The named classes of strings, each a predicate of the height profile."""


def in_class(s: str, name: str) -> bool:
    """Whether ``s`` belongs to the class ``name`` (one of :data:`CLASSES`)."""
    predicates = _predicates()
    if name not in predicates:
        raise ValueError(f"unknown class {name!r}; choose from {sorted(CLASSES)}")
    return predicates[name](height_profile(s))


def enumerate_strings(n: int, name: str = "all") -> list[str]:
    """All strings of length ``n`` in class ``name``, in lexicographic order ('(' < ')')."""
    n = _check_length(n)
    if n > MAX_LENGTH:
        raise ValueError(f"enumeration is limited to n ≤ {MAX_LENGTH} (2^n strings), got {n}")
    predicates = _predicates()
    if name not in predicates:
        raise ValueError(f"unknown class {name!r}; choose from {sorted(CLASSES)}")
    keep = predicates[name]
    return ["".join(t) for t in product("()", repeat=n) if keep(height_profile("".join(t)))]


def catalan(m: int) -> int:
    """``Catalan(m) = C(2m, m) / (m + 1)``, the number of balanced strings of length ``2m``."""
    m = _check_length(m, "m")
    return comb(2 * m, m) // (m + 1)


def ballot_number(n: int, k: int) -> int:
    """Strings of length ``n`` that never dip below zero and end at height ``k``.

    Reflection principle (Feller vol. 1, ch. III): ``C(n, (n−k)/2) − C(n, (n−k)/2 − 1)`` for
    ``0 ≤ k ≤ n`` with ``n − k`` even, else 0.
    """
    n = _check_length(n)
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 0 or k > n or (n - k) % 2:
        return 0
    j = (n - k) // 2
    return comb(n, j) - (comb(n, j - 1) if j >= 1 else 0)


def count_strings(n: int, name: str = "all") -> int:
    """The number of strings of length ``n`` in class ``name``, exactly.

    Closed forms where they exist (``2^n``; balanced ``Catalan(n/2)``; equal count
    ``C(n, n/2)``; discriminating ``C(n, n/2) − Catalan(n/2)``; unequal count
    ``2^n − C(n, n/2)``; open-heavy ``Σ_{k>0} N(n, k)`` by the ballot numbers), otherwise the
    dynamic programme over (height, minimum so far, maximum so far, first dip) with integer
    counts (no enumeration).
    """
    n = _check_length(n)
    if name not in CLASSES:
        raise ValueError(f"unknown class {name!r}; choose from {sorted(CLASSES)}")
    equal = comb(n, n // 2) if n % 2 == 0 else 0
    balanced = catalan(n // 2) if n % 2 == 0 else 0
    closed = {
        "all": 2 ** n,
        "balanced": balanced,
        "equal_count": equal,
        "unequal_count": 2 ** n - equal,
        "discriminating": equal - balanced,
        "open_heavy": sum(ballot_number(n, k) for k in range(1, n + 1)),
    }
    if name in closed:
        return closed[name]
    return _count_by_dynamic_programme(n, name)


def _count_by_dynamic_programme(n: int, name: str) -> int:
    # state: (height, minimum, maximum, first dip index or -1) -> number of prefixes
    states: dict[tuple[int, int, int, int], int] = {(0, 0, 0, -1): 1}
    for k in range(1, n + 1):
        nxt: dict[tuple[int, int, int, int], int] = {}
        for (h, lo, hi, dip), count in states.items():
            for step in (1, -1):
                h2 = h + step
                dip2 = k if (dip < 0 and h2 < 0) else dip
                key = (h2, min(lo, h2), max(hi, h2), dip2)
                nxt[key] = nxt.get(key, 0) + count
        states = nxt
    total = 0
    for (h, lo, hi, dip), count in states.items():
        if name == "deep":
            ok = h == 0 and lo >= 0 and hi >= _deep_threshold(n)
        elif name == "late_dip":
            ok = h == 0 and dip >= 0 and 3 * dip > 2 * n
        elif name == "near_count_dip":
            ok = abs(h) == 2 and lo < 0
        else:  # pragma: no cover - every class has a closed form or a rule here
            raise AssertionError(name)
        total += count if ok else 0
    return total


# ----------------------------------------------------------------------------- distributions


def _check_lengths(lengths: Iterable[int]) -> list[int]:
    try:
        values = list(lengths)
    except TypeError:
        raise ValueError(f"lengths must be a list of even positive integers, got {lengths!r}") from None
    if not values:
        raise ValueError("lengths must name at least one even length")
    out = []
    for n in values:
        n = _check_length(n, "each length", even=True)
        if n == 0 or n > MAX_LENGTH:
            raise ValueError(f"each length must be even in [2, {MAX_LENGTH}], got {n}")
        out.append(n)
    if len(set(out)) != len(out):
        raise ValueError(f"lengths must be distinct, got {values}")
    return sorted(out)


def class_distribution(lengths: Iterable[int], name: str) -> dict[str, Fraction]:
    """Length uniform over ``lengths``, then a string uniform over class ``name`` at that length.

    ``P(s) = 1 / (|lengths| · count_strings(|s|, name))`` for ``s`` in the class. A length where
    the class is empty is refused (drop it from ``lengths``).
    """
    lengths = _check_lengths(lengths)
    out: dict[str, Fraction] = {}
    for n in lengths:
        strings = enumerate_strings(n, name)
        if not strings:
            raise ValueError(f"class {name!r} has no string of length {n}; drop {n} from lengths")
        p = Fraction(1, len(lengths) * len(strings))
        out.update({s: p for s in strings})
    return out


def mixture(components: Sequence[Mapping[str, Fraction]], weights: Sequence) -> dict[str, Fraction]:
    """``Σ_j weights[j] · components[j]``; the weights are non-negative rationals summing to one."""
    if len(components) == 0 or len(components) != len(weights):
        raise ValueError(f"need as many weights as components (≥ 1), got {len(weights)} and "
                         f"{len(components)}")
    ws = [Fraction(w) for w in weights]
    if any(w < 0 for w in ws) or sum(ws) != 1:
        raise ValueError(f"mixture weights must be ≥ 0 and sum to 1, got {[str(w) for w in ws]}")
    out: dict[str, Fraction] = {}
    for dist, w in zip(components, ws):
        for s, p in dist.items():
            out[s] = out.get(s, Fraction(0)) + w * p
    return {s: p for s, p in out.items() if p != 0}


def train_distribution(lengths: Iterable[int], positive_fraction=Fraction(1, 2)) -> dict[str, Fraction]:
    """The training distribution where the two algorithms agree.

    With probability ``ρ = positive_fraction`` a balanced string (length uniform over
    ``lengths``, then uniform among the ``Catalan(n/2)`` balanced strings), otherwise a string
    with an unequal count (uniform among the ``2^n − C(n, n/2)``). No discriminating string
    has positive probability, so Nested and Equal-Count both classify it perfectly.
    """
    rho = Fraction(positive_fraction)
    if not 0 < rho < 1:
        raise ValueError(f"positive_fraction must lie strictly between 0 and 1, got {positive_fraction!r}")
    lengths = _check_lengths(lengths)
    return mixture([class_distribution(lengths, "balanced"),
                    class_distribution(lengths, "unequal_count")], [rho, 1 - rho])


def discriminating_distribution(lengths: Iterable[int]) -> dict[str, Fraction]:
    """Uniform over equal-count strings with a negative prefix (per length, lengths uniform):
    Nested labels them 0, Equal-Count 1, so accuracy here reads off the algorithm."""
    return class_distribution(lengths, "discriminating")


# ----------------------------------------------------------------------------- classifiers


def _check_distribution(dist: Mapping[str, Fraction]) -> None:
    if not isinstance(dist, Mapping) or not dist:
        raise ValueError("a distribution is a non-empty {string: probability} mapping")
    total = sum(Fraction(p) for p in dist.values())
    if total != 1 or any(Fraction(p) < 0 for p in dist.values()):
        raise ValueError(f"probabilities must be ≥ 0 and sum to 1 exactly, got a sum of {total}")
    for s in dist:
        _check_string(s)


def bayes_classifier(dist: Mapping[str, Fraction]) -> dict[str, Fraction]:
    """The Bayes-optimal classifier ``P(y = 1 | s)`` of the joint law ``P(s) · 1{y = balanced(s)}``.

    The label is a function of the string, so on the support it is ``1`` for balanced strings
    and ``0`` otherwise (Bayes error 0); strings outside the support are not determined by the
    distribution and are left out of the result: both algorithms are Bayes-optimal for the
    training distribution, and the data say nothing about the discriminating strings.
    """
    _check_distribution(dist)
    return {s: Fraction(int(is_balanced(s))) for s, p in dist.items() if p > 0}


def bayes_cross_entropy(dist: Mapping[str, Fraction]) -> Fraction:
    """The minimum expected cross-entropy ``H(Y | S)`` under the distribution: 0 exactly (the
    label is a function of the string), the infimum a perfect classifier approaches."""
    _check_distribution(dist)
    return Fraction(0)


def algorithm_accuracy(dist: Mapping[str, Fraction], algorithm: str) -> Fraction:
    """Exact accuracy ``Σ_s P(s) 1{algorithm(s) = balanced(s)}`` of an algorithm on a distribution.

    Both algorithms score 1 on :func:`train_distribution`; on
    :func:`discriminating_distribution` Nested scores 1 and Equal-Count 0.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    _check_distribution(dist)
    return sum((Fraction(p) for s, p in dist.items()
                if algorithm_label(s, algorithm) == int(is_balanced(s))), Fraction(0))
