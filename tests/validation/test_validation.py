"""`toymodels validate`: the report, the exit code, and (slow) the full accuracy check."""

import json

import pytest
import torch

from toymodels.validation import ValidationCase, run_validation, validation_cases
from toymodels import estimate_llc
from toymodels.cli import main
from theory.normal_crossing import finite_temperature_llc
from toymodels.models.potentials import normal_crossing_potential

EXACT = finite_temperature_llc([1], nbeta=100.0, localization=1.0, box=None)  # ½·200/201


def _case(target_value):
    def run():
        return estimate_llc(normal_crossing_potential([1]), init=torch.zeros(1, dtype=torch.float64),
                            nbeta=100.0, localization=1.0, step_size=2e-4, num_chains=500,
                            num_draws=200, num_burnin_steps=200, num_steps_bw_draws=2, progress=False)

    # a 10% tolerance: these tests are about the report and the exit code, not about accuracy
    return ValidationCase(name="w^2", group="test", llc=0.5, multiplicity=1,
                          target=lambda: target_value, run=run, rel_tol=0.10)


def test_smoke_validation_report(tmp_path):
    report = run_validation([_case(EXACT)], json_path=tmp_path / "v.json", figure_path=tmp_path / "v.png",
                            echo=lambda s: None)
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved["total"] == 1 and set(saved["cases"][0]) >= {"target", "estimate", "mcse", "z", "rel_error"}
    assert (tmp_path / "v.png").stat().st_size > 0
    assert report["passed"] in (0, 1)


def test_a_missed_target_fails_the_report():
    # the exact value is ½·200/201 (t=100, γ=1); 0.40 is 20% off and must be reported as a failure
    report = run_validation([_case(0.40)], json_path=None, figure_path=None, echo=lambda s: None)
    assert report["passed"] == 0 and not report["all_passed"]
    assert report["cases"][0]["rel_error"] > 0.1


def test_cli_exit_codes(tmp_path, monkeypatch):
    import toymodels.validation as validation

    monkeypatch.setitem(validation.CASE_GROUPS, "good", lambda scale: [_case(EXACT)])
    monkeypatch.setitem(validation.CASE_GROUPS, "bad", lambda scale: [_case(0.40)])
    args = ["--json", str(tmp_path / "v.json"), "--figure", str(tmp_path / "v.png")]
    assert main(["validate", "--group", "bad", *args]) == 1
    assert main(["validate", "--group", "good", *args]) == 0

def test_cli_unknown_group_is_a_usage_error_naming_the_groups(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--group", "nope"])
    assert exit_info.value.code == 2  # argparse's usage error, not a traceback
    err = capsys.readouterr().err
    assert "usage: toymodels" in err and "unknown validation groups ['nope']" in err
    assert "gridworld" in err and "dln" in err


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    import toymodels

    assert toymodels.__version__ == version("toymodels")


def test_smoke_every_registered_case_runs_on_a_tiny_budget():
    cases = validation_cases(scale=0.02)
    assert len(cases) >= 8
    report = run_validation(cases, json_path=None, figure_path=None, strict=False, echo=lambda s: None)
    assert report["total"] == len(cases)
    assert all(r["estimate"] == r["estimate"] for r in report["cases"])  # no NaN


@pytest.mark.slow
def test_every_validation_case_within_tolerance():
    """The full accuracy report: each case within 3% of its exact target and |z| ≤ 3."""
    report = run_validation(validation_cases(), json_path=None, figure_path=None)
    failed = [(r["case"], r["rel_error"], r["z"]) for r in report["cases"] if not r["passed"]]
    assert not failed, failed
