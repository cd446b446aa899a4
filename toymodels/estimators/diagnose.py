"""Plain-language diagnosis of an LLC run, and a figure of its traces.

:func:`diagnose` reads an :class:`toymodels.LLCResult` and returns findings, each a short statement
of what the numbers show and what to change:

* **negative estimate** — ``λ̂ < 0``: the chains found lower loss than ``w*`` on average;
* **escaped** — a chain spent more than 5 % of its draws below ``L(w*)`` (the criterion with which
  Chen et al., arXiv 2310.06301, discard chains; with a minibatch loss, more than 2 standard
  deviations of the minibatch loss below, see :mod:`toymodels.estimators.escape`): ``w*`` is not
  a local minimum, or the chain left for another phase;
* **not converged** — split R-hat above 1.01 (Vehtari et al. 2021), or the second half of the
  draws differs from the first by more than 4 standard errors (still drifting after burn-in);
* **imprecise** — the Monte-Carlo standard error is more than 5 % of the estimate;
* **step size too large** — diverged chains; or the drift-to-noise ratio says the step-size bias
  is large. The ratio ``ρ = E||(ε/2)F||² / E||√ε ξ||²`` is measured on every run at no cost. For
  SGLD on a Gaussian of curvature κ, at its own stationary law (variance ``1/(κ(1 − x))``,
  ``x = εκ/4``), ``ρ = (εκ²/4)·Var(w) = x/(1 − x)`` — *exactly* the relative bias of λ̂. In general
  ``ρ ≈ (ε/4)·E[ΔU]/d`` (Stein's identity ``E||∇U||² = E[ΔU]`` under the target), a curvature
  averaged over coordinates, so ρ is a rule-of-thumb estimate of the relative step-size bias
  (a test checks the Gaussian identity). For MALA there is no bias, and the acceptance rate is
  checked instead;
* **frozen** — chains whose loss and distance from ``w*`` never changed (a step below the
  parameters' precision, or MALA rejecting everything): their ``λ̂ = 0`` and ESS are artefacts;
* **cannot assess** — R-hat or the MCSE is undefined (too few draws or chains);
* **not relaxed**, **budget short** — ``step_size="auto"`` ran out of budget before the chains
  stopped drifting, or before the precision asked for;
* **MALA stuck** — acceptance below 5 %;
* **localization dominates** — the pull ``γ(w − w*)`` is larger on average than the loss's force
  ``nβ∇L``: the posterior is mostly the Gaussian prior, and λ̂ is biased low.

:func:`plot_diagnostics` draws the loss traces, running means, per-chain estimates with the
fraction of draws below ``L(w*)``, the distance from ``w*``, the sizes of the drift terms with
their ε factors, and the acceptance probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.estimators.escape import ESCAPE_FRACTION, ESCAPE_NOISE_SDS

__all__ = ["Finding", "Diagnosis", "diagnose", "plot_diagnostics", "ESCAPE_FRACTION"]



@dataclass
class Finding:
    code: str  #: a stable identifier, e.g. "escaped"
    severity: str  #: "problem" (the estimate should not be trusted), "warning" or "info"
    message: str  #: what the numbers show
    advice: str  #: what to change

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}\n    → {self.advice}"


@dataclass
class Diagnosis:
    findings: list[Finding]
    numbers: dict = field(default_factory=dict)  #: the statistics the findings are based on

    @property
    def ok(self) -> bool:
        """No finding of severity "problem"."""
        return not any(f.severity == "problem" for f in self.findings)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def __str__(self) -> str:
        if not self.findings:
            return "No problems found: converged, no escapes, small step-size bias, precise."
        head = "Problems found:" if not self.ok else "Warnings:"
        return "\n".join([head] + [str(f) for f in self.findings])


def _step_bias_proxy(trace) -> float:
    """``E||drift||² / E||noise||²`` over the draws: ≈ εκ/4 for SGLD (see the module docstring)."""
    if trace is None or trace.noise_norm.size == 0:
        return float("nan")
    noise2 = float(np.mean(trace.noise_norm ** 2))
    if noise2 <= 0:
        return float("nan")
    return float(np.mean(trace.drift_norm ** 2)) / noise2


def _half_drift_z(llc_trace: np.ndarray) -> float:
    """z-score of (second-half mean − first-half mean) of the per-draw LLC, MCSEs from arviz-stats."""
    half = llc_trace.shape[1] // 2
    if half < 4:
        return float("nan")
    first, second = llc_trace[:, :half], llc_trace[:, half:]
    se = math.hypot(chain_diagnostics(first)["mcse"], chain_diagnostics(second)["mcse"])
    if not (se > 0):
        return float("nan")
    return float((second.mean() - first.mean()) / se)


def _frozen_chains(result) -> np.ndarray:
    """Indices of chains that never moved: loss and distance from w* constant over the draws."""
    loss = result.loss_trace
    if loss.shape[1] < 2:
        return np.array([], dtype=int)
    still = np.ptp(loss, axis=1) == 0
    if result.trace is not None:
        dist = result.trace.distance
        # "negligible": below the float resolution of the distance itself
        still &= np.ptp(dist, axis=1) <= 1e-12 * (1.0 + np.abs(dist).max(axis=1))
    return np.flatnonzero(still)


def _schedule_findings(result, numbers: dict) -> list[Finding]:
    """What step_size="auto" reported about its own schedule (relaxation and budget)."""
    findings = []
    calibration = getattr(result, "calibration", None) or {}
    for choice in calibration.get("choices", []):
        if "unverified" in choice.get("reason", "") and math.isclose(choice["nbeta"], result.nbeta):
            findings.append(Finding(
                "step_size_unverified", "problem",
                f"The calibration could measure no step-size bias (only one grid point mixed), so "
                f"ε = {choice['step_size']:.3g} is the smallest step that did, with an unknown bias.",
                "Calibrate with more chains or draws (calibration_options={'num_chains': 64, "
                "'max_rounds': 6}), or use sampler='mala' on a full-batch loss (no step-size bias)."))
    schedule = getattr(result, "schedule", None) or {}
    relaxation = schedule.get("relaxation") or {}
    if relaxation and not relaxation.get("relaxed", True):
        findings.append(Finding(
            "not_relaxed", "problem",
            f"The chains were still drifting away from w* when the relaxation's budget ran out "
            f"({relaxation.get('steps')} steps at ε = {relaxation.get('step_size', float('nan')):.3g}): "
            "the slowest direction of the posterior was not reached, and λ̂ is likely too low.",
            "Give the relaxation more room (calibration_options={'relax_max_steps': ...} or a "
            "larger budget_seconds), or raise the localization γ, which shortens the slowest "
            "relaxation (about 1/γ in Langevin time)."))
    if schedule.get("short_of_target"):
        findings.append(Finding(
            "budget_short", "problem",
            f"The budget stopped the run short of the precision asked for: the MCSE should be "
            f"about {schedule.get('predicted_mcse', float('nan')):.3g}, against a target of "
            f"{schedule.get('target_mcse', float('nan')):.3g} ({schedule.get('reasons', {}).get('num_draws', '')}).",
            "Raise budget_steps or budget_seconds, use more chains (cheap when the model is "
            "small), or accept a larger rel_mcse."))
    return findings


def diagnose(result) -> Diagnosis:
    """Findings about an :class:`toymodels.LLCResult` (see the module docstring for each rule)."""
    numbers = dict(llc_mean=result.llc_mean, mcse=result.mcse, rhat=result.rhat, ess=result.ess,
                   sampler=result.sampler, step_size=result.step_size)
    findings: list[Finding] = []
    for rule in (_frozen_findings, _schedule_findings, _estimate_findings, _convergence_findings,
                 _precision_findings, _sampler_findings, _localization_findings):
        findings.extend(rule(result, numbers))
    return Diagnosis(findings=findings, numbers=numbers)


def _frozen_findings(result, numbers: dict) -> list[Finding]:
    """Frozen chains, or nothing to assess convergence and precision with."""
    findings: list[Finding] = []
    mcse = result.mcse
    frozen = _frozen_chains(result)
    numbers["frozen_chains"] = int(frozen.size)
    if frozen.size:
        findings.append(Finding(
            "frozen", "problem",
            f"{frozen.size} of {result.num_chains} chains never moved (constant loss and distance "
            f"from w* over all {result.num_draws} draws; chains {frozen[:10].tolist()}): their "
            "λ̂ = 0 and ESS say nothing about the posterior.",
            f"The step size ({result.step_size:.3g}) is too small for the parameters' precision, "
            "or (MALA) every proposal was rejected: use step_size='auto', or a step around 1e-4 "
            "to 1e-6, in float32 or float64."))
    elif not (math.isfinite(result.rhat) and math.isfinite(mcse)) and np.ptp(result.loss_trace) > 0:
        findings.append(Finding(
            "cannot_assess", "problem",
            f"R-hat ({result.rhat}) or the MCSE ({mcse}) could not be computed from "
            f"{result.num_chains} chain(s) × {result.num_draws} draw(s): nothing says whether the "
            "chains converged or how precise λ̂ is.",
            "Use at least 2 chains and 100 draws (R-hat and the ESS need several draws per chain); "
            "step_size='auto' chooses enough."))
    return findings


def _estimate_findings(result, numbers: dict) -> list[Finding]:
    """Diverged chains, a negative estimate, chains that escaped below L(w*)."""
    findings: list[Finding] = []
    lam = result.llc_mean
    if result.dropped_chains:
        findings.append(Finding(
            "diverged", "problem",
            f"{len(result.dropped_chains)} chain(s) diverged and were dropped "
            f"({result.dropped_chains[:10]}); the survivors avoided the unstable region, so their "
            "average is biased.",
            f"Lower the step size (now {result.step_size:.3g}); use step_size='auto' to calibrate it."))

    if lam < 0:
        findings.append(Finding(
            "negative_estimate", "problem",
            f"The estimate is negative (λ̂ = {lam:.4g}): on average the chains found loss below "
            "L(w*).",
            "w* is not a local minimum: train it further (or to convergence), or raise the "
            "localization γ to keep the chains near w*. A learning coefficient is only defined "
            "at a local minimum."))

    below = result.fraction_below_init
    if below is not None and below.size:
        escaped = np.flatnonzero(below > ESCAPE_FRACTION)
        numbers["fraction_below_init_max"] = float(below.max())
        if escaped.size:
            worst = escaped[np.argsort(-below[escaped])][:5]
            detail = ", ".join(f"chain {c}: {100 * below[c]:.0f}%" for c in worst)
            findings.append(Finding(
                "escaped", "problem",
                f"{escaped.size} of {below.size} chains spent more than "
                f"{100 * ESCAPE_FRACTION:.0f}% of their draws below L(w*)"
                + ("" if result.trace is None or result.trace.init_loss_sd is None else
                   f" by more than {ESCAPE_NOISE_SDS:g} sd of the minibatch loss")
                + f" ({detail}): they found "
                "lower loss than w*. Either w* is not a local minimum, or these chains escaped to "
                "another phase.",
                "Check that w* is a minimum (gradient ≈ 0, trained to convergence); raise the "
                "localization γ to keep the chains in w*'s basin; or exclude these chains, as "
                "Chen et al. do."))
    return findings


def _convergence_findings(result, numbers: dict) -> list[Finding]:
    """Chains that disagree (R-hat), or a per-draw LLC still drifting."""
    findings: list[Finding] = []
    trace = result.trace
    if math.isfinite(result.rhat) and result.rhat > 1.01:
        severity = "problem" if result.rhat > 1.05 else "warning"
        findings.append(Finding(
            "not_converged", severity,
            f"The chains disagree with each other: split R-hat = {result.rhat:.3f} (> 1.01).",
            "Run longer: more burn-in (num_burnin_steps) and more draws; if the chains settle at "
            "different levels, they sit in different basins — raise the localization γ."))
    if trace is not None:
        z = _half_drift_z(result.llc_trace)
        numbers["half_drift_z"] = z
        if math.isfinite(z) and abs(z) > 4:
            direction = "rising" if z > 0 else "falling"
            findings.append(Finding(
                "still_drifting", "problem",
                f"The per-draw LLC is still {direction}: the second half of the draws differs from "
                f"the first by {abs(z):.1f} standard errors.",
                "The burn-in is too short for this step size: raise num_burnin_steps (or the step "
                "size, if the step-size bias allows it)."))
    return findings


def _precision_findings(result, numbers: dict) -> list[Finding]:
    """An MCSE above 5 % of the estimate."""
    findings: list[Finding] = []
    lam, mcse = result.llc_mean, result.mcse
    if math.isfinite(mcse) and lam != 0 and mcse > 0.05 * abs(lam):
        findings.append(Finding(
            "imprecise", "warning",
            f"The Monte-Carlo standard error is {100 * mcse / abs(lam):.1f}% of the estimate "
            f"(MCSE {mcse:.3g}, ESS {result.ess:.0f}).",
            "The error falls as 1/√(draws × chains): four times the draws or chains halves it; "
            "thinning does not help."))
    return findings


def _sampler_findings(result, numbers: dict) -> list[Finding]:
    """MALA's acceptance, or the step-size bias of SGLD from the drift-to-noise ratio."""
    findings: list[Finding] = []
    trace = result.trace
    if result.sampler == "mala" and result.acceptance_rate is not None:
        acc = float(np.mean(result.acceptance_rate))
        numbers["acceptance_rate"] = acc
        if acc < 0.05:
            findings.append(Finding(
                "mala_stuck", "problem",
                f"MALA accepted {100 * acc:.1f}% of its proposals: the chains hardly moved, so the "
                "draws are a few points repeated and λ̂ reflects where the chains started.",
                "Lower the step size by 10× or more, or use step_size='auto' (adapts to 80% "
                "acceptance)."))
        elif acc < 0.4:
            findings.append(Finding(
                "mala_acceptance_low", "warning",
                f"MALA accepts only {100 * acc:.0f}% of its proposals: no bias, but the chains "
                "move slowly and can stick in stiff regions.",
                "Lower the step size, or use step_size='auto' (adapts to 80% acceptance)."))
        elif acc > 0.97:
            findings.append(Finding(
                "mala_acceptance_high", "info",
                f"MALA accepts {100 * acc:.1f}% of its proposals: the step could be larger.",
                "Raise the step size, or use step_size='auto' (adapts to 80% acceptance)."))
    elif trace is not None and result.sampler in ("sgld", "rmsprop_sgld"):
        proxy = _step_bias_proxy(trace)
        numbers["step_bias_proxy"] = proxy
        if result.mala_acceptance is not None:
            numbers["mala_acceptance"] = float(np.mean(result.mala_acceptance))
        if math.isfinite(proxy) and proxy > 0.02:
            severity = "problem" if proxy > 0.1 else "warning"
            acc_note = ""
            if result.mala_acceptance is not None:
                acc_note = (f" A Metropolis test would accept "
                            f"{100 * numbers['mala_acceptance']:.1f}% of the moves.")
            findings.append(Finding(
                "step_size_too_large", severity,
                f"The step size looks too large: the drift-to-noise ratio squared is "
                f"{proxy:.3f}, which on a Gaussian equals the relative step-size bias of λ̂ "
                f"(≈ {100 * proxy:.0f}% too high).{acc_note}",
                f"Lower the step size (now {result.step_size:.3g}) or use step_size='auto'; on an "
                "exact full-batch loss sampler='mala' removes the bias."))
    return findings


