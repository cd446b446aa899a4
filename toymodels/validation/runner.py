"""Running validation cases: the table, the JSON (written after every case) and the figure.

The JSON is rewritten atomically after every case, so an interrupted run keeps what it finished
and ``resume=True`` runs only the rest. The pass rule is :class:`~toymodels.validation.case.ValidationCase`'s:
``|relative error| ≤ rel_tol`` and ``|z| ≤ z_tol``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from toymodels.estimators.llc import LLCResult
from toymodels.validation.case import ValidationCase

__all__ = ["run_validation"]


def run_validation(
    cases: list[ValidationCase],
    *,
    json_path: str | Path | None = "results/validation.json",
    figure_path: str | Path | None = "figures/validation.png",
    strict: bool = True,
    echo: Callable[[str], None] = print,
    resume: bool = False,
) -> dict:
    """Run every case, print the table, write JSON and figure; return the report.

    The JSON is rewritten after every case (``"complete": false`` until the last), so an
    interrupted run (Ctrl-C) keeps what it finished; with ``resume=True`` the cases already in
    ``json_path`` with the same settings are taken from it instead of being run again. With
    ``strict=False`` tolerances are not applied (smoke runs on tiny budgets).
    """
    done = _finished_rows(json_path) if resume else {}
    rows = []
    header = (f"{'case':34s} {'target':>8s} {'λ':>7s} {'estimate ± MCSE':>18s} "
              f"{'rel.err':>8s} {'z':>6s} {'sec':>6s}  ok")
    echo(header)
    echo("-" * len(header))
    start = time.perf_counter()
    interrupted = False
    for case in cases:
        previous = done.get(case.name)
        if previous is not None and previous.get("settings") == json.loads(json.dumps(case.settings)):
            row = dict(previous, resumed=True)
        else:
            try:
                row = _run_case(case)
            except KeyboardInterrupt:
                interrupted = True
                echo(f"interrupted during {case.name!r}: {len(rows)} finished case(s) are in "
                     f"{json_path}; `toymodels validate --resume` runs the rest")
                break
        rows.append(row)
        echo(_format_row(row))
        _write(json_path, _report(rows, time.perf_counter() - start, strict, complete=False))
    report = _report(rows, time.perf_counter() - start, strict,
                     complete=not interrupted and len(rows) == len(cases))
    echo("-" * len(header))
    echo(f"{report['passed']}/{len(rows)} cases within tolerance; worst relative error "
         f"{100 * report['worst_rel_error']:.2f}%, worst |z| {report['worst_z']:.2f} (cases with a "
         f"z-test); {report['seconds']:.0f} s")
    _write(json_path, report)
    if figure_path is not None and rows and report["complete"]:
        _plot(rows, figure_path)
    if interrupted:
        raise KeyboardInterrupt
    return report


def _run_case(case: ValidationCase) -> dict:
    target = float(case.target())
    case_start = time.perf_counter()
    result = case.run()
    case_seconds = time.perf_counter() - case_start  # calibration included
    rel = result.llc_mean / target - 1 if target != 0 else math.nan
    z = (result.llc_mean - target) / result.mcse if result.mcse > 0 else math.inf
    ok = abs(rel) <= case.rel_tol and abs(z) <= case.z_tol
    return dict(
        case=case.name, group=case.group, target=target, llc=str(case.llc),
        llc_float=float(case.llc), multiplicity=case.multiplicity,
        estimate=result.llc_mean, mcse=result.mcse, ess=result.ess, rhat=result.rhat,
        rel_error=rel, z=z, rel_tol=case.rel_tol, z_tol=case.z_tol, passed=bool(ok),
        seconds=case_seconds, sampling_seconds=result.seconds,
        settings=json.loads(json.dumps(case.settings)), chosen=_chosen(result),
        dropped_chains=result.dropped_chains,
    )


def _format_row(row: dict) -> str:
    est = f"{row['estimate']:.4f} ± {row['mcse']:.4f}"
    return (f"{row['case']:34s} {row['target']:8.4f} {row['llc_float']:7.3f} {est:>18s} "
            f"{100 * row['rel_error']:7.2f}% {row['z']:6.2f} {row['seconds']:6.1f}  "
            f"{'yes' if row['passed'] else 'NO'}{' (resumed)' if row.get('resumed') else ''}")


def _report(rows: list[dict], seconds: float, strict: bool, complete: bool) -> dict:
    passed = sum(r["passed"] for r in rows)
    worst_rel = max((abs(r["rel_error"]) for r in rows), default=0.0)
    # z is only meaningful against an exact finite-temperature target (cases without one, e.g.
    # reduced-rank regression compared with λ itself, have z_tol = inf and are left out)
    worst_z = max((abs(r["z"]) for r in rows if math.isfinite(r["z_tol"])), default=0.0)
    return dict(cases=rows, passed=passed, total=len(rows), worst_rel_error=worst_rel,
                worst_z=worst_z, seconds=seconds, complete=complete,
                all_passed=complete and ((passed == len(rows)) or not strict))


def _write(json_path, report: dict) -> None:
    if json_path is None:
        return
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)  # atomic: an interruption never leaves half a file


def _finished_rows(json_path) -> dict[str, dict]:
    if json_path is None or not Path(json_path).exists():
        return {}
    try:
        rows = json.loads(Path(json_path).read_text()).get("cases", [])
    except (json.JSONDecodeError, AttributeError):
        return {}
    return {r["case"]: r for r in rows if isinstance(r, dict) and "case" in r}


def _chosen(result: LLCResult) -> dict:
    """The step size the run used (MALA: where its adaptation arrived; "auto": the calibration's
    choice) and its schedule."""
    final = result.trace.final_step_size if result.trace is not None else None
    chosen = dict(step_size=float(final if final is not None else result.step_size),
                  num_burnin_steps=result.num_burnin_steps, num_draws=result.num_draws,
                  num_steps_bw_draws=result.num_steps_bw_draws)
    schedule = result.schedule or {}
    relaxation = schedule.get("relaxation") or {}
    if schedule:
        # where "auto" spent its time: choosing ε (scan and bias grid), relaxing, sampling
        chosen.update(calibration_seconds=schedule["calibration_seconds"] - relaxation.get("seconds", 0.0),
                      relaxation_seconds=relaxation.get("seconds", 0.0),
                      relaxation_steps=relaxation.get("steps", 0),
                      relaxed=relaxation.get("relaxed"))
    return chosen


def _plot(rows: list[dict], path: str | Path) -> None:
    # a Figure without pyplot: written to a file, it needs no backend and changes no global state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.1, 1]))
    targets = [r["target"] for r in rows]
    lo, hi = 0.0, max(max(targets), max(r["estimate"] for r in rows)) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="estimate = exact target")
    groups = sorted({r["group"] for r in rows})
    markers = dict(zip(groups, "osD^vP*X"))
    for g in groups:
        sel = [r for r in rows if r["group"] == g]
        ax.errorbar([r["target"] for r in sel], [r["estimate"] for r in sel],
                    yerr=[3 * r["mcse"] for r in sel], fmt=markers[g], ms=5, capsize=3, label=g)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("exact finite-temperature target  nβ·E[K]")
    ax.set_ylabel("SGLD estimate λ̂ (error bars: 3 MCSE)")
    ax.legend(fontsize=8)
    y = range(len(rows))
    ax2.errorbar([100 * r["rel_error"] for r in rows], list(y),
                 xerr=[300 * r["mcse"] / r["target"] for r in rows], fmt="o", ms=4, capsize=2)
    tol = 100 * rows[0]["rel_tol"]
    ax2.axvspan(-tol, tol, color="g", alpha=0.12, label=f"±{tol:.0f}% tolerance")
    # cases with their own tolerance (e.g. against λ itself) get it marked on their row
    other = [(i, 100 * r["rel_tol"]) for i, r in enumerate(rows) if 100 * r["rel_tol"] != tol]
    for k, (i, t) in enumerate(other):
        ax2.plot([-t, t], [i, i], "|", color="g", ms=9, mew=1.5,
                 label="own tolerance" if k == 0 else None)
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set_yticks(list(y), [r["case"] for r in rows], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("relative error of λ̂ [%] (bars: 3 MCSE)")
    ax2.legend(fontsize=8, loc="lower right", framealpha=0.6)
    fig.suptitle("toymodels validate: LLC estimates against exact finite-temperature targets")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
