"""theory.parentheses: closed-form counts against enumeration, exact distributions, the two
algorithms' exact accuracies, the Bayes classifier, and errors."""

from fractions import Fraction
from math import comb

import pytest

from theory import parentheses as P


@pytest.mark.parametrize("n", range(0, 13))
@pytest.mark.parametrize("name", sorted(P.CLASSES))
def test_counts_match_enumeration(n, name):
    assert P.count_strings(n, name) == len(P.enumerate_strings(n, name))


def test_catalan_and_ballot_numbers():
    assert [P.catalan(m) for m in range(8)] == [1, 1, 2, 5, 14, 42, 132, 429]
    # ballot numbers by brute force: never-negative strings ending at height k
    for n in range(9):
        for k in range(-1, n + 2):
            brute = sum(1 for s in P.enumerate_strings(n)
                        if min(P.height_profile(s)) >= 0 and P.height_profile(s)[-1] == k)
            assert P.ballot_number(n, k) == brute
    assert P.count_strings(12, "discriminating") == comb(12, 6) - 132 == 792


def test_rules_on_examples():
    assert P.height_profile("(()") == [0, 1, 2, 1]
    assert P.is_balanced("(())()") and P.is_equal_count("(())()")
    assert not P.is_balanced(")(") and P.is_equal_count(")(")
    assert P.algorithm_label(")(", "nested") == 0 and P.algorithm_label(")(", "equal_count") == 1
    assert P.in_class("(()))(", "late_dip")  # first dip at k = 5 > 2·6/3
    assert not P.in_class(")(()", "late_dip")
    assert P.in_class("((((()", "open_heavy") and P.in_class("))((((", "near_count_dip")


def test_train_distribution_is_exact_and_both_algorithms_fit_it():
    lengths = [2, 4, 6, 8]
    dist = P.train_distribution(lengths)
    assert sum(dist.values()) == 1
    # a balanced string of length 8: 1/2 · 1/4 · 1/Catalan(4)
    assert dist["(())()()"] == Fraction(1, 2) * Fraction(1, 4) * Fraction(1, 14)
    # an unequal-count string of length 4: 1/2 · 1/4 · 1/(16 − 6)
    assert dist["((()"] == Fraction(1, 80)
    assert all(not P.in_class(s, "discriminating") for s in dist)
    assert sum(p for s, p in dist.items() if P.is_balanced(s)) == Fraction(1, 2)
    for algorithm in P.ALGORITHMS:
        assert P.algorithm_accuracy(dist, algorithm) == 1
    disc = P.discriminating_distribution(lengths)
    assert P.algorithm_accuracy(disc, "nested") == 1
    assert P.algorithm_accuracy(disc, "equal_count") == 0
    # late dips are discriminating strings too
    late = P.class_distribution([6, 8], "late_dip")
    assert P.algorithm_accuracy(late, "equal_count") == 0


def test_mixture_and_bayes_classifier():
    lengths = [4, 6]
    a, b = P.class_distribution(lengths, "deep"), P.class_distribution(lengths, "open_heavy")
    mix = P.mixture([a, b], [Fraction(1, 3), Fraction(2, 3)])
    assert sum(mix.values()) == 1
    assert sum(p for s, p in mix.items() if s in a) == Fraction(1, 3)
    bayes = P.bayes_classifier(mix)
    assert set(bayes) == set(mix)
    assert all(bayes[s] == (1 if s in a else 0) for s in mix)
    assert P.bayes_cross_entropy(mix) == 0


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="even"):
        P.train_distribution([3])
    with pytest.raises(ValueError, match="unknown class"):
        P.count_strings(4, "nope")
    with pytest.raises(ValueError, match="no string of length 2"):
        P.class_distribution([2], "late_dip")
    with pytest.raises(ValueError, match="sum to 1"):
        P.mixture([P.train_distribution([2])], [Fraction(1, 2)])
    with pytest.raises(ValueError, match="algorithm"):
        P.algorithm_accuracy(P.train_distribution([2]), "stack")
    with pytest.raises(ValueError, match="over"):
        P.height_profile("(a)")
    with pytest.raises(ValueError, match="positive_fraction"):
        P.train_distribution([2], positive_fraction=1)
