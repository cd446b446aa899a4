"""The course notebooks (``docs/course/NN_*.py``, jupytext percent format) are well formed, cheaply.

Nothing is executed here (``python docs/course/execute.py`` runs them, about a minute each): each
notebook parses with jupytext, opens with a markdown title, has code cells that compile, at least
one exercise solution tagged ``solution``, an estimate printed beside an exact value and a figure;
and ``execute.strip_solutions`` (behind ``--student``) empties exactly the solution cells. Skipped,
with the reason, when jupytext is not installed (it is in the ``docs`` extra).
"""

import importlib.util
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the course tests need jupytext (pip install -e '.[docs]')")

COURSE = Path(__file__).resolve().parents[2] / "docs" / "course"
STEMS = ["01_what_is_lambda", "02_llc_estimator", "03_deep_linear_networks", "04_tms",
         "05_icl_stages", "06_susceptibilities", "07_gridworld_and_patterning",
         "08_your_own_network"]
MAGIC = re.compile(r"^\s*[%!]")


def _execute_module():
    """``docs/course/execute.py``, imported from its path (``docs`` is not a package)."""
    spec = importlib.util.spec_from_file_location("course_execute", COURSE / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(stem: str):
    return jupytext.read(COURSE / f"{stem}.py", fmt="py:percent")


def _python(source: str) -> str:
    """The cell as plain Python: a Jupyter magic line (``%matplotlib inline``) becomes ``pass``."""
    return "\n".join("pass" if MAGIC.match(line) else line for line in source.splitlines())


def test_the_course_is_the_eight_notebooks():
    found = sorted(p.stem for p in COURSE.glob("[0-9][0-9]_*.py"))
    assert found == STEMS
    assert [p.stem for p in _execute_module().notebook_paths()] == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_is_well_formed(stem):
    notebook = _notebook(stem)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and re.match(r"# \S", first.source), \
        f"{stem}: the first cell must be markdown starting with a '# ' title"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{stem} has no code cell"
    for index, cell in enumerate(code):
        compile(_python(cell.source), f"{stem} code cell {index}", "exec")
    solutions = [cell for cell in notebook.cells if "solution" in cell.metadata.get("tags", [])]
    assert solutions, f"{stem}: no cell tagged 'solution' (an exercise's solution a teacher can hide)"
    assert all(cell.cell_type == "code" for cell in solutions)
    text = "\n".join(cell.source for cell in code)
    assert re.search(r"exact", text), f"{stem}: no estimate printed beside an exact value"
    assert re.search(r"plt\.show\(\)|plot_diagnostics\(\)", text), f"{stem}: no figure"
    assert "progress=False" in text or "estimate_llc" not in text, \
        f"{stem}: sampler calls should pass progress=False (no progress bars in the rendered page)"


def test_strip_solutions_empties_only_the_solution_cells():
    execute = _execute_module()
    notebook = _notebook("01_what_is_lambda")
    before = [cell.source for cell in notebook.cells]
    student = execute.strip_solutions(notebook)
    assert [cell.source for cell in notebook.cells] == before, "the input notebook was modified"
    assert len(student.cells) == len(notebook.cells)
    stripped = 0
    for original, copy in zip(notebook.cells, student.cells):
        if execute.is_solution(original):
            stripped += 1
            assert copy.source == execute.PLACEHOLDER
            assert execute.is_solution(copy), "the solution cell should keep its tag and place"
        else:
            assert copy.source == original.source
    assert stripped >= 1
    assert all(not c.outputs and c.execution_count is None
               for c in student.cells if c.cell_type == "code")


def test_strip_solutions_on_a_tiny_notebook():
    """Independent of the course's content: two cells, one a solution with an output."""
    import nbformat

    execute = _execute_module()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution"]},
                                  outputs=[nbformat.v4.new_output("stream", text="42\n")],
                                  execution_count=3),
        nbformat.v4.new_code_cell("x = 1"),
    ])
    student = execute.strip_solutions(notebook)
    assert [c.source for c in student.cells] == ["# Title", execute.PLACEHOLDER, "x = 1"]
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert notebook.cells[1].source == "answer = 42" and notebook.cells[1].outputs
