"""Sampler throughput of this checkout against an earlier commit, in one run (issue 15: "bench_llc
not slower").

The same two problems as ``experiments/bench_llc.py`` — (a) the 24-parameter linear network
``4→3→4`` through the generic ``ModuleObjective`` path, eager and compiled; (b) the exact
18-parameter normal-crossing potential — are timed for each number of chains with the driver
``toymodels.run_sgld``, in a fresh subprocess per checkout and repeat, alternating which checkout
goes first, so both see the same machine. The earlier commit is checked out into a temporary git
worktree. Each cell is chain-steps per wall-clock second (median over repeats); the ratio
new/old > 1 means this checkout is faster.

Run from the repository root: ``python -m experiments.bench_versus_commit --commit c2df763``.
The machine should be otherwise idle (say its load when you quote a number).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json

ROOT = Path(__file__).resolve().parents[1]

#: the timed code, run in a subprocess against one checkout's ``toymodels`` (public names only,
#: so that it runs on the old layout and the new one)
CHILD = r"""
import json, sys, time, warnings
import torch
import toymodels
try:
    from toymodels.models.potentials import normal_crossing_potential
except ImportError:
    from toymodels.potentials import normal_crossing_potential
warnings.filterwarnings("ignore")
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
g = torch.Generator().manual_seed(0)
u, v = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 4, bias=False))
with torch.no_grad():
    model[0].weight.zero_(); model[0].weight[0] = v.float()
    model[1].weight.zero_(); model[1].weight[:, 0] = u.float()
x = torch.randn(1000, 4, generator=g, dtype=torch.float64)
y = x @ torch.outer(u, v).T + 0.1 * torch.randn(1000, 4, generator=g, dtype=torch.float64)
x, y = x.float(), y.float()
objectives = {
    "network eager": toymodels.ModuleObjective(model, x, y, torch.nn.functional.mse_loss, compile=False),
    "network compiled": toymodels.ModuleObjective(model, x, y, torch.nn.functional.mse_loss, compile=True),
    "potential": toymodels.PotentialObjective(normal_crossing_potential([[1, 2, 1]] * 6),
                                              torch.full((18,), 0.1, dtype=torch.float64)),
}
hyper = {"network eager": (1e-3, 145.0, 1.0), "network compiled": (1e-3, 145.0, 1.0),
         "potential": (1e-4, 1000.0, 1.0)}
out = {}
for name, objective in objectives.items():
    for chains in cfg["chains"]:
        h = toymodels.SGLDHyperparameters(*hyper[name])
        run = lambda n: toymodels.run_sgld(objective, hyper=h, num_chains=chains, num_draws=n, seed=1,
                                           num_threads=cfg["threads"])
        run(20)  # warm-up (and compilation)
        start = time.perf_counter()
        run(cfg["steps"])
        out[f"{name} | {chains} chains"] = chains * cfg["steps"] / (time.perf_counter() - start)
print(json.dumps(out))
"""


@dataclass
class Config(ExperimentConfig):
    """Throughput of this checkout against an earlier commit."""

    num_threads: int = 2
    """torch intra-op threads of the timed subprocesses (the target is stated for 2 cores)"""
    commit: str = "c2df763"
    """the commit to compare with (the baseline)"""
    repeats: int = 5
    """subprocess runs per checkout (medians are reported)"""
    chains: tuple[int, ...] = (16, 256, 1000)
    """numbers of chains"""
    steps: int = 300
    """timed SGLD steps per cell"""

    QUICK = dict(repeats=1, chains=(16,), steps=20)


def _run(tree: Path, cfg: Config) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    args = json.dumps(dict(chains=list(cfg.chains), steps=cfg.steps, threads=cfg.num_threads))
    done = subprocess.run([sys.executable, "-c", CHILD, args], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@uses_threads
def main(cfg: Config) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), cfg.commit], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            runs: dict[str, list[dict]] = {"old": [], "new": []}
            for r in range(cfg.repeats):
                order = [("old", old), ("new", ROOT)] if r % 2 == 0 else [("new", ROOT), ("old", old)]
                for label, tree in order:
                    runs[label].append(_run(tree, cfg))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    rows = {}
    print(f"{'cell':34s} {'old':>12s} {'new':>12s} {'new/old':>8s}   (chain-steps/s, median of {cfg.repeats})")
    for cell in runs["new"][0]:
        o = statistics.median(run[cell] for run in runs["old"])
        n = statistics.median(run[cell] for run in runs["new"])
        rows[cell] = dict(old=o, new=n, ratio=n / o)
        print(f"{cell:34s} {o:12.0f} {n:12.0f} {n / o:8.2f}")
    report = dict(commit=cfg.commit, config=vars(cfg), cells=rows, runs=runs)
    write_json(output_paths(cfg, "bench_versus_commit").json, report)
    return report


if __name__ == "__main__":
    run(main, Config)
