"""The ``toymodels`` command line (tyro): help on every subcommand, usage errors, flags passed through.

``run_validation`` is replaced by a recorder, so these tests check what the command line hands to
the library (cases, paths, strictness, resume) without sampling anything.
"""

import pytest

import toymodels.validation as validation
from toymodels.cli import main

FLAGS = ["--group", "--scale", "--json", "--figure", "--resume", "--no-strict"]


@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def fake_run_validation(cases, **kwargs):
        calls.append({"cases": cases, **kwargs})
        return {"all_passed": True}

    monkeypatch.setattr(validation, "run_validation", fake_run_validation)
    return calls


def _listed(capsys) -> dict[str, list[str]]:
    assert main(["list"]) == 0
    groups: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        group, name = line.split(maxsplit=1)
        groups.setdefault(group, []).append(name)
    return groups


@pytest.mark.parametrize("argv, usage", [
    (["--help"], "usage: toymodels [-h] {validate,list}"),
    (["validate", "--help"], "usage: toymodels validate"),
    (["list", "--help"], "usage: toymodels list"),
])
def test_help_on_every_subcommand_exits_0(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert usage in out
    if argv[0] == "validate":
        for flag in FLAGS:
            assert flag in out, flag
        for group in validation.CASE_GROUPS:  # the accepted names are shown
            assert group in out


@pytest.mark.parametrize("argv, message", [
    (["validate", "--group", "nope"], "unknown validation groups ['nope']"),
    (["validate", "--group", "dln", "--group", "nope"], "unknown validation groups ['nope']"),
    (["validate", "--scale", "0"], "--scale must be > 0"),
    (["validate", "--scale", "-1"], "--scale must be > 0"),
])
def test_bad_values_are_usage_errors_not_tracebacks(argv, message, capsys, recorded):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: toymodels validate" in err and message in err and "Traceback" not in err
    if "group" in message:
        for group in validation.CASE_GROUPS:
            assert group in err
    assert recorded == []  # nothing ran


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["validate", "--scale", "fast"],
                                  ["validate", "--no-such-flag"]])
def test_malformed_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_every_group_that_list_prints_is_accepted_by_group(capsys, recorded):
    listed = _listed(capsys)
    assert set(listed) == set(validation.CASE_GROUPS)  # the keys --group takes, nothing else
    for group, names in listed.items():
        assert main(["validate", "--group", group]) == 0
        assert [case.name for case in recorded[-1]["cases"]] == names


def test_group_is_repeatable_and_the_default_is_the_default_groups(capsys, recorded):
    listed = _listed(capsys)
    assert main(["validate", "--group", "tms", "--group", "turing"]) == 0
    assert [c.name for c in recorded[-1]["cases"]] == listed["tms"] + listed["turing"]
    assert main(["validate"]) == 0
    default = [name for group in validation.DEFAULT_GROUPS for name in listed[group]]
    assert [c.name for c in recorded[-1]["cases"]] == default


def test_flags_reach_run_validation(monkeypatch, recorded, tmp_path):
    scales = []

    def cases(scale):
        scales.append(scale)
        return []

    monkeypatch.setitem(validation.CASE_GROUPS, "recorder", cases)
    json_path, figure_path = str(tmp_path / "v.json"), str(tmp_path / "v.png")
    assert main(["validate", "--group", "recorder", "--scale", "0.25", "--json", json_path,
                 "--figure", figure_path, "--resume", "--no-strict"]) == 0
    assert scales == [0.25]
    call = recorded[-1]
    assert (call["json_path"], call["figure_path"]) == (json_path, figure_path)
    assert call["strict"] is False and call["resume"] is True
    assert main(["validate", "--group", "recorder"]) == 0  # the defaults
    call = recorded[-1]
    assert scales[-1] == 1.0 and call["strict"] is True and call["resume"] is False
    assert (call["json_path"], call["figure_path"]) == ("results/validation.json", "figures/validation.png")


def test_exit_status_1_when_a_case_misses(monkeypatch):
    monkeypatch.setattr(validation, "run_validation", lambda cases, **kwargs: {"all_passed": False})
    monkeypatch.setitem(validation.CASE_GROUPS, "empty", lambda scale: [])
    assert main(["validate", "--group", "empty"]) == 1
