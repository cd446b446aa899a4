"""Build and run the course notebooks: jupytext percent files → executed ``.ipynb`` (and student copies).

Run from the repository root (any working directory works; paths are resolved from this file)::

    python docs/course/execute.py                      # execute all eight, 120 s limit each
    python docs/course/execute.py --only 02_llc_estimator --only 04_tms
    python docs/course/execute.py --timeout 300        # a slower machine
    python docs/course/execute.py --student            # student copies, solutions removed (no run)
    python docs/course/execute.py --threads 0          # torch's own thread count instead of 1

Each ``docs/course/NN_name.py`` (jupytext percent format) is converted to a notebook, executed
top to bottom by ``nbclient`` in a ``python3`` kernel started from *this* interpreter (so the venv's
``toymodels`` and ``theory`` are the ones imported), with the notebook's folder as working
directory and matplotlib's inline backend, so figures are embedded as PNG outputs, and with one
torch thread per kernel by default (``--threads``): the course's models are small, and on a
machine shared with other jobs two threads that wait for each other can be many times slower than
one (measured on 2 shared cores: the same ICL training took 14 s with one thread, 154 s with two). The executed
notebooks go to ``docs/course/executed/<stem>.ipynb`` (the documentation site renders them) and
the seconds per notebook to ``docs/course/executed/timings.json``. The limit applies to the whole
notebook, not to one cell: each cell may use what the earlier cells left of it. The script prints
a table and exits with status 1 if any notebook raised an error or ran past its limit.

``--student`` writes ``docs/course/student/<stem>.ipynb`` without executing anything: every cell
tagged ``solution`` keeps its place and tags but its source becomes ``# your solution here``, and
outputs are empty. Both output folders are ignored by git.

Needs ``jupytext``, ``nbclient``, ``nbformat`` and ``ipykernel``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parent
EXECUTED_DIR = COURSE_DIR / "executed"
STUDENT_DIR = COURSE_DIR / "student"
SOLUTION_TAG = "solution"
PLACEHOLDER = "# your solution here"
DEFAULT_TIMEOUT_S = 120.0
# the inline backend embeds each figure as a PNG output; it is set for the kernel only
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def notebook_paths(only: list[str] | None = None) -> list[Path]:
    """The course's percent-format notebooks ``NN_*.py``, in order; ``only`` selects stems.

    An unknown stem is an error that lists the known ones."""
    paths = sorted(p for p in COURSE_DIR.glob("[0-9][0-9]_*.py"))
    if not only:
        return paths
    by_stem = {p.stem: p for p in paths}
    unknown = [s for s in only if s not in by_stem]
    if unknown:
        raise SystemExit(f"unknown notebook(s) {unknown}; the course has: {sorted(by_stem)}")
    return [by_stem[s] for s in only]


def read_notebook(path: Path):
    """The jupytext percent file at ``path`` as an nbformat notebook (no outputs)."""
    import jupytext

    return jupytext.read(path, fmt="py:percent")


def is_solution(cell) -> bool:
    """Whether a cell is tagged ``solution`` (``# %% tags=["solution"]`` in the percent file)."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def strip_solutions(notebook):
    """A copy of ``notebook`` for students: the source of every ``solution``-tagged cell is
    replaced by ``# your solution here`` (markdown: *your solution here*), outputs and execution
    counts are cleared. The cells keep their place and tags, so an exercise's solution cell is
    where the student writes. The input is not changed."""
    student = copy.deepcopy(notebook)
    for cell in student.cells:
        if is_solution(cell):
            cell.source = PLACEHOLDER if cell.cell_type == "code" else "*your solution here*"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return student


def _kernel_manager(threads: int):
    """A kernel manager for a ``python3`` kernel run by this interpreter with the inline backend
    (and ``threads`` OpenMP/MKL threads, which torch reads at start-up; 0 leaves them unset).

    The kernel spec is written to a temporary folder and used only by this manager, so neither a
    user-wide ``python3`` kernel spec nor the environment of the caller decides which Python and
    which matplotlib backend run the course."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_root = Path(tempfile.mkdtemp(prefix="toymodels-course-kernel-"))
    spec_dir = spec_root / "python3"
    spec_dir.mkdir()
    env = {"MPLBACKEND": INLINE_BACKEND, "PYTHONHASHSEED": "0"}
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (toymodels course)",
        "language": "python",
        "env": env,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(spec_root)])
    # the asynchronous manager, as nbclient's own: with a blocking one its per-cell time limits
    # are never enforced (the reply is awaited without a deadline)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm), spec_root


def execute_notebook(path: Path, timeout_s: float, threads: int = 1):
    """Execute one percent-format notebook; returns ``(notebook, seconds, error or None)``.

    The whole notebook must finish within ``timeout_s``: each cell's timeout is what is left."""
    import shutil

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from nbclient.util import run_sync

    notebook = read_notebook(path)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    km, spec_root = _kernel_manager(threads)
    start = time.perf_counter()

    def remaining(_cell) -> int:
        return max(1, int(timeout_s - (time.perf_counter() - start) + 0.999))

    client = NotebookClient(notebook, km=km, timeout=int(timeout_s), timeout_func=remaining,
                            kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    error = None
    try:
        client.execute()
    except CellTimeoutError:
        error = f"ran past its limit of {timeout_s:g} s"
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    except Exception as exc:  # kernel died, could not start, ...
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if km.has_kernel:  # nbclient leaves a kernel it did not create running
            run_sync(km.shutdown_kernel)(now=True)
        shutil.rmtree(spec_root, ignore_errors=True)
    seconds = time.perf_counter() - start
    if error is None and seconds > timeout_s:
        error = f"took {seconds:.1f} s, over its limit of {timeout_s:g} s"
    nbformat.validate(notebook)
    return notebook, seconds, error


def write_student_copies(paths: list[Path]) -> None:
    """``docs/course/student/<stem>.ipynb`` for each notebook, solutions replaced (no execution)."""
    import nbformat

    STUDENT_DIR.mkdir(exist_ok=True)
    for path in paths:
        notebook = strip_solutions(read_notebook(path))
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        out = STUDENT_DIR / f"{path.stem}.ipynb"
        nbformat.write(notebook, out)
        hidden = sum(is_solution(c) for c in notebook.cells)
        print(f"{out.relative_to(COURSE_DIR.parent.parent)}: {hidden} solution cell(s) replaced")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="STEM",
                        help="run only this notebook (its file name without .py); repeatable")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds allowed per notebook (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (OpenMP) threads per kernel; 0 = torch's default (default 1)")
    parser.add_argument("--student", action="store_true",
                        help="write student copies with the solution cells emptied to "
                             "docs/course/student/ instead of executing")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.threads < 0:
        parser.error(f"--threads must be ≥ 0 (0: torch's default), got {args.threads}")
    paths = notebook_paths(args.only)
    if not paths:
        parser.error(f"no notebooks NN_*.py found in {COURSE_DIR}")
    if args.student:
        write_student_copies(paths)
        return 0

    import nbformat

    EXECUTED_DIR.mkdir(exist_ok=True)
    timings_path = EXECUTED_DIR / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    rows = []
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        notebook, seconds, error = execute_notebook(path, args.timeout, args.threads)
        nbformat.write(notebook, EXECUTED_DIR / f"{path.stem}.ipynb")
        timings[path.stem] = round(seconds, 1)
        timings_path.write_text(json.dumps(dict(sorted(timings.items())), indent=1) + "\n")
        rows.append((path.stem, seconds, error))
    width = max(len(stem) for stem, _, _ in rows)
    print(f"\n{'notebook':<{width}}  {'seconds':>7}  result (limit {args.timeout:g} s)")
    for stem, seconds, error in rows:
        print(f"{stem:<{width}}  {seconds:7.1f}  {'ok' if error is None else 'FAILED: ' + error}")
    failed = [stem for stem, _, error in rows if error is not None]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)} "
              f"(outputs with the traceback in {EXECUTED_DIR.relative_to(COURSE_DIR.parent.parent)})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
