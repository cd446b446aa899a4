"""The gridworld validation cases: they build, register, run on a tiny budget, and (slow) pass."""

import pytest
import torch

from toymodels.cli import main
from toymodels.validation import CASE_GROUPS, DEFAULT_GROUPS, run_validation
from toymodels.validation.gridworld import cases, policy_potential, settled_nbeta
from theory.gridworld import Level, finite_temperature_regret_llc, learning_coefficient_at_optimum


def test_cases_build_with_settled_lambda_and_a_higher_order_budget():
    built = cases()
    assert 2 <= len(built) <= 3
    for case in built:
        assert "gridworld" in case.name and case.group == "gridworld"
        assert case.llc is not None and case.multiplicity == 1
        rows = case.settings["levels"]
        exact = [Level.from_strings(r) for r in rows]
        result = learning_coefficient_at_optimum(exact, _gamma(case))
        c_min = min(c for row in result.linear_coefficients.values() for c in row if c > 0)
        nbeta = case.settings["nbeta"]
        # the regret's higher-order terms, lambda^2 / (nbeta c_min), are under 0.3 % of lambda
        assert float(result.learning_coefficient) / (nbeta * float(c_min)) <= 0.003
        assert case.target() == pytest.approx(finite_temperature_regret_llc(exact, _gamma(case), nbeta))
        potential, vertex = policy_potential(rows, _gamma(case))
        assert float(potential(vertex)) == pytest.approx(0.0, abs=1e-20)


def _gamma(case):
    from fractions import Fraction

    return Fraction(case.settings["discount"])


def test_settled_nbeta_matches_the_budget():
    corridor = [Level.from_strings(["M.C"])]
    # lambda = 6, c_min = 1/4 at gamma = 1/2: 6 / (0.003 / 4) = 8000
    assert settled_nbeta(corridor, 0.5) == 8000.0


def test_registered_in_the_default_groups_and_listed(capsys):
    assert CASE_GROUPS["gridworld"] is cases and "gridworld" in DEFAULT_GROUPS
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for case in cases():
        assert case.name in listed


def test_smoke_gridworld_cases_run_on_a_tiny_budget():
    built = cases(scale=0.05)
    report = run_validation(built, json_path=None, figure_path=None, strict=False, echo=lambda s: None)
    assert report["total"] == len(built)
    assert all(torch.isfinite(torch.tensor(c["estimate"])) for c in report["cases"])


def test_scale_must_be_positive():
    with pytest.raises(ValueError, match="scale"):
        cases(scale=0.0)


@pytest.mark.slow
def test_corridor_case_passes_at_full_scale():
    report = run_validation(cases()[:1], json_path=None, figure_path=None, echo=lambda s: None)
    assert report["passed"] == report["total"] == 1 and report["all_passed"], report["cases"]