def _localization_findings(result, numbers: dict) -> list[Finding]:
    """A pull towards w* larger than the force of the loss."""
    findings: list[Finding] = []
    trace = result.trace
    if trace is not None and result.localization > 0:
        g = trace.records.get("grad_term_norm")
        loc = trace.records.get("localization_term_norm")
        if g is not None and loc is not None and float(g.mean()) > 0:
            ratio = float(loc.mean() / g.mean())
            numbers["localization_to_gradient"] = ratio
            if ratio > 1:
                findings.append(Finding(
                    "localization_dominates", "warning",
                    f"The pull towards w* is {ratio:.1f}× the loss's force on average: the sampled "
                    "law is mostly the localizing Gaussian, and λ̂ is pulled down.",
                    f"Lower the localization γ (now {result.localization:g}) or raise nβ "
                    f"(now {result.nbeta:.4g}) — but see whether chains then escape."))
    return findings


def plot_diagnostics(result, path: str | Path | None = None):
    """Six panels: loss traces, running LLC means, per-chain λ̂ and escapes, distance from w*,
    drift-term sizes with their ε factors, and acceptance probabilities. Returns the figure."""
    import matplotlib.pyplot as plt

    trace = result.trace
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    (ax_loss, ax_run, ax_chain), (ax_dist, ax_terms, ax_acc) = axes
    shown = result.loss_trace[:32]
    for chain in shown:
        ax_loss.plot(chain, lw=0.5, alpha=0.6)
    ax_loss.axhline(result.init_loss, color="k", ls="--", lw=1, label="L(w*)")
    ax_loss.set(title="loss traces", xlabel="draw", ylabel="loss")
    ax_loss.legend(fontsize=7)

    llc = result.llc_trace
    running = np.cumsum(llc, axis=1) / np.arange(1, llc.shape[1] + 1)
    for chain in running[:32]:
        ax_run.plot(chain, lw=0.5, alpha=0.5)
    ax_run.axhline(result.llc_mean, color="k", lw=1.2, label=f"λ̂ = {result.llc_mean:.4g}")
    ax_run.axhspan(result.llc_mean - 2 * result.mcse, result.llc_mean + 2 * result.mcse, color="k",
                   alpha=0.12, label="± 2 MCSE")
    ax_run.set(title=f"running mean per chain (R-hat {result.rhat:.3f}, ESS {result.ess:.0f})",
               xlabel="draw", ylabel="nβ(L − L(w*))")
    ax_run.legend(fontsize=7)

    per_chain = result.llc_per_chain
    below = result.fraction_below_init if result.fraction_below_init is not None else np.zeros_like(per_chain)
    colors = np.where(below > ESCAPE_FRACTION, "tab:red", "tab:blue")
    idx = np.arange(per_chain.size)
    ax_chain.bar(idx, per_chain, color=colors)
    ax_chain.axhline(result.llc_mean, color="k", lw=1)
    ax_chain.set(title="λ̂ per chain (red: >5% draws below L(w*))", xlabel="chain", ylabel="λ̂")
    ax_b = ax_chain.twinx()
    ax_b.plot(idx, 100 * below, "k.", ms=3)
    ax_b.set_ylabel("% draws below L(w*)", fontsize=8)

    if trace is not None:
        dist = trace.distance
        ax_dist.plot(dist.mean(0), "k", lw=1.2, label="mean over chains")
        for chain in dist[:8]:
            ax_dist.plot(chain, lw=0.4, alpha=0.5)
        ax_dist.set(title="distance from w*", xlabel="draw", ylabel="||w − w*||")
        ax_dist.legend(fontsize=7)
        series = [("noise ||√ε ξ||", trace.noise_norm), ("drift ||(ε/2)F||", trace.drift_norm)]
        for key, label in (("grad_term_norm", "loss ||(ε/2)nβ∇L||"),
                           ("localization_term_norm", "localization ||(ε/2)γ(w−w*)||")):
            if key in trace.records:
                series.append((label, trace.records[key]))
        for label, values in series:
            mean = values.mean(0)
            if np.all(mean > 0):
                ax_terms.plot(mean, lw=1, label=label)
        ax_terms.set_yscale("log")
        ax_terms.set(title="sizes of the step's terms (mean over chains)", xlabel="draw")
        ax_terms.legend(fontsize=7)
        acc = trace.records.get("acceptance")
        if acc is not None and np.isfinite(acc).any():
            ok = np.isfinite(acc)
            per = np.where(ok, acc, 0).sum(1) / np.maximum(ok.sum(1), 1)
            ax_acc.bar(np.arange(per.size), per)
            label = "MALA acceptance rate" if result.sampler == "mala" else \
                "MALA acceptance of the SGLD moves (diagnostic)"
            ax_acc.set(title=label, xlabel="chain", ylim=(min(0.0, per.min()), 1.02))
        else:
            ax_acc.text(0.5, 0.5, "no acceptance probabilities\n(minibatch or non-Langevin sampler)",
                        ha="center", va="center", transform=ax_acc.transAxes)
            ax_acc.set_axis_off()
    fig.suptitle(result.summary(), fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
