"""The ``toymodels`` command line.

``toymodels validate`` runs every exact case (see :mod:`toymodels.validation`), prints the
accuracy table, writes ``figures/validation.png`` and ``results/validation.json``, and exits
non-zero when a case misses its tolerance. The JSON is written after every case, so an
interrupted run keeps what it finished, and ``--resume`` runs only the rest.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toymodels", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="run every exact LLC check and report accuracy")
    val.add_argument("--group", action="append", default=None,
                     help="only this group of cases (repeatable); default: all")
    val.add_argument("--scale", type=float, default=1.0,
                     help="multiply chains and draws by this (smaller is faster, less accurate)")
    val.add_argument("--json", default="results/validation.json", help="where to write the numbers")
    val.add_argument("--figure", default="figures/validation.png", help="where to write the figure")
    val.add_argument("--resume", action="store_true",
                     help="take the cases already in --json (same settings) from there; run the rest")
    val.add_argument("--no-strict", action="store_true",
                     help="report but do not fail on tolerances (for tiny smoke budgets)")
    sub.add_parser("list", help="list the validation cases")
    args = parser.parse_args(argv)

    from toymodels.validation import run_validation, validation_cases

    if args.command == "list":
        for case in validation_cases():
            print(f"{case.group:18s} {case.name}")
        return 0
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    try:
        cases = validation_cases(args.group, scale=args.scale)
    except ValueError as error:  # an unknown --group: a usage message, not a traceback
        parser.error(str(error))
    try:
        report = run_validation(cases, json_path=args.json, figure_path=args.figure,
                                strict=not args.no_strict, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
