"""The ``toymodels`` command line: ``toymodels validate`` and ``toymodels list``.

``toymodels validate`` runs every exact case (see :mod:`toymodels.validation`), prints the
accuracy table, writes ``figures/validation.png`` and ``results/validation.json``, and exits
non-zero when a case misses its tolerance. The JSON is written after every case, so an
interrupted run keeps what it finished, and ``--resume`` runs only the rest.
``toymodels list`` prints every case under the group name that ``--group`` takes.

The command line is built with tyro, as the experiments' are (``experiments/common.py``): each
subcommand is a dataclass whose fields are its flags, and ``--help`` works on every subcommand.
A bad value (an unknown group, ``--scale 0``) is a usage message and exit status 2, never a
traceback. The group names are read from :data:`toymodels.validation.CASE_GROUPS` when the
command runs, so a group registered there is accepted at once.
"""

import dataclasses
import sys
from collections.abc import Sequence
from typing import Annotated, NoReturn, Union

import tyro

__all__ = ["main"]

PROG = "toymodels"


def _usage_error(subcommand: str, message: str) -> NoReturn:
    """Print a usage message for ``subcommand`` to stderr and exit with status 2 (argparse's)."""
    print(f"usage: {PROG} {subcommand} [-h] [OPTIONS]\n"
          f"{PROG} {subcommand}: error: {message}\n"
          f"(run `{PROG} {subcommand} --help` for every option)", file=sys.stderr)
    raise SystemExit(2)


def _commands(group_names: Sequence[str], default_groups: Sequence[str]):
    """The subcommand dataclasses, with the registered group names in ``--group``'s help."""
    choices = "{" + ",".join(group_names) + "}"

    @dataclasses.dataclass
    class Validate:
        """Run every exact LLC check and report its accuracy (exit status 1 if a case misses its tolerance)."""

        group: Annotated[
            tuple[str, ...],
            tyro.conf.UseAppendAction,
            tyro.conf.arg(metavar=choices, help=(
                "only the cases of this group (give it again for more groups); default: "
                f"{', '.join(default_groups)}. `toymodels list` names each group's cases")),
        ] = ()
        scale: float = 1.0
        """multiply chains and draws by this (> 0; smaller is faster and less accurate)"""
        json: str = "results/validation.json"
        """where to write the numbers (after every case)"""
        figure: str = "figures/validation.png"
        """where to write the figure"""
        resume: bool = False
        """take the cases already in --json (same settings) from there; run the rest"""
        strict: bool = True
        """fail on tolerances (--no-strict: report only, for tiny smoke budgets)"""

    @dataclasses.dataclass
    class List:
        """List every validation case, one per line, under the group name that --group takes."""

    return Union[  # tyro reads the subcommands from a Union
        Annotated[Validate, tyro.conf.subcommand("validate")],
        Annotated[List, tyro.conf.subcommand("list")],
    ]


def main(argv: list[str] | None = None) -> int:
    """Run ``toymodels`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    ``--help`` and usage errors exit through ``SystemExit`` (status 0 and 2), as argparse does.
    """
    from toymodels.validation import CASE_GROUPS, DEFAULT_GROUPS, run_validation, validation_cases

    args = list(sys.argv[1:] if argv is None else argv)
    command = tyro.cli(_commands(list(CASE_GROUPS), DEFAULT_GROUPS), args=args, prog=PROG,
                       description="Exact checks of the LLC estimator: run them (validate) or name them (list).")

    if type(command).__name__ == "List":
        for group, make_cases in CASE_GROUPS.items():
            for case in make_cases(1.0):
                print(f"{group:18s} {case.name}")
        return 0

    if not command.scale > 0:
        _usage_error("validate", f"--scale must be > 0, got {command.scale}")
    try:
        cases = validation_cases(list(command.group) or None, scale=command.scale)
    except ValueError as error:  # an unknown --group: a usage message, not a traceback
        _usage_error("validate", str(error))
    try:
        report = run_validation(cases, json_path=command.json, figure_path=command.figure,
                                strict=command.strict, resume=command.resume)
    except KeyboardInterrupt:
        return 130
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
