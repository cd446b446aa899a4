"""The README's diagnostics figure: ``LLCResult.plot_diagnostics()`` of the README's first example, the normal crossing K(x, y) = x² y⁴ at nβ = 1000, γ = 1, with step_size="auto".

One ``estimate_llc`` call, exactly as the README's "LLC in five lines" makes it (only the number of
chains and the seed are settings here), then ``res.plot_diagnostics(path)``: the six panels that
``res.diagnose()`` reads — loss traces with the initial loss, running LLC means, per-chain λ̂ and
escapes, the distance from w*, the drift terms' sizes with their ε factors, and MALA acceptance
probabilities of the SGLD moves. It writes ``figures/diagnostics.png`` and
``results/diagnostics.json`` (with ``--quick`` both under ``results/quick/``, so the README's figure
is never replaced by a smoke run). The JSON holds λ̂ ± MCSE beside the exact finite-temperature
target ``theory.normal_crossing.finite_temperature_llc`` and the diagnosis in words.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from toymodels import estimate_llc
from toymodels.models.potentials import normal_crossing_potential


@dataclass
class Config(ExperimentConfig):
    """The README example's run and its diagnostics figure."""

    seed: int = 0
    """seed of the calibration and the chains"""
    num_chains: int = 256
    """chains (the README example's 256)"""
    rel_mcse: float = 0.02
    """target MCSE of λ̂ relative to |λ̂| (estimate_llc's default)"""
    budget_seconds: float | None = None
    """wall-clock budget of the run (None: estimate_llc's default)"""

    QUICK = dict(num_chains=16, rel_mcse=0.2, budget_seconds=5.0)


EXPONENTS = [1, 2]  # K(x, y) = x² y⁴
NBETA = 1000.0
LOCALIZATION = 1.0


@uses_threads
def main(config: Config) -> dict:
    paths = output_paths(config, "diagnostics")  # figures/diagnostics.png, as the README shows it
    potential = normal_crossing_potential(EXPONENTS)
    budget = {} if config.budget_seconds is None else {"budget_seconds": config.budget_seconds}
    start = time.perf_counter()
    res = estimate_llc(potential, init=torch.zeros(2, dtype=torch.float64), nbeta=NBETA,
                       localization=LOCALIZATION, step_size="auto", num_chains=config.num_chains,
                       rel_mcse=config.rel_mcse, seed=config.seed, progress=False, **budget)
    seconds = time.perf_counter() - start
    diagnosis = res.diagnose(echo=None)
    res.plot_diagnostics(path=paths.figure)
    exact = finite_temperature_llc(EXPONENTS, nbeta=NBETA, localization=LOCALIZATION, box=None)
    llc, multiplicity = learning_coefficient(EXPONENTS)
    report = {
        "config": asdict(config),
        "potential": "x^2 y^4",
        "nbeta": NBETA,
        "localization": LOCALIZATION,
        "llc_mean": res.llc_mean,
        "mcse": res.mcse,
        "exact_finite_temperature": exact,
        "learning_coefficient": str(llc),
        "multiplicity": multiplicity,
        "step_size": float(res.schedule["step_size"]) if "step_size" in res.schedule else None,
        "diagnosis_ok": diagnosis.ok,
        "diagnosis": str(diagnosis),
        "seconds": seconds,
        "figure": paths.figure,
    }
    write_json(paths.json, report)
    print(f"x²y⁴ at nβ = {NBETA:g}, γ = {LOCALIZATION:g}: λ̂ = {res.llc_mean:.4f} ± {res.mcse:.4f} (MCSE), "
          f"exact {exact:.4f}, λ = {llc} (m = {multiplicity}); {seconds:.1f} s")
    print(diagnosis)
    print(f"figure: {paths.figure}   numbers: {paths.json}")
    return report


if __name__ == "__main__":
    run(main, Config)
