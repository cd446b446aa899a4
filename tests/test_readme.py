"""The README's Python examples run as written and pass their own diagnosis."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_and_passes_its_diagnosis(index, capsys):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    res = namespace.get("res")
    if res is not None and hasattr(res, "diagnose"):
        diagnosis = res.diagnose(echo=None)
        assert diagnosis.ok, str(diagnosis)
        assert "Problems found" not in printed
