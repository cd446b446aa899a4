"""MkDocs hook: the front page is the README, and links written for the repository work on the site.

The README (at the repository root) and the pages in ``docs/`` link to one another and to the
figures in ``figures/`` with paths that are right when the files are read on a code host
(``docs/error_budget.md``, ``../figures/error_budget.png``). The site has ``docs/`` as its root, so
this hook

* renders ``README.md`` as the front page (``docs/index.md`` holds only a comment saying so), so
  the front page never drifts from the README;
* adds every ``figures/*.png`` to the site under ``figures/``;
* rewrites each relative link or image of a page: it is resolved from the page's place in the
  repository, then mapped to the site (``docs/X`` → ``X``, ``figures/X`` → ``figures/X``,
  ``README.md`` → ``index.md``) and made relative to the page again. A link to any other file of
  the repository (a source file, say) becomes its path in code font, since the site does not
  serve it; MkDocs' own link check (``--strict``) then sees only links into the site;
* reads lists as a code host does: a list may follow a paragraph line without a blank line, and
  nested items may be indented by two spaces (Python-Markdown wants a blank line and four);
* shows the Sphinx roles of the docstrings (``:func:`x```) in the API reference as plain code,
  and drops reST's literal-block marker (a paragraph ending in ``::`` ends in ``:``);
* typesets the formulas (``$...$`` inline, ``$$...$$`` displayed; LaTeX) as MathML when the site
  is built, with latex2mathml: browsers draw MathML themselves, so the formulas need no script
  and no network. Each formula is set aside before Markdown runs and put back into the HTML, so
  Markdown never reads inside it. The course notebooks' formulas, which mkdocs-jupyter leaves as
  LaTeX in its HTML, are typeset the same way (outside code, outputs and scripts).
"""

from __future__ import annotations

import html as html_lib
import posixpath
import re
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
FRONT_PAGE = "index.md"
# [text](target "title") and ![alt](target): the target up to whitespace or ')'
LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)(\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
LIST_ITEM = re.compile(r"^( *)([-*+]|\d+[.)]) ")
DISPLAY_MATH = re.compile(r"^[ \t]*\$\$(.+?)\$\$[ \t]*$", re.S | re.M)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?![\s$])([^$\n]+?)(?<!\s)\$(?!\$)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
MATH_TOKEN = "MATHTOKEN{}X"
# in rendered notebooks: what is not prose (code, outputs, scripts, styles) and the formulas
HTML_NOT_PROSE = re.compile(r"(<pre\b.*?</pre>|<code\b.*?</code>|<script\b.*?</script>|<style\b.*?</style>)", re.S)
HTML_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
HTML_INLINE_MATH = re.compile(r"(?<![\\$])\$(?![\s$])([^$<\n]+?)(?<!\s)\$(?!\$)")
LITERAL_BLOCK_MARKER = re.compile(r"::(</p>)")
SPHINX_ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):(?=<code)")


