"""The LLC from a sampling trace: ``λ̂ = nβ (E[L(w)] − L(w*))``, and the result that carries it.

Estimator (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8 and Definition 3)::

    λ̂(w*) = nβ ( E_p[L(w)] − L(w*) ),   p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)

with the expectation over sampler draws after burn-in, averaged over chains. :func:`llc_draws` is
the one place the per-draw contributions ``nβ (L − L(w*))`` are formed; :func:`llc_from_trace`
turns a trace into an :class:`LLCResult` with its diagnostics (no sampling). Sampling is
:func:`toymodels.estimate_llc` (:mod:`toymodels.estimators.llc`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toymodels.estimators.diagnose import diagnose, plot_diagnostics
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.estimators.escape import fraction_below_init, noise_tolerance
from toymodels.sampling import SamplingTrace

__all__ = ["LLCResult", "llc_draws", "llc_from_trace"]


def llc_draws(nbeta, loss, init_loss):
    """The per-draw LLC contributions ``nβ (L − L(w*))`` (Lau et al. arXiv 2308.12108, eq. 8).

    ``loss`` is an array of losses at the draws (any shape, e.g. chains × draws), ``init_loss``
    the loss at ``w*`` and ``nbeta`` a number (or an array that broadcasts against ``loss``); the
    mean over draws and chains is ``λ̂``.
    """
    return nbeta * (loss - init_loss)


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
    #: lower loss than w*: w* is not a local minimum, or the chain escaped to another phase);
    #: for a minibatch run, more than 2 sd of the minibatch loss below (toymodels.estimators.escape)
    fraction_below_init: np.ndarray | None = None
    #: per chain, MALA only: the mean acceptance probability of the steps after burn-in
    acceptance_rate: np.ndarray | None = None
    #: per chain, SGLD on a full-batch loss: the mean MALA acceptance probability its moves would
    #: have had (a diagnostic of the step-size error; 1 means none)
    mala_acceptance: np.ndarray | None = None
    #: the calibration behind ``step_size="auto"`` (a JSON-ready summary), if any
    calibration: dict | None = None
    #: with ``step_size="auto"``: the schedule chosen and why (:class:`toymodels.estimators.calibration.Schedule`
    #: as a dict, with the relaxation that started the chains and the calibration's seconds)
    schedule: dict | None = None
    trace: SamplingTrace | None = field(default=None, repr=False)

    @property
    def llc_trace(self) -> np.ndarray:
        """``nβ (L_ct − init_loss)``, chains × draws: the per-draw LLC contributions."""
        return llc_draws(self.nbeta, self.loss_trace, self.init_loss)

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

    def to_arviz(self):
        """The draws as an ArviZ ``xarray.DataTree`` (arviz-base's :func:`arviz_base.from_dict`),
        so that ArviZ's ESS, R-hat, MCSE, trace and rank plots apply to them.

        Groups: ``posterior`` with ``llc`` = ``nβ (L_ct − init_loss)`` (chain × draw; its mean
        over chains and draws is ``llc_mean``) and ``sample_stats`` with ``loss`` = ``loss_trace``;
        the settings (``nbeta``, ``init_loss``, ``step_size``, ``localization``, ``sampler``,
        ``num_burnin_steps``, ``num_steps_bw_draws``) are attributes of both groups. Needs
        ``arviz-base`` (``pip install "toymodels[arviz]"``).
        """
        try:
            from arviz_base import from_dict
        except ImportError as error:
            raise ImportError('LLCResult.to_arviz needs arviz-base: pip install "toymodels[arviz]" '
                              '(or pip install arviz-base)') from error
        attrs = dict(nbeta=self.nbeta, nbeta_source=self.nbeta_source, init_loss=self.init_loss,
                     step_size=self.step_size, localization=self.localization, sampler=self.sampler,
                     num_burnin_steps=self.num_burnin_steps,
                     num_steps_bw_draws=self.num_steps_bw_draws)
        loss = np.asarray(self.loss_trace, dtype=float)
        return from_dict({"posterior": {"llc": self.llc_trace}, "sample_stats": {"loss": loss}},
                         attrs={"posterior": attrs, "sample_stats": attrs})

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
        """Plain-language findings about this run and what to change; see :mod:`toymodels.estimators.diagnose`.

        Prints them (through ``echo``; pass ``echo=None`` to stay quiet) and returns the
        :class:`toymodels.estimators.diagnose.Diagnosis`.
        """
        diagnosis = diagnose(self)
        if echo is not None:
            echo(str(diagnosis))
        return diagnosis

    def plot_diagnostics(self, path: str | Path | None = None):
        """A figure of loss traces and diagnostics; see :func:`toymodels.estimators.diagnose.plot_diagnostics`."""
        return plot_diagnostics(self, path=path)

    def plot_trace(self, ax=None, path: str | Path | None = None):
        """Plot each chain's loss trace with ``init_loss`` dashed; returns the matplotlib axes."""
        if ax is None:
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
    llc_trace = llc_draws(nbeta, trace.loss, trace.init_loss)
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
        fraction_below_init=fraction_below_init(trace.loss, trace.init_loss, noise_tolerance(trace)),
        acceptance_rate=acceptance_rate,
        mala_acceptance=mala_acceptance,
        trace=trace,
    )
