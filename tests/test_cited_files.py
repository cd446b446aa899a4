"""Every repository file a docstring or comment cites exists (issue 20: no citation of a file that is not here)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a path into the repository's own folders, as docstrings cite them
CITED = re.compile(r"(?<![\w/.])((?:docs|experiments|tests|theory|toymodels|figures)/[\w./-]*\w\.(?:md|py|png|json|yml))")
# the library, the ground truth, the experiments and the documentation (tests name made-up paths)
SOURCES = sorted(p for folder in ("toymodels", "theory", "experiments", "docs")
                 for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md") and ".ipynb_checkpoints" not in p.parts)


def _cited(path: Path) -> set[str]:
    return set(CITED.findall(path.read_text(encoding="utf-8")))


def test_the_pattern_finds_citations():
    assert "docs/error_budget.md" in _cited(ROOT / "toymodels" / "sampling" / "sgld.py")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(source):
    generated = ("results/", "figures/quick", "docs/course/executed/", "docs/course/student/")
    missing = sorted(c for c in _cited(source)
                     if not (ROOT / c).exists() and not c.startswith(generated) and "NN_" not in c
                     and not (source.parent / c).exists())
    assert not missing, f"{source.relative_to(ROOT)} cites files that are not in the repository: {missing}"
