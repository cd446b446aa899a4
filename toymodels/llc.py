"""The local learning coefficient (LLC) estimator: one entry point for potentials and networks.

Estimator (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8 and Definition 3)::

    λ̂(w*) = nβ ( E_p[L(w)] − L(w*) ),   p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)

with the expectation over sampler draws after burn-in, averaged over chains. The sampler is SGLD
by default; SGNHT, RMSProp-preconditioned SGLD and MALA share the same driver
(:mod:`toymodels.samplers`), ``step_size="auto"`` chooses ε by :func:`toymodels.calibrate`, and
``result.diagnose()`` reads the run's diagnostics (:mod:`toymodels.diagnose`). For a potential ``K``
with ``K(w*) = 0`` this is ``nβ·E[K]``, which for an exact sampler equals the finite-temperature
value that ``theory`` computes (e.g. :func:`theory.normal_crossing.finite_temperature_llc`), and
tends to the learning coefficient λ as ``nβ → ∞``, ``γ → 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .diagnostics import chain_diagnostics
from .objective import ModuleObjective, Objective, PotentialObjective, data_from_loader, parameter_mask
from .sampling import SamplingTrace, run_sgld
from .sgld import SGLDHyperparameters

__all__ = ["LLCResult", "estimate_llc", "llc_from_trace", "default_nbeta"]


def default_nbeta(num_samples: int) -> float:
    """The default inverse temperature times sample size, ``nβ = n / log n`` (β = 1/log n).

    This is the choice of Lau et al. (Watanabe's WBIC temperature). devinterp's default is
    ``b / log b`` with ``b`` the *batch* size, which is a different posterior whenever ``b ≠ n``.
    """
    if num_samples < 2:
        raise ValueError(f"n / log n needs n ≥ 2 samples, got {num_samples}; pass nbeta explicitly")
    return num_samples / math.log(num_samples)


@dataclass
class LLCResult:
    """An LLC estimate with its trace and diagnostics.

    ``loss_trace`` is ``(num_chains, num_draws)``; ``llc_per_chain[c] = nβ (mean_t L_ct − init_loss)``;
    ``llc_mean`` is their mean, ``llc_std`` their standard deviation (ddof=1) and ``mcse`` the
    Monte-Carlo standard error of ``llc_mean`` from the effective sample size (arviz-stats),
    which accounts for autocorrelation within chains.
    """

    llc_mean: float
    llc_std: float
    llc_per_chain: np.ndarray
    loss_trace: np.ndarray
    init_loss: float
    mcse: float
    ess: float
    rhat: float
    nbeta: float
    nbeta_source: str
    step_size: float
    localization: float
    num_chains: int
    num_draws: int
    num_burnin_steps: int
    num_steps_bw_draws: int
    batch_size: int | None
    seed: int | None
    num_samples: int | None
    dropped_chains: list[int] = field(default_factory=list)
    divergence_steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    sampler: str = "sgld"
    #: per chain: the fraction of draws whose loss is below ``init_loss`` (a chain that finds
    #: lower loss than w*: w* is not a local minimum, or the chain escaped to another phase)
    fraction_below_init: np.ndarray | None = None
    #: per chain, MALA only: the mean acceptance probability of the steps after burn-in
    acceptance_rate: np.ndarray | None = None
    #: per chain, SGLD on a full-batch loss: the mean MALA acceptance probability its moves would
    #: have had (a diagnostic of the step-size error; 1 means none)
    mala_acceptance: np.ndarray | None = None
    #: the calibration behind ``step_size="auto"`` (a JSON-ready summary), if any
    calibration: dict | None = None
    trace: SamplingTrace | None = field(default=None, repr=False)

    @property
    def llc_trace(self) -> np.ndarray:
        """``nβ (L_ct − init_loss)``, chains × draws: the per-draw LLC contributions."""
        return self.nbeta * (self.loss_trace - self.init_loss)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (arrays as lists; the raw trace's extra records left out)."""
        out = {}
        for key, value in self.__dict__.items():
            if key == "trace":
                continue
            if isinstance(value, np.ndarray):
                value = value.tolist()
            out[key] = value
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def summary(self) -> str:
        s = (f"λ̂ = {self.llc_mean:.4g} ± {self.mcse:.2g} (MCSE; chain sd {self.llc_std:.2g}, "
             f"ESS {self.ess:.0f}, R-hat {self.rhat:.3f}) with nβ = {self.nbeta:.4g} "
             f"[{self.nbeta_source}], ε = {self.step_size:g}, γ = {self.localization:g}, "
             f"{self.num_chains} chains × {self.num_draws} draws, {self.sampler}")
        if self.acceptance_rate is not None:
            s += f", acceptance {np.mean(self.acceptance_rate):.2f}"
        if self.dropped_chains:
            s += f"; dropped diverged chains {self.dropped_chains}"
        return s

    def diagnose(self, echo=print):
        """Plain-language findings about this run and what to change; see :mod:`toymodels.diagnose`.

        Prints them (through ``echo``; pass ``echo=None`` to stay quiet) and returns the
        :class:`toymodels.diagnose.Diagnosis`.
        """
        from .diagnose import diagnose

        diagnosis = diagnose(self)
        if echo is not None:
            echo(str(diagnosis))
        return diagnosis

    def plot_diagnostics(self, path: str | Path | None = None):
        """A figure of loss traces and diagnostics; see :func:`toymodels.diagnose.plot_diagnostics`."""
        from .diagnose import plot_diagnostics

        return plot_diagnostics(self, path=path)

    def plot_trace(self, ax=None, path: str | Path | None = None):
        """Plot each chain's loss trace with ``init_loss`` dashed; returns the matplotlib axes."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 3.5))
        for chain in self.loss_trace[:32]:
            ax.plot(chain, lw=0.6, alpha=0.6)
        ax.axhline(self.init_loss, color="k", ls="--", lw=1, label="init_loss L(w*)")
        ax.set_xlabel("draw")
        ax.set_ylabel("loss")
        ax.set_title(f"λ̂ = {self.llc_mean:.3g} ± {self.mcse:.2g}")
        ax.legend(loc="upper right")
        if path is not None:
            ax.figure.tight_layout()
            ax.figure.savefig(path, dpi=120)
        return ax


def llc_from_trace(trace: SamplingTrace, *, nbeta_source: str = "given", batch_size=None,
                   seed=None, num_samples=None) -> LLCResult:
    """Post-process a sampling trace into an :class:`LLCResult` (no sampling)."""
    nbeta = trace.hyper.nbeta
    if trace.chain_hyper is not None and np.ptp(trace.chain_hyper["nbeta"]) > 0:
        raise ValueError("this trace mixes chains with different nbeta; split it by chain first "
                         "(toymodels.calibrate does)")
    llc_trace = nbeta * (trace.loss - trace.init_loss)
    per_chain = llc_trace.mean(axis=1)
    diag = chain_diagnostics(llc_trace)
    acceptance = trace.records.get("acceptance")
    acceptance_rate = mala_acceptance = None
    if acceptance is not None:
        if trace.sampler == "mala":
            acceptance_rate = acceptance.mean(axis=1)
        elif np.isfinite(acceptance).any():
            ok = np.isfinite(acceptance)
            count = ok.sum(axis=1)
            total = np.where(ok, acceptance, 0.0).sum(axis=1)
            mala_acceptance = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    step_size = trace.final_step_size if trace.final_step_size is not None else trace.hyper.step_size
    return LLCResult(
        llc_mean=float(per_chain.mean()),
        llc_std=float(per_chain.std(ddof=1)) if per_chain.size > 1 else float("nan"),
        llc_per_chain=per_chain,
        loss_trace=trace.loss,
        init_loss=trace.init_loss,
        mcse=diag["mcse"],
        ess=diag["ess"],
        rhat=diag["rhat"],
        nbeta=nbeta,
        nbeta_source=nbeta_source,
        step_size=step_size,
        localization=trace.hyper.localization,
        num_chains=trace.num_chains,
        num_draws=trace.num_draws,
        num_burnin_steps=trace.num_burnin_steps,
        num_steps_bw_draws=trace.num_steps_bw_draws,
        batch_size=batch_size,
        seed=seed,
        num_samples=num_samples,
        dropped_chains=trace.dropped_chains,
        divergence_steps=trace.divergence_steps,
        seconds=trace.seconds,
        sampler=trace.sampler,
        fraction_below_init=(trace.loss < trace.init_loss).mean(axis=1),
        acceptance_rate=acceptance_rate,
        mala_acceptance=mala_acceptance,
        trace=trace,
    )


def make_objective(
    target: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    batch_size: int | None = None,
) -> Objective:
    """Build the sampler's :class:`Objective` from a potential or from a network with data."""
    if isinstance(target, torch.nn.Module):
        if init is not None:
            raise ValueError("init is for potentials; a network is sampled around its current parameters")
        if data is None or loss_fn is None:
            raise ValueError("a network needs data=(inputs, targets) and loss_fn=fn(outputs, targets)")
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError(f"data must be (inputs, targets), got a sequence of length {len(data)}")
            inputs, targets = data
        elif isinstance(data, torch.utils.data.DataLoader):
            inputs, targets = data_from_loader(data)
        else:
            raise TypeError(f"data must be (inputs, targets) tensors or a DataLoader, got {type(data).__name__}")
        return ModuleObjective(target, inputs, targets, loss_fn, batch_size=batch_size)
    if callable(target):
        if data is not None or loss_fn is not None:
            raise ValueError("data and loss_fn are for networks; a potential is a function of w alone")
        if batch_size is not None:
            raise ValueError("batch_size is for networks with data; a potential has no minibatches")
        if init is None:
            raise ValueError("a potential needs init=w_star, the flat parameter vector to localize at")
        return PotentialObjective(target, init)
    raise TypeError(f"expected a torch.nn.Module or a potential function, got {type(target).__name__}")


def estimate_llc(
    target: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    nbeta: float | None = None,
    step_size: float | str = 1e-4,
    localization: float = 0.0,
    num_chains: int = 8,
    num_draws: int = 1000,
    num_burnin_steps: int = 0,
    num_steps_bw_draws: int = 1,
    batch_size: int | None = None,
    seed: int = 0,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    restrict_to: list[str] | torch.Tensor | None = None,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    on_divergence: str = "raise",
    progress: bool = True,
    chain_init: torch.Tensor | None = None,
    num_threads: int | None = None,
    sampler: str = "sgld",
    sampler_options: dict | None = None,
    calibration=None,
) -> LLCResult:
    """Estimate the local learning coefficient at ``w*`` with chains run as one tensor (SGLD by default).

    ``λ̂ = nβ (E[L(w)] − L(w*))`` (Lau et al. arXiv 2308.12108, eq. 8), the expectation over the
    draws of the localized tempered posterior ``∝ exp(−nβ L − γ/2 ||w − w*||²) φ(w)``.

    Two ways in, one code path:

    * ``estimate_llc(potential, init=w_star, nbeta=...)`` — ``potential(w)`` maps one flat
      ``(d,)`` vector to the scalar loss; ``nbeta`` is required (there is no sample size).
    * ``estimate_llc(model, data=(inputs, targets), loss_fn=...)`` — a ``torch.nn.Module`` at
      ``w*``, data as tensors (or a DataLoader, concatenated once), ``loss_fn(outputs, targets)``
      the batch-mean loss. ``nbeta`` defaults to ``n / log n`` with ``n`` the dataset size (never
      the batch size); ``result.nbeta_source`` says which was used.

    Args:
        nbeta: nβ, the inverse temperature times the sample size.
        step_size: ε, the step size (SGLD's noise variance), or ``"auto"``: for SGLD, SGNHT and
            preconditioned SGLD, :func:`toymodels.calibrate` chooses it (the largest step whose
            fitted step-size bias is within 1 %; pass ``calibration=`` to reuse one); for MALA it
            is adapted during burn-in to an acceptance rate of 0.8.
        localization: γ ≥ 0, the pull towards ``w*``.
        num_chains, num_draws, num_burnin_steps, num_steps_bw_draws: the chain schedule; burn-in
            draws are excluded from every average.
        batch_size: minibatch size per chain and step (networks only); ``None`` = full batch.
        seed: every random number of the run comes from a generator seeded with this.
        log_prior: optional ``log φ(w)`` of one flat vector (added to the drift; the recorded
            loss is still ``L``).
        restrict_to: sample only these parameters (names or module prefixes for a network, or a
            boolean ``(d,)`` mask), the rest fixed at ``w*``.
        observables: ``{name: φ(w)}`` functions of one flat vector, recorded at every draw
            (``result.trace.observables``), e.g. for susceptibilities from the same run.
        on_divergence: ``"raise"`` (default) stops with an error naming the chains and the step;
            ``"drop"`` drops those chains and lists them in ``result.dropped_chains``.
        progress: show a tqdm progress bar.
        chain_init: optional ``(num_chains, d)`` starting points (default: every chain at ``w*``);
            with ``step_size="auto"`` the calibration's chains start on them too.
        num_threads: torch threads during sampling (default: 1 for a potential, torch's setting
            for a network); see :func:`toymodels.run_sgld`.
        sampler: ``"sgld"`` (default), ``"sgnht"``, ``"rmsprop_sgld"`` or ``"mala"`` (exact
            full-batch losses only; no step-size bias); see :mod:`toymodels.samplers`.
        sampler_options: keyword arguments of the sampler (e.g. ``{"diffusion": 0.1}`` for SGNHT).
        calibration: a :class:`toymodels.calibration.CalibrationResult` to take the step size from
            when ``step_size="auto"`` (instead of calibrating again).

    The result carries diagnostics (``fraction_below_init``, ``mala_acceptance`` or
    ``acceptance_rate``, the trace's drift terms); ``result.diagnose()`` says in words what they
    mean and what to change.
    """
    objective = make_objective(target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size)
    if nbeta is None:
        if objective.num_samples is None:
            raise ValueError("nbeta is required for a potential (there is no dataset size to default from)")
        nbeta, nbeta_source = default_nbeta(objective.num_samples), f"n/log n with n={objective.num_samples}"
    else:
        nbeta_source = "given"
    options = dict(sampler_options or {})
    calibration_summary = None
    if isinstance(step_size, str):
        if step_size != "auto":
            raise ValueError(f"step_size must be a number > 0 or 'auto', got {step_size!r}")
        if sampler == "mala":
            if num_burnin_steps < 1:
                raise ValueError("step_size='auto' with MALA adapts ε during burn-in: give "
                                 "num_burnin_steps > 0 (a few hundred steps)")
            options.setdefault("adapt_steps", num_burnin_steps)
            options.setdefault("target_accept", 0.8)
            step_size = calibration.step_size if calibration is not None else 1e-4
        else:
            if calibration is None:
                from .calibration import calibrate

                calibration = calibrate(
                    target, init=init, data=data, loss_fn=loss_fn, nbeta=nbeta,
                    localization=localization, sampler=sampler, sampler_options=sampler_options,
                    batch_size=batch_size, seed=seed + 1, log_prior=log_prior,
                    restrict_to=restrict_to, num_threads=num_threads, chain_init=chain_init)
            elif calibration.sampler != sampler:
                raise ValueError(f"the calibration was made for sampler {calibration.sampler!r}, "
                                 f"not {sampler!r}; calibrate again with sampler={sampler!r}")
            step_size = calibration.choice(nbeta, localization).step_size
        if calibration is not None:
            calibration_summary = calibration.to_dict()
    hyper = SGLDHyperparameters(step_size=step_size, nbeta=nbeta, localization=localization)
    mask = _resolve_mask(objective, restrict_to)
    trace = run_sgld(
        objective,
        hyper=hyper,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin_steps=num_burnin_steps,
        num_steps_bw_draws=num_steps_bw_draws,
        seed=seed,
        log_prior=log_prior,
        mask=mask,
        observables=observables,
        on_divergence=on_divergence,
        progress=progress,
        chain_init=chain_init,
        num_threads=num_threads,
        sampler=sampler,
        sampler_options=options,
    )
    result = llc_from_trace(trace, nbeta_source=nbeta_source, batch_size=batch_size, seed=seed,
                            num_samples=objective.num_samples)
    result.calibration = calibration_summary
    return result


def _resolve_mask(objective: Objective, restrict_to) -> torch.Tensor | None:
    if restrict_to is None:
        return None
    if isinstance(restrict_to, torch.Tensor):
        return restrict_to
    if isinstance(objective, ModuleObjective):
        if isinstance(restrict_to, str):
            restrict_to = [restrict_to]
        return parameter_mask(objective, restrict_to)
    raise ValueError("restrict_to by name needs a network; for a potential pass a boolean (d,) mask")
