"""Every ```python block of the README runs as written, each in a fresh interpreter, and passes its
own diagnosis.

A block is run as a file from the repository root (where the README's commands run) in a new
Python process with a time limit and warnings as errors (as the suite's ``filterwarnings = error``),
so blocks share no state, a hanging block fails instead of stalling the suite, and a newcomer
copying a block sees no warning. Where the block leaves an ``LLCResult`` named ``res``, its ``diagnose()`` must
find no problem. A block can be left out only by an HTML comment ``<!-- not-run -->`` on the line
just before its fence (for code that cannot run on a CPU laptop, such as a multi-GPU launch);
the README has none today, and the test says which blocks it skips.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", flags=re.S)
NOT_RUN = "<!-- not-run -->"
TIMEOUT_S = 300

BLOCKS = [(match.group("code"), match.group("before").strip() == NOT_RUN)
          for match in FENCE.finditer("\n" + README.read_text(encoding="utf-8"))]

# Runs the block as a script, then reports what its `res` says about itself as one JSON line.
RUNNER = """
import json, runpy, sys
namespace = runpy.run_path(sys.argv[1], run_name="__main__")
res = namespace.get("res")
report = {"has_result": res is not None and hasattr(res, "diagnose")}
if report["has_result"]:
    diagnosis = res.diagnose(echo=None)
    report.update(ok=diagnosis.ok, diagnosis=str(diagnosis))
print("README-BLOCK-REPORT " + json.dumps(report))
"""


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2
    assert sum(not skipped for _, skipped in BLOCKS) >= 2


def test_not_run_marker_is_parsed(tmp_path):
    text = "intro\n" + NOT_RUN + "\n```python\nraise SystemExit(1)\n```\n\n```python\nx = 1\n```\n"
    blocks = [(m.group("code"), m.group("before").strip() == NOT_RUN) for m in FENCE.finditer("\n" + text)]
    assert blocks == [("raise SystemExit(1)\n", True), ("x = 1\n", False)]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_written_and_passes_its_diagnosis(index, tmp_path):
    code, skipped = BLOCKS[index]
    if skipped:
        pytest.skip(f"README block {index} is marked {NOT_RUN}")
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run([sys.executable, "-W", "error", "-c", RUNNER, str(script)], cwd=ROOT, capture_output=True,
                               text=True, timeout=TIMEOUT_S)
    assert completed.returncode == 0, f"README block {index} failed:\n{completed.stderr[-3000:]}"
    assert "Problems found" not in completed.stdout, completed.stdout
    lines = [line for line in completed.stdout.splitlines() if line.startswith("README-BLOCK-REPORT ")]
    report = json.loads(lines[-1].removeprefix("README-BLOCK-REPORT "))
    if report["has_result"]:
        assert report["ok"], report["diagnosis"]
