"""What every experiment shares (experiments/common.py): ``--quick`` writes where it cannot replace a
README figure and never overrides a flag given, the torch thread count is restored, and the
experiments keep to the import rules (read from the source with ast)."""

import ast
import importlib
import json
from pathlib import Path

import pytest
import torch

from experiments import tms_superposition
from experiments.common import ExperimentConfig, output_paths, parse, run, uses_threads

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                     if p.stem not in ("__init__", "common"))
#: library packages whose inner modules are private: a name they export is imported from them
PACKAGES_WITH_PRIVATE_LAYOUT = ("toymodels.sampling", "toymodels.objectives", "toymodels.estimators")


@pytest.fixture
def three_threads():
    """torch set to 3 threads (no experiment's default), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------
# --quick


def test_quick_run_writes_under_results_quick_and_nothing_under_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = run(tms_superposition.main, tms_superposition.Config, ["--quick", "--steps", "20"])
    assert not (tmp_path / "figures").exists()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["quick"]
    saved = json.loads((tmp_path / "results" / "quick" / "tms_superposition.json").read_text())
    assert (tmp_path / "results" / "quick" / "tms_superposition.png").stat().st_size > 0
    assert saved["config"]["quick"] and saved["config"]["steps"] == 20
    assert saved["config"]["batch_size"] == tms_superposition.Config.QUICK["batch_size"]
    assert len(report["final_loss"]) == 6  # the quick budget: 3 probabilities × 2 seeds


def test_output_paths():
    full, quick = ExperimentConfig(), ExperimentConfig(quick=True)
    assert output_paths(full, "x") == (Path("results/x.json"), Path("figures/x.png"))
    assert output_paths(quick, "x") == (Path("results/quick/x.json"), Path("results/quick/x.png"))
    given = ExperimentConfig(quick=True, out_dir=Path("a"), figure=Path("b/f.png"))
    assert output_paths(given, "x") == (Path("a/x.json"), Path("b/f.png"))


def test_quick_does_not_override_a_flag_given():
    Config = tms_superposition.Config
    full = Config()
    # 10_000 is also the full default: kept because it was given, not because it is the default
    cfg = parse(Config, ["--quick", "--seed", "7", "--steps", "10000"])
    assert cfg.quick and cfg.seed == 7 and cfg.steps == 10_000 == full.steps
    assert cfg.batch_size == Config.QUICK["batch_size"] != full.batch_size  # not given: quick
    assert cfg == Config.quick_config(seed=7, steps=10_000)
    assert parse(Config, ["--steps", "5"]) == Config(steps=5)
    assert parse(Config, ["--quick", "--no-quick"]) == full  # the last flag wins, with its defaults


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_a_quick_budget_that_flags_override(name):
    module = importlib.import_module(f"experiments.{name}")
    Config = module.Config
    assert issubclass(Config, ExperimentConfig) and Config.QUICK, f"{name}: no quick budget"
    assert hasattr(module.main, "__wrapped__"), f"{name}.main is not decorated with uses_threads"
    cfg = parse(Config, ["--quick", "--seed", "7", "--num-threads", "1"])
    assert cfg == Config.quick_config(seed=7, num_threads=1)
    assert cfg.quick and cfg.seed == 7 and cfg.num_threads == 1
    for key, value in Config.QUICK.items():
        assert getattr(cfg, key) == value, (name, key)


# ---------------------------------------------------------------------------------------------
# threads


def test_uses_threads_sets_the_count_and_restores_it(three_threads):
    @uses_threads
    def probe(config):
        return torch.get_num_threads()

    @uses_threads
    def fails(config):
        raise RuntimeError("inside")

    assert probe(ExperimentConfig(num_threads=2)) == 2
    assert torch.get_num_threads() == three_threads
    with pytest.raises(RuntimeError, match="inside"):
        fails(ExperimentConfig(num_threads=1))
    assert torch.get_num_threads() == three_threads


def test_an_experiment_leaves_the_thread_count_as_it_found_it(tmp_path, three_threads):
    tms_superposition.main(tms_superposition.Config.quick_config(steps=20, out_dir=tmp_path))
    assert torch.get_num_threads() == three_threads
    from experiments import susceptibility_response

    with pytest.raises(ValueError, match="fd_sources"):  # raised inside main
        susceptibility_response.main(susceptibility_response.Config.quick_config(
            fd_sources=("nowhere",), out_dir=tmp_path))
    assert torch.get_num_threads() == three_threads


# ---------------------------------------------------------------------------------------------
# the source: thread policy and imports


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


@pytest.mark.parametrize("name", EXPERIMENTS + ["common"])
def test_experiment_source_keeps_the_rules(name):
    tree = _tree(ROOT / "experiments" / f"{name}.py")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "set_num_threads"]
    assert not calls, f"{name} sets torch's threads itself (use experiments.common.uses_threads)"
    for module, names in _imports(tree):
        head = module.split(".")
        if head[0] == "experiments":
            others = [f"{module}.{n}" for n in names if module == "experiments"] or [module]
            assert others == ["experiments.common"], f"{name} imports another experiment: {others}"
        for package in PACKAGES_WITH_PRIVATE_LAYOUT:
            if module.startswith(package + "."):  # allowed only for names the packages lack
                public = [n for n in names
                          if any(hasattr(importlib.import_module(p), n) for p in (package, "toymodels"))]
                assert not public, (
                    f"{name} imports {public} from {module}: import them from {package} or toymodels "
                    "(the layout inside is private)")
        if head[0] in ("experiments", "toymodels", "theory"):
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{name} imports private {private} from {module}"


def test_no_test_imports_a_private_name_of_an_experiment():
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for module, names in _imports(_tree(path)):
            if module.split(".")[0] == "experiments":
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {module}"