def on_files(files, config):
    """Serve the repository's figures under ``figures/`` on the site."""
    for png in sorted((REPO / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def _repo_path(src_uri: str) -> str:
    """Where the page lives in the repository (the front page is the README)."""
    return "README.md" if src_uri == FRONT_PAGE else f"docs/{src_uri}"


def _site_target(repo_target: str) -> str | None:
    """The site path of a repository path, or None when the site does not serve it."""
    if repo_target == "README.md":
        return FRONT_PAGE
    if repo_target.startswith("docs/"):
        return repo_target[len("docs/"):]
    if repo_target.startswith("figures/"):
        return repo_target
    return None


def _rewrite(markdown: str, src_uri: str) -> str:
    page_dir = posixpath.dirname(_repo_path(src_uri))
    site_dir = posixpath.dirname(src_uri)

    def replace(match: re.Match) -> str:
        text, target, title = match.group(1), match.group(2), match.group(3) or ""
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)  # absolute URL, anchor or site-absolute path: leave it
        path, sep, anchor = target.partition("#")
        repo_target = posixpath.normpath(posixpath.join(page_dir, path))
        site_target = _site_target(repo_target)
        if site_target is None:
            return f"{text[1:-1] if not text.startswith('!') else text[2:-1]} (`{repo_target}`)"
        relative = posixpath.relpath(site_target, site_dir or ".")
        return f"{text}({relative}{sep}{anchor}{title})"

    out, in_fence = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
        out.append(line if in_fence else LINK.sub(replace, line))
    return "".join(out)


def _code_host_lists(markdown: str) -> str:
    """Insert the blank line before a list and double two-space nesting, outside code fences."""
    out: list[str] = []
    in_fence = in_list = False
    unit = 0  # the nesting indent of the current list, once a nested item shows it
    previous = ""
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
        item = None if in_fence else LIST_ITEM.match(line)
        if item:
            indent = len(item.group(1))
            if not in_list:
                unit = 0
                if previous.strip() and indent == 0 and not previous.lstrip().startswith("|"):
                    out.append("\n")
            if indent and not unit:
                unit = indent
            if unit == 2 and indent:
                line = " " * (2 * indent) + line[indent:]
            in_list = indent == 0 or in_list
        elif not in_fence and line.strip() and not line.startswith(" ") and not previous.strip():
            in_list = False  # a new paragraph at the margin after a blank line ends the list
        out.append(line)
        previous = line
    return "".join(out)


def _set_math_aside(markdown: str, formulas: list[str]) -> str:
    """Replace each formula outside code by a token; ``formulas[i]`` is token i's MathML."""

    def display(match: re.Match) -> str:
        formulas.append(f'<div class="math-display">{latex_to_mathml(match.group(1).strip(), display="block")}</div>')
        return "\n" + MATH_TOKEN.format(len(formulas) - 1) + "\n"

    def inline(match: re.Match) -> str:
        formulas.append(latex_to_mathml(match.group(1).strip()))
        return MATH_TOKEN.format(len(formulas) - 1)

    out, in_fence, block = [], False, []
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line.lstrip()):
            if not in_fence:
                out.append(_math_outside_code("".join(block), display, inline))
                block = []
                in_fence = True
                out.append(line)
            else:
                in_fence = False
                out.append(line)
            continue
        (out if in_fence else block).append(line)
    out.append(_math_outside_code("".join(block), display, inline))
    return "".join(out)


def _math_outside_code(text: str, display, inline) -> str:
    text = DISPLAY_MATH.sub(display, text)
    pieces, last = [], 0
    for code in INLINE_CODE.finditer(text):  # `$x$` in code stays as it is
        pieces.append(INLINE_MATH.sub(inline, text[last:code.start()]))
        pieces.append(code.group(0))
        last = code.end()
    pieces.append(INLINE_MATH.sub(inline, text[last:]))
    return "".join(pieces)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == FRONT_PAGE:
        markdown = (REPO / "README.md").read_text(encoding="utf-8")
    formulas: list[str] = []
    markdown = _set_math_aside(_code_host_lists(_rewrite(markdown, page.file.src_uri)), formulas)
    page.formulas = formulas
    return markdown


def _typeset_notebook_math(html: str) -> str:
    """Typeset ``$...$`` and ``$$...$$`` in the prose of a rendered notebook as MathML."""

    def display(match: re.Match) -> str:
        tex = html_lib.unescape(match.group(1)).strip()
        return f'<span class="math-display">{latex_to_mathml(tex, display="block")}</span>'

    def inline(match: re.Match) -> str:
        return latex_to_mathml(html_lib.unescape(match.group(1)).strip())

    parts = HTML_NOT_PROSE.split(html)
    for index in range(0, len(parts), 2):  # the even parts lie between code, outputs and scripts
        parts[index] = HTML_INLINE_MATH.sub(inline, HTML_DISPLAY_MATH.sub(display, parts[index]))
    return "".join(parts)


def on_page_content(html, page, config, files):
    if page.file.src_uri.endswith(".ipynb"):
        return _typeset_notebook_math(html)
    formulas = getattr(page, "formulas", [])
    for index in reversed(range(len(formulas))):  # MATHTOKEN1X before MATHTOKEN10X is safe in reverse
        token = MATH_TOKEN.format(index)
        html = html.replace(f"<p>{token}</p>", formulas[index]).replace(token, formulas[index])
    return LITERAL_BLOCK_MARKER.sub(r":\1", SPHINX_ROLE.sub("", html))
