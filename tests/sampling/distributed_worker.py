"""Run under ``torchrun --standalone --nproc-per-node N``: estimate_llc with chains split over the ranks.

Each rank writes what it returned to ``<out>/rank<r>.json``; tests/sampling/test_distributed.py
compares the ranks, the repeat and the one-process estimate. Not a test module itself.
"""

import json
import sys

import torch

from toymodels import DivergenceError, estimate_llc, init_distributed
from toymodels.models.potentials import normal_crossing_potential

# the numeric run the one-process estimate is compared with (tests/sampling/test_distributed.py)
SETTINGS = dict(nbeta=1000.0, localization=1.0, step_size=2e-3, num_chains=32, num_draws=400,
                num_burnin_steps=200, seed=7)


def summary(result):
    return dict(llc_mean=result.llc_mean, llc_std=result.llc_std, mcse=result.mcse,
                llc_per_chain=[float(v) for v in result.llc_per_chain],
                loss_trace=result.loss_trace.tolist(), kept=result.trace.kept_chains)


def main(out: str) -> None:
    device = init_distributed()
    rank = torch.distributed.get_rank()
    potential = normal_crossing_potential([1, 2])
    init = torch.zeros(2, dtype=torch.float64, device=device)
    report = {"world_size": torch.distributed.get_world_size()}
    report["first"] = summary(estimate_llc(potential, init=init, progress=False, **SETTINGS))
    report["repeat"] = summary(estimate_llc(potential, init=init, progress=False, **SETTINGS))
    # a step far too large: every chain leaves for infinity; each rank must raise the same error
    try:
        estimate_llc(potential, init=init + 1.0, nbeta=1000.0, step_size=10.0, num_chains=6,
                     num_draws=50, progress=False)
        report["divergence"] = None
    except DivergenceError as error:
        report["divergence"] = dict(chains=error.chains, steps=error.steps)
    # a wall-clock budget would let the ranks stop at different points: refused before sampling
    try:
        estimate_llc(potential, init=init, nbeta=1000.0, step_size="auto", budget_seconds=5.0,
                     progress=False)
        report["budget_seconds"] = None
    except ValueError as error:
        report["budget_seconds"] = str(error)
    # the automatic schedule: calibration and relaxation decide on gathered traces
    auto = estimate_llc(potential, init=init, nbeta=1000.0, localization=1.0, step_size="auto",
                        num_chains=8, budget_steps=300, calibration_options=dict(num_chains=8),
                        progress=False, seed=3)
    report["auto"] = dict(summary(auto), step_size=auto.step_size)
    with open(f"{out}/rank{rank}.json", "w") as handle:
        json.dump(report, handle)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
