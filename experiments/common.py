"""What every experiment shares: the common settings, the thread policy, where outputs go, the CLI.

An experiment is one module ``experiments/<name>.py``, run from a clone as
``python -m experiments.<name>``, with

* ``Config``: a dataclass that subclasses :class:`ExperimentConfig` (the common settings come first
  on the command line, then its own; it may redeclare a common one to say what its seed seeds or
  to change the default thread count) and sets ``QUICK``, the settings of its smoke-test budget;
* ``main(config) -> dict``, decorated with :func:`uses_threads`, which writes its JSON and figure
  where :func:`output_paths` says;
* ``if __name__ == "__main__": run(main, Config)``.

``--quick`` changes defaults only. ``python -m experiments.x --quick --seed 7 --num-chains 16``
runs the quick budget with seed 7 and 16 chains, also where 16 is the full run's default: the
quick values are applied before the flags are parsed (as tyro's ``default``), so any flag given
wins. In Python the same is ``Config.quick_config(seed=7, num_chains=16)``; ``Config(quick=True)``
sets no budget (it only sends the outputs to ``results/quick/``).

Outputs. A full run writes ``results/<name>.json`` and ``figures/<name>.png`` (``figures/`` holds
what the README shows). A quick run writes both under ``results/quick/`` (git-ignored, as is
``results/``), so that a smoke test never replaces a figure shown in the README. ``--out-dir`` and
``--figure``, when given, are used as they are. Paths are relative to the working directory.

Threads. Toy models' tensors are tiny, so experiments run with ``num_threads`` torch intra-op
threads (1 unless an experiment says otherwise), set by :func:`uses_threads` through
:func:`toymodels.threads.torch_threads` and restored when ``main`` returns or raises; no
experiment calls ``torch.set_num_threads`` itself.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, NamedTuple, TypeVar

from toymodels.threads import torch_threads

__all__ = ["ExperimentConfig", "Outputs", "output_paths", "parse", "run", "uses_threads", "write_json"]

RESULTS_DIR = Path("results")
FIGURES_DIR = Path("figures")
QUICK_DIR = RESULTS_DIR / "quick"

C = TypeVar("C", bound="ExperimentConfig")


@dataclass
class ExperimentConfig:
    """The settings every experiment has; an experiment's ``Config`` subclasses it."""

    quick: bool = False
    """smoke-test budget: its values become the defaults of settings not given; outputs go to results/quick/"""
    seed: int = 0
    """seed of the experiment's random streams (each experiment says which)"""
    num_threads: int = 1
    """torch intra-op threads while the experiment runs (restored afterwards)"""
    out_dir: Path | None = None
    """directory of the JSON of numbers (default results/; with --quick results/quick/)"""
    figure: Path | None = None
    """path of the figure (default figures/<name>.png; with --quick in the JSON's directory)"""

    QUICK: ClassVar[dict[str, Any]] = {}
    """setting -> value of the quick budget (a subclass sets its own)"""

    @classmethod
    def quick_config(cls: type[C], **settings: Any) -> C:
        """The quick configuration: ``QUICK`` for every setting not in ``settings``."""
        return cls(**{**cls.QUICK, "quick": True, **settings})


class Outputs(NamedTuple):
    json: Path
    figure: Path


def output_paths(config: ExperimentConfig, name: str) -> Outputs:
    """Where experiment ``name`` writes its JSON and its figure (module docstring); the parent
    directories are created."""
    out_dir = Path(config.out_dir) if config.out_dir is not None else (
        QUICK_DIR if config.quick else RESULTS_DIR)
    if config.figure is not None:
        figure = Path(config.figure)
    else:
        figure = (out_dir if config.quick else FIGURES_DIR) / f"{name}.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.parent.mkdir(parents=True, exist_ok=True)
    return Outputs(out_dir / f"{name}.json", figure)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON (paths as strings, numpy scalars as numbers)."""
    Path(path).write_text(json.dumps(data, indent=1, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return float(value)


def uses_threads(main: Callable[[C], Any]) -> Callable[[C], Any]:
    """Decorate an experiment's ``main(config)``: it runs with ``config.num_threads`` torch
    threads, and the previous count is restored when it returns or raises."""

    @functools.wraps(main)
    def wrapper(config: C) -> Any:
        with torch_threads(config.num_threads):
            return main(config)

    return wrapper


def parse(config_type: type[C], args: Sequence[str] | None = None, description: str | None = None) -> C:
    """The command line ``args`` (default ``sys.argv[1:]``) as a ``config_type``; with ``--quick``
    its ``QUICK`` values are the defaults, so that every flag given is kept."""
    args = list(sys.argv[1:] if args is None else args)
    if "--quick" in args:
        config = _tyro_cli(config_type, args, description, default=config_type.quick_config())
        if config.quick:
            return config
        # "--quick ... --no-quick": the last flag wins, and so do the full defaults
    return _tyro_cli(config_type, args, description)


def _tyro_cli(config_type: type[C], args: list[str], description: str | None, **kwargs: Any) -> C:
    import tyro

    return tyro.cli(config_type, args=args, description=description, **kwargs)


def run(main: Callable[[C], Any], config_type: type[C], args: Sequence[str] | None = None) -> Any:
    """Command-line entry point of an experiment: :func:`parse` the arguments, then ``main(config)``.

    ``--help`` shows the first paragraph of ``main``'s module docstring above the settings.
    """
    doc = sys.modules[main.__module__].__doc__ if main.__module__ in sys.modules else None
    description = doc.strip().split("\n\n")[0] if doc else None
    return main(parse(config_type, args, description))
