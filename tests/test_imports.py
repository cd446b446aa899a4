"""The import graph, read from the source with ast: theory stays free of torch and of the library,
and the library's modules import each other without circles (function-level imports included,
since an import inside a function only hides a circle)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved in ``package``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: x may be a module of the package
                    names.update(f"{module}.{alias.name}" for alias in node.names)
                names.add(module)
            elif node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> dict[str, Path]:
    return {f"{package}.{p.stem}" if p.stem != "__init__" else package: p
            for p in (ROOT / package).glob("*.py")}


def test_theory_imports_neither_torch_nor_the_library():
    for name, path in _modules("theory").items():
        bad = {m for m in _imports(path, "theory")
               if m.split(".")[0] in ("torch", "toymodels", "experiments")}
        assert not bad, f"{name} imports {sorted(bad)}: theory/ is exact ground truth, no torch"


def test_no_import_circle_inside_toymodels():
    modules = _modules("toymodels")
    graph = {name: {m for m in _imports(path, "toymodels") if m in modules and m != name}
             for name, path in modules.items() if name != "toymodels"}
    # the package __init__ re-exports everything; a module importing the package itself would
    # be a circle through it
    for name, deps in graph.items():
        assert "toymodels" not in deps, f"{name} imports the package toymodels (a circle through __init__)"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if state.get(dep) is None:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if state.get(name) is None:
            visit(name, [name])
