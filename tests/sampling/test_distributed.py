"""Chains split over two gloo processes under torchrun (toymodels.sampling.distributed).

The run is the one a user launches: ``torchrun --standalone --nproc-per-node 2`` on
``distributed_worker.py``, which calls :func:`toymodels.init_distributed` and
:func:`toymodels.estimate_llc` on each rank. Checked: every rank holds the full, identical result;
the same seed and N repeat it exactly; it agrees with the one-process estimate within combined
MCSE; a divergence is raised on every rank with global chain indices; the "auto" schedule
(calibration, relaxation) decides the same on every rank.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toymodels import estimate_llc
from toymodels.models.potentials import normal_crossing_potential

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_every_rank_holds_the_same_full_result(ranks):
    first, second = ranks
    assert first["world_size"] == 2
    assert first == second
    assert first["first"]["kept"] == list(range(32))  # all 32 chains, gathered in global order
    assert len(first["first"]["llc_per_chain"]) == 32
    assert len(first["first"]["loss_trace"]) == 32


def test_same_seed_and_processes_repeat_exactly(ranks):
    assert ranks[0]["first"] == ranks[0]["repeat"]


def test_split_run_agrees_with_one_process_within_mcse(ranks):
    sys.path.insert(0, str(WORKER.parent))
    try:
        from distributed_worker import SETTINGS
    finally:
        sys.path.pop(0)
    one = estimate_llc(normal_crossing_potential([1, 2]), init=torch.zeros(2, dtype=torch.float64),
                       progress=False, **SETTINGS)
    split = ranks[0]["first"]
    # the two are different samples (each rank has its own generator), so they agree in law
    combined = math.hypot(one.mcse, split["mcse"])
    assert abs(one.llc_mean - split["llc_mean"]) < 3 * combined, (one.llc_mean, split["llc_mean"], combined)
    assert split["llc_per_chain"] != list(one.llc_per_chain)


def test_divergence_is_raised_on_every_rank_with_global_chains(ranks):
    for report in ranks:
        assert report["divergence"] is not None
        assert sorted(report["divergence"]["chains"]) == list(range(6))  # ranks 0 and 1: 0–2, 3–5
    assert ranks[0]["divergence"] == ranks[1]["divergence"]


def test_auto_schedule_decides_the_same_on_every_rank(ranks):
    assert ranks[0]["auto"] == ranks[1]["auto"]
    assert ranks[0]["auto"]["step_size"] > 0
    assert math.isfinite(ranks[0]["auto"]["llc_mean"])


def test_wall_clock_budget_is_refused_across_processes(ranks):
    assert "budget_steps" in ranks[0]["budget_seconds"]
