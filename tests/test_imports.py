"""The import graph, read from the source with ast (function-level imports included, since an
import inside a function only hides a circle):

* ``theory`` stays free of torch, of the library and of the experiments;
* nothing in ``theory`` or ``toymodels`` imports ``experiments`` (scripts, not a package);
* ``toymodels`` has no import circle, and its layers import only downwards:
  ``checks``/``threads`` < ``objectives`` < ``sampling`` < ``estimators`` < ``models`` <
  ``validation``/``compat`` < ``cli`` (the validation registry is the one place that may import both
  ``theory`` and the estimators);
* no module imports another module's private name (``_x``).

Imports under ``if TYPE_CHECKING:`` (annotations only, never executed) are not counted.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: toymodels' layers, bottom first; a module may import its own layer and those below
LAYERS = [("checks", "threads"), ("objectives",), ("sampling",), ("estimators",), ("models",),
          ("validation", "compat"), ("cli",)]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` of every import in ``path``, relative imports resolved."""
    name = _module_name(path)
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = []
    tree = ast.parse(path.read_text(), filename=str(path))
    # imports under `if TYPE_CHECKING:` are for annotations only and never run
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                 for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            out.append((module, [alias.name for alias in node.names]))
    return out


def _targets(module: str, names: list[str], known: dict[str, Path]) -> set[str]:
    """The known modules an import statement loads (``from pkg import mod`` loads ``pkg.mod``)."""
    found = {module} if module in known else set()
    found |= {f"{module}.{n}" for n in names if f"{module}.{n}" in known}
    return found


def _layer(module: str) -> int:
    head = module.split(".")[1] if "." in module else ""
    for i, group in enumerate(LAYERS):
        if head in group:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py: add it to LAYERS")


def test_theory_imports_neither_torch_nor_the_library():
    for name, path in _modules("theory").items():
        bad = {m for m, _ in _imports(path) if m.split(".")[0] in ("torch", "toymodels", "experiments")}
        assert not bad, f"{name} imports {sorted(bad)}: theory/ is exact ground truth, no torch"


def test_the_library_does_not_import_experiments():
    for package in ("theory", "toymodels"):
        for name, path in _modules(package).items():
            bad = {m for m, _ in _imports(path) if m.split(".")[0] == "experiments"}
            assert not bad, f"{name} imports {sorted(bad)}: experiments are scripts, not a library"


def _graph() -> dict[str, set[str]]:
    known = _modules("toymodels")
    graph = {}
    for name, path in known.items():
        deps = set()
        for module, names in _imports(path):
            deps |= _targets(module, names, known)
        # a package's __init__ is loaded with any of its modules: importing toymodels.x.y means
        # toymodels.x; the top-level package re-exports the public surface
        graph[name] = {d for d in deps if d != name}
    return graph


def test_toymodels_layers_import_only_downwards():
    for name, deps in _graph().items():
        if name == "toymodels":
            continue  # the public surface re-exports from every layer
        assert "toymodels" not in deps, f"{name} imports the package toymodels (a circle through __init__)"
        for dep in deps:
            if dep == "toymodels":
                continue
            assert _layer(dep) <= _layer(name), (
                f"{name} (layer {LAYERS[_layer(name)]}) imports {dep} (layer {LAYERS[_layer(dep)]}): "
                "imports point down the layers")


def test_no_import_circle_inside_toymodels():
    graph = {n: {d for d in deps if d != "toymodels"} for n, deps in _graph().items() if n != "toymodels"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):
                continue  # a package's __init__ importing its own modules is not a circle
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if state.get(dep) is None:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if state.get(name) is None:
            visit(name, [name])


def test_no_private_name_is_imported_across_modules():
    for package in ("theory", "toymodels"):
        for name, path in _modules(package).items():
            for module, names in _imports(path):
                if module.split(".")[0] not in ("theory", "toymodels"):
                    continue
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                private_module = [p for p in module.split(".") if p.startswith("_")]
                assert not private and not private_module, (
                    f"{name} imports private {private or private_module} from {module}")
