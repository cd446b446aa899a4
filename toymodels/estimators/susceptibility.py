"""Susceptibilities, Bayesian influence and weight-restricted sampling from SGLD draws.

Convention (Baker et al., "Structural inference: interpreting small language models with
susceptibilities", arXiv 2504.18274). Perturb the loss ``L^h = L + h ΔL`` — for a
data mixture ``q_h = (1 − h) q + h q'`` one has ``ΔL = L_{q'} − L_q`` — and let
``p_h ∝ exp(−nβ L^h − γ/2 ||w − w*||²) φ(w)``. The **susceptibility** of an observable ``φ`` is::

    χ = −Cov_{p_0}(φ, ΔL),

and fluctuation–dissipation (differentiate the log-normaliser; exact for any posterior) gives the
**Jacobian** of the posterior mean::

    ∂_h E_{p_h}[φ] |_{h=0} = nβ χ = −nβ Cov_{p_0}(φ, ΔL).

Per-sample version, the **Bayesian influence function** (Kreer et al., arXiv 2509.26544):
``BIF(z_i, φ) = −Cov(ℓ_i, φ)`` for per-sample losses ``ℓ_i`` with ``L = (1/n) Σ_i ℓ_i``; with
weights ``(1 + ε_i)`` on the per-sample losses, ``∂_{ε_i} E[φ] = −β Cov(φ, ℓ_i) = β BIF`` with
``β = nβ / n``. The per-sample contributions add up: for ``ΔL = Σ_i a_i ℓ_i`` (a data source is
such a combination of per-sample losses), ``χ = Σ_i a_i BIF_i`` on the same draws, exactly.

Estimator. Over all ``C`` chains × ``T`` draws (the same draws that give the LLC)::

    χ̂ = −(1/(CT)) Σ_{c,t} (φ_ct − φ̄)(ΔL_ct − ΔL̄).

Its Monte-Carlo standard error is the ESS-based MCSE of the mean of the centred product series
``(φ − φ̄)(ΔL − ΔL̄)`` — arviz's ``mcse(method="mean")``, i.e. ``sd / sqrt(ESS)`` with the ESS
of the mean (split chains, Geyer's initial monotone sequence; Vehtari et al. 2021, Bayesian
Analysis 16(2)) — which accounts for autocorrelation within chains. Plugging in the sample means
``φ̄, ΔL̄`` changes the estimate by ``O(1/(CT))``, below the MCSE; the MCSE leaves out the
uncertainty of those means, a term of the same small order.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from arviz_stats.base import array_stats
from torch.func import functional_call

from toymodels.estimators.llc import LLCResult, default_nbeta, estimate_llc, make_objective
from toymodels.objectives.objective import ModuleObjective, parameter_mask
from toymodels.sampling.driver import SamplingTrace

__all__ = [
    "FiniteDifferenceResult",
    "PrincipalComponents",
    "SusceptibilityResult",
    "bayesian_influence",
    "component_llcs",
    "finite_difference_response",
    "module_loss_function",
    "per_sample_loss_function",
    "restricted_potential",
    "susceptibilities",
    "susceptibilities_from_trace",
]

# prefixes of the names under which the observables and perturbations are recorded in the trace
OBSERVABLE_PREFIX = "phi:"
PERTURBATION_PREFIX = "dL:"


# ----------------------------------------------------------------------------- results


@dataclass
class PrincipalComponents:
    """Principal components of a response matrix (Baker et al. arXiv 2504.18274, §5).

    The perturbations (data sources or samples) are the observations and the observables the
    variables: with ``X = χᵀ`` (perturbations × observables), centred over the perturbations when
    ``centered``, ``X = U S Vᵀ`` and

    * ``loadings[k]`` (``V[:, k]``) is the k-th pattern over the observables,
    * ``scores[:, k]`` (``U[:, k] S_k``) the coordinate of each perturbation along it,
    * ``explained_variance_ratio[k] = S_k² / Σ S²``.

    Signs are fixed so that the largest-magnitude loading of each component is positive.
    """

    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    loadings: np.ndarray  #: (k, num_observables)
    scores: np.ndarray  #: (num_perturbations, k)
    observable_names: list[str]
    perturbation_names: list[str]
    centered: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


@dataclass
class SusceptibilityResult:
    """Susceptibilities ``χ = −Cov(φ_a, ΔL_b)`` of observables × perturbations, with MCSE.

    ``chi[a, b]`` is the estimate, ``mcse[a, b]`` its Monte-Carlo standard error and ``ess[a, b]``
    the effective sample size of the centred product series. ``response_scale`` turns ``χ`` into
    the response of the posterior mean: ``jacobian = response_scale · chi`` with
    ``response_scale = nβ`` for perturbations of the (mean) loss, ``∂_h E[φ] = nβ χ``, and
    ``β = nβ / n`` for per-sample losses (Bayesian influence), ``∂_{ε_i} E[φ] = β BIF_i``.
    ``llc`` is the LLC estimate from the same draws when they came from :func:`susceptibilities`.
    The draws themselves (``observable_draws``, ``perturbation_draws``; quantity × chains × draws)
    are kept so that :meth:`combine` can form new perturbations without sampling again.
    """

    chi: np.ndarray
    mcse: np.ndarray
    ess: np.ndarray
    observable_names: list[str]
    perturbation_names: list[str]
    nbeta: float
    response_scale: float
    observable_means: np.ndarray
    perturbation_means: np.ndarray
    num_chains: int
    num_draws: int
    kind: str = "susceptibility"
    llc: LLCResult | None = field(default=None, repr=False)
    observable_draws: np.ndarray | None = field(default=None, repr=False)
    perturbation_draws: np.ndarray | None = field(default=None, repr=False)

    def diagnose(self, echo=print):
        """Findings about this estimate: those of its LLC run (frozen chains, convergence, …)
        and non-finite susceptibilities or MCSEs, named by observable and perturbation."""
        from toymodels.estimators.diagnose import Diagnosis, Finding

        findings = list(self.llc.diagnose(echo=None).findings) if self.llc is not None else []
        bad = [(a, b) for a, b in zip(*np.nonzero(~(np.isfinite(self.chi) & np.isfinite(self.mcse))))]
        if bad:
            named = ", ".join(f"χ[{self.observable_names[a]}, {self.perturbation_names[b]}]"
                              for a, b in bad[:5])
            findings.append(Finding(
                "nonfinite_susceptibility", "problem",
                f"{len(bad)} of {self.chi.size} susceptibilities or their MCSEs are not finite "
                f"({named}{', …' if len(bad) > 5 else ''}).",
                "An observable or perturbation returned inf/NaN at some draw, or there were fewer "
                "than 4 draws: check those functions near w* and use more draws."))
        diagnosis = Diagnosis(findings=findings, numbers=dict(nonfinite=len(bad)))
        if echo is not None:
            echo(str(diagnosis))
        return diagnosis

    @property
    def jacobian(self) -> np.ndarray:
        """``∂E[φ_a]/∂h_b = response_scale · χ[a, b]`` (fluctuation–dissipation)."""
        return self.response_scale * self.chi

    @property
    def jacobian_mcse(self) -> np.ndarray:
        return self.response_scale * self.mcse

    @property
    def bif(self) -> np.ndarray:
        """For per-sample perturbations, the Bayesian influence ``BIF(z_i, φ) = −Cov(ℓ_i, φ)``
        (the same array as ``chi``; named for readers of Kreer et al. arXiv 2509.26544)."""
        return self.chi

    def entry(self, observable: str, perturbation: str) -> tuple[float, float]:
        """``(χ, MCSE)`` of one named entry."""
        a = _index_of(observable, self.observable_names, "observable")
        b = _index_of(perturbation, self.perturbation_names, "perturbation")
        return float(self.chi[a, b]), float(self.mcse[a, b])

    def principal_components(self, num_components: int | None = None, *,
                             centered: bool = True) -> PrincipalComponents:
        """Principal components of the response matrix over the perturbations.

        ``centered=True`` subtracts each observable's mean over the perturbations first (PCA, as
        for per-token susceptibilities in Baker et al.); ``centered=False`` is the plain SVD of
        ``χ``, whose leading directions are the best low-rank approximation of the matrix itself.
        """
        x = self.chi.T.copy()  # perturbations × observables
        if centered:
            if x.shape[0] < 2:
                raise ValueError("a centred PCA needs at least two perturbations; pass centered=False")
            x -= x.mean(axis=0, keepdims=True)
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        rank_cap = len(s)
        if num_components is None:
            num_components = rank_cap
        if isinstance(num_components, bool) or not isinstance(num_components, int) or not (
                1 <= num_components <= rank_cap):
            raise ValueError(f"num_components must be an integer in [1, {rank_cap}], got {num_components!r}")
        u, s, vt = u[:, :num_components], s[:num_components], vt[:num_components]
        signs = np.sign(vt[np.arange(len(s)), np.abs(vt).argmax(axis=1)])
        signs[signs == 0] = 1.0
        vt, u = vt * signs[:, None], u * signs[None, :]
        total = float(np.sum(np.linalg.svd(x, compute_uv=False) ** 2))
        ratio = s**2 / total if total > 0 else np.zeros_like(s)
        return PrincipalComponents(
            singular_values=s, explained_variance_ratio=ratio, loadings=vt, scores=u * s,
            observable_names=list(self.observable_names),
            perturbation_names=list(self.perturbation_names), centered=centered,
        )

    def combine(self, weights, names: Sequence[str] | None = None, *,
                response_scale: float | None = None) -> SusceptibilityResult:
        """Susceptibilities of the perturbations ``ΔL'_k = Σ_b weights[k, b] ΔL_b`` from the
        same draws (e.g. a data source ``ΔL = Σ_i a_i ℓ_i`` from per-sample losses).

        Covariance is linear, so ``chi' = chi @ weightsᵀ`` up to rounding; the MCSE is recomputed
        from the combined series. ``response_scale`` of the new result defaults to this one's;
        a data-source perturbation of the mean loss built from per-sample losses
        (``ΔL = (1/n) Σ_i a_i ℓ_i``: ``weights = a / n``) responds with ``∂_h E[φ] = nβ χ'``,
        so pass ``response_scale=result.nbeta`` there.
        """
        if self.perturbation_draws is None or self.observable_draws is None:
            raise ValueError("this result kept no draws; recompute it with keep_draws=True")
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != len(self.perturbation_names):
            raise ValueError(f"weights must have shape (k, {len(self.perturbation_names)}) or "
                             f"({len(self.perturbation_names)},), got {np.shape(weights)}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite")
        if names is None:
            names = [f"combination[{k}]" for k in range(w.shape[0])]
        names = list(names)
        if len(names) != w.shape[0]:
            raise ValueError(f"names must list {w.shape[0]} names, got {len(names)}")
        pert = np.tensordot(w, self.perturbation_draws, axes=(1, 0))
        scale = self.response_scale if response_scale is None else float(response_scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"response_scale must be a positive finite number, got {response_scale!r}")
        return _from_draws(self.observable_draws, pert, list(self.observable_names), names,
                           nbeta=self.nbeta, response_scale=scale,
                           kind="susceptibility" if response_scale is not None else self.kind,
                           llc=self.llc, keep_draws=True)

    def select(self, observables: Sequence[str] | None = None,
               perturbations: Sequence[str] | None = None) -> SusceptibilityResult:
        """The sub-matrix of the named observables × perturbations (``None``: all), a new result."""
        rows = (list(range(len(self.observable_names))) if observables is None else
                [_index_of(n, self.observable_names, "observable") for n in observables])
        cols = (list(range(len(self.perturbation_names))) if perturbations is None else
                [_index_of(n, self.perturbation_names, "perturbation") for n in perturbations])
        if not rows or not cols:
            raise ValueError("select at least one observable and one perturbation")
        out = SusceptibilityResult(**{k: v for k, v in self.__dict__.items()})
        for key in ("chi", "mcse", "ess"):
            setattr(out, key, getattr(self, key)[np.ix_(rows, cols)])
        out.observable_names = [self.observable_names[i] for i in rows]
        out.perturbation_names = [self.perturbation_names[j] for j in cols]
        out.observable_means = self.observable_means[rows]
        out.perturbation_means = self.perturbation_means[cols]
        if self.observable_draws is not None:
            out.observable_draws = self.observable_draws[rows]
        if self.perturbation_draws is not None:
            out.perturbation_draws = self.perturbation_draws[cols]
        return out

    def table(self, max_rows: int = 20, max_cols: int = 8, jacobian: bool = False) -> str:
        """A text table of ``χ ± MCSE`` (or of the Jacobian) for printing."""
        values = self.jacobian if jacobian else self.chi
        errors = self.jacobian_mcse if jacobian else self.mcse
        cols = self.perturbation_names[:max_cols]
        width = max(16, max(len(c) for c in cols) + 2)
        head = " " * 18 + "".join(f"{c[:width - 2]:>{width}}" for c in cols)
        lines = [head]
        for a, name in enumerate(self.observable_names[:max_rows]):
            cells = "".join(f"{f'{values[a, b]:+.3g}±{errors[a, b]:.1g}':>{width}}"
                            for b in range(len(cols)))
            lines.append(f"{name[:17]:<18}{cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the draws and the LLC trace left out; the LLC as its dict)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in ("observable_draws", "perturbation_draws"):
                continue
            if key == "llc":
                value = None if value is None else value.to_dict()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[key] = value
        out["jacobian"] = self.jacobian.tolist()
        out["jacobian_mcse"] = self.jacobian_mcse.tolist()
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


@dataclass
class FiniteDifferenceResult:
    """``(E_{+δ}[φ] − E_{−δ}[φ]) / (2δ)`` from two sampling runs at ``L ± δ ΔL``.

    ``mcse`` is the ESS-based MCSE of the mean of the paired difference series
    ``(φ⁺_ct − φ⁻_ct) / (2δ)`` (chain c, draw t of each run). Pairing is valid whether or not the
    two runs share their random numbers, and with common random numbers (the default: the same
    seed) it credits the correlation that makes the difference precise. The central difference
    has an ``O(δ²)`` bias from the curvature of ``h ↦ E_h[φ]``, which this MCSE does not include.
    """

    derivative: np.ndarray
    mcse: np.ndarray
    mean_plus: np.ndarray
    mean_minus: np.ndarray
    delta: float
    observable_names: list[str]
    nbeta: float
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------- estimators


def susceptibilities(
    target,
    *,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    perturbations: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    baseline: Callable[[torch.Tensor], torch.Tensor] | None = None,
    keep_draws: bool = True,
    **sampler_kwargs,
) -> SusceptibilityResult:
    """Susceptibilities ``χ = −Cov(φ, ΔL)`` and the LLC from one sampling run.

    Runs :func:`toymodels.estimate_llc` once (``target`` and ``sampler_kwargs`` as there:
    ``init``, ``data``, ``loss_fn``, ``nbeta``, ``step_size``, ``localization``, ``num_chains``,
    ``num_draws``, ``restrict_to``, ...), records every observable and perturbation at every draw,
    and estimates the response matrix (observables × perturbations) over all chains × draws.
    Sign convention and factor: ``χ = −Cov(φ, ΔL)`` and ``∂_h E_{p_h}[φ] = nβ χ`` for
    ``L^h = L + h ΔL`` (Baker et al. arXiv 2504.18274); ``result.jacobian`` is ``nβ χ``.

    Args:
        observables: ``{name: φ(w)}``, each a torch function of one flat ``(d,)`` vector (it is
            vmapped over chains). A function returning a tensor of ``k > 1`` entries gives ``k``
            observables, named ``name[i]`` (``name[i,j]`` for matrices).
        perturbations: ``{name: ΔL(w)}`` likewise; ``ΔL = L_{q'} − L_q`` for a data source
            ``q'``, or, with ``baseline``, the source losses ``L_{q'}`` themselves.
        baseline: optional ``L_q(w)``; when given, each perturbation is ``f(w) − baseline(w)``.
            (It matters: ``Cov(φ, L_{q'})`` alone is not the response to a mixture shift.)
        keep_draws: keep the recorded series on the result (for :meth:`SusceptibilityResult.combine`).

    Restricting the sampler (``restrict_to=`` parameter names, module prefixes or a boolean mask)
    gives component-localised susceptibilities: the posterior over that component with the rest
    of the weights fixed at ``w*`` (Baker et al. §3).
    """
    recorded = _recording_observables(observables, perturbations, baseline)
    if "observables" in sampler_kwargs:
        raise ValueError("pass the observables as observables=..., not inside the sampler kwargs")
    result = estimate_llc(target, observables=recorded, **sampler_kwargs)
    return susceptibilities_from_trace(
        result.trace, llc=result, baseline=OBSERVABLE_PREFIX + "__baseline__" if baseline else None,
        keep_draws=keep_draws,
    )


def bayesian_influence(
    target,
    *,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    per_sample_losses: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int | None = None,
    keep_draws: bool = True,
    **sampler_kwargs,
) -> SusceptibilityResult:
    """Bayesian influence ``BIF(z_i, φ) = −Cov(ℓ_i, φ)`` of every sample on every observable.

    ``per_sample_losses(w)`` maps one flat vector to the ``(n,)`` per-sample losses ``ℓ_i(w)``,
    with the sampled loss ``L = (1/n) Σ_i ℓ_i`` (for a network see
    :func:`per_sample_loss_function`). Kreer et al. arXiv 2509.26544: with weights
    ``(1 + ε_i)`` on the per-sample losses, ``∂_{ε_i} E[φ] = −β Cov(φ, ℓ_i) = β BIF``; the result
    has ``chi = BIF`` (observables × samples) and ``response_scale = β = nβ / n``, so
    ``result.jacobian[a, i] = ∂_{ε_i} E[φ_a]``. For a quadratic loss, linear ``φ`` and ``γ = 0``
    this equals the classical influence ``−∇φᵀ (nA)⁻¹ ∇ℓ_i`` exactly
    (:func:`theory.susceptibility.bayesian_influence_gaussian`). ``n`` is the length of the
    per-sample output unless ``num_samples`` says otherwise. Samples are named ``sample[i]``.
    The LLC from the same run is ``result.llc``.
    """
    if not callable(per_sample_losses):
        raise ValueError("per_sample_losses must be a function w -> (n,) tensor of per-sample losses")
    _check_per_sample_mean(target, per_sample_losses, sampler_kwargs)
    result = susceptibilities(target, observables=observables,
                              perturbations={"sample": per_sample_losses},
                              keep_draws=keep_draws, **sampler_kwargs)
    n = len(result.perturbation_names)
    if num_samples is None:
        num_samples = n
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    result.response_scale = result.nbeta / num_samples
    result.kind = "bayesian_influence"
    if n == 1:
        result.perturbation_names = ["sample[0]"]
    return result


def _check_per_sample_mean(target, per_sample_losses, sampler_kwargs) -> None:
    """The contract of :func:`bayesian_influence`: ``mean_i ℓ_i(w*) = L(w*)``, checked before sampling.

    Per-sample losses whose mean is not the sampled loss give covariances with the wrong
    functions, and a BIF that looks fine; a sum instead of a mean, or another model's losses,
    fail here with the two numbers.
    """
    objective = make_objective(target, init=sampler_kwargs.get("init"), data=sampler_kwargs.get("data"),
                               loss_fn=sampler_kwargs.get("loss_fn"))
    w_star = objective.center
    with torch.no_grad():
        per_sample = per_sample_losses(w_star.clone())
        if not isinstance(per_sample, torch.Tensor) or per_sample.dim() != 1 or per_sample.numel() < 1:
            shape = tuple(per_sample.shape) if isinstance(per_sample, torch.Tensor) else type(per_sample).__name__
            raise ValueError(f"per_sample_losses(w) must return an (n,) tensor of losses, got {shape}")
        mean = float(per_sample.double().mean())
        loss = float(objective.full_loss(w_star.unsqueeze(0))[0])
    tol = 1e-4 if w_star.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9
    if abs(mean - loss) > tol * (abs(mean) + abs(loss)) + 1e-12:
        raise ValueError(
            f"the mean of per_sample_losses at w* is {mean:.6g} but the sampled loss there is "
            f"{loss:.6g}: the BIF needs L = (1/n) Σ_i ℓ_i (the same model, data and reduction). "
            "For a network, per_sample_loss_function(model, inputs, targets, loss_fn) builds them")


def susceptibilities_from_trace(
    trace: SamplingTrace,
    *,
    observables: Sequence[str] | None = None,
    perturbations: Sequence[str] | None = None,
    baseline: str | None = None,
    discard_draws: int = 0,
    llc: LLCResult | None = None,
    response_scale: float | None = None,
    keep_draws: bool = True,
) -> SusceptibilityResult:
    """Re-analyse a trace's recorded observables into susceptibilities (no sampling).

    ``observables`` and ``perturbations`` are keys of ``trace.observables``; by default those
    recorded by :func:`susceptibilities` (prefixes ``phi:`` and ``dL:``). ``baseline`` is a key
    subtracted from every perturbation. ``discard_draws`` drops that many leading draws of every
    chain (a further burn-in). ``response_scale`` defaults to ``nβ`` (see
    :class:`SusceptibilityResult`).
    """
    if not isinstance(trace, SamplingTrace):
        raise ValueError(f"trace must be a SamplingTrace (result.trace), got {type(trace).__name__}")
    recorded = trace.observables
    if observables is None:
        observables = [k for k in recorded if k.startswith(OBSERVABLE_PREFIX) and k != baseline]
    if perturbations is None:
        perturbations = [k for k in recorded if k.startswith(PERTURBATION_PREFIX)]
    for role, keys in (("observables", observables), ("perturbations", perturbations)):
        if isinstance(keys, str):
            raise ValueError(f"{role} must be a list of trace keys, got the string {keys!r}")
        if len(keys) == 0:
            raise ValueError(f"no {role} to analyse; the trace records {sorted(recorded)}")
        missing = [k for k in keys if k not in recorded]
        if missing:
            raise ValueError(f"{role} {missing} are not in the trace; it records {sorted(recorded)}")
    if baseline is not None and baseline not in recorded:
        raise ValueError(f"baseline {baseline!r} is not in the trace; it records {sorted(recorded)}")
    if isinstance(discard_draws, bool) or not isinstance(discard_draws, int) or not (
            0 <= discard_draws < trace.num_draws):
        raise ValueError(f"discard_draws must be an integer in [0, {trace.num_draws}), got {discard_draws!r}")

    obs, obs_names = _stack(recorded, observables, OBSERVABLE_PREFIX, discard_draws)
    pert, pert_names = _stack(recorded, perturbations, PERTURBATION_PREFIX, discard_draws)
    if baseline is not None:
        base = recorded[baseline][:, discard_draws:]
        if base.ndim != 2:
            raise ValueError(f"baseline {baseline!r} must be a scalar per draw, got shape {base.shape[2:]}")
        pert = pert - base[None]
    nbeta = trace.hyper.nbeta
    return _from_draws(obs, pert, obs_names, pert_names, nbeta=nbeta,
                       response_scale=nbeta if response_scale is None else float(response_scale),
                       kind="susceptibility", llc=llc, keep_draws=keep_draws)


def finite_difference_response(
    target,
    *,
    observables: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    perturbation: Callable[[torch.Tensor], torch.Tensor],
    delta: float,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    nbeta: float | None = None,
    restrict_to=None,
    **sampler_kwargs,
) -> FiniteDifferenceResult:
    """``∂_h E_{p_h}[φ]`` by a central difference of posteriors sampled at ``L ± δ ΔL``.

    The independent check of fluctuation–dissipation (Baker et al. arXiv 2504.18274): compare with
    ``nβ χ = −nβ Cov_{p_0}(φ, ΔL)`` from :func:`susceptibilities` at ``h = 0``. Both runs use the
    same sampler settings and seed (common random numbers), so SGLD's step-size bias enters both
    alike. ``target`` is a potential (with ``init`` and ``nbeta``) or a network (with ``data`` and
    ``loss_fn``, full batch); ``perturbation`` is one scalar ``ΔL(w)``.
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (0 < delta < math.inf):
        raise ValueError(f"delta must be a positive finite number, got {delta!r}")
    if not callable(perturbation):
        raise ValueError("perturbation must be one function w -> scalar ΔL(w)")
    if "batch_size" in sampler_kwargs and sampler_kwargs["batch_size"] is not None:
        raise ValueError("finite_difference_response samples full-batch potentials; drop batch_size")
    sampler_kwargs.pop("batch_size", None)
    if "observables" in sampler_kwargs:
        raise ValueError("pass the observables as observables=..., not inside the sampler kwargs")
    base, center, num_samples, mask = _as_potential(target, init=init, data=data, loss_fn=loss_fn,
                                                    restrict_to=restrict_to)
    if nbeta is None:
        if num_samples is None:
            raise ValueError("nbeta is required for a potential (there is no dataset size to default from)")
        nbeta = default_nbeta(num_samples)
    recorded = _recording_observables(observables, {}, None)
    runs = []
    for h in (+delta, -delta):
        def shifted(w, h=h):
            return base(w).reshape(()) + h * perturbation(w).reshape(())

        runs.append(estimate_llc(shifted, init=center, nbeta=nbeta, restrict_to=mask,
                                 observables=recorded, **sampler_kwargs))
    plus, names = _stack(runs[0].trace.observables, list(recorded), OBSERVABLE_PREFIX, 0)
    minus, _ = _stack(runs[1].trace.observables, list(recorded), OBSERVABLE_PREFIX, 0)
    if plus.shape != minus.shape:
        raise ValueError(
            f"the two runs kept different chains ({runs[0].dropped_chains} and "
            f"{runs[1].dropped_chains} dropped); lower step_size so that no chain diverges")
    diff = (plus - minus) / (2 * delta)
    _, mcse, _ = _mean_mcse_ess(diff)
    return FiniteDifferenceResult(
        derivative=diff.mean(axis=(1, 2)), mcse=mcse, mean_plus=plus.mean(axis=(1, 2)),
        mean_minus=minus.mean(axis=(1, 2)), delta=float(delta), observable_names=names,
        nbeta=float(nbeta), seconds=runs[0].seconds + runs[1].seconds,
    )


# ----------------------------------------------------------------------------- restriction


def restricted_potential(potential: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
                         mask) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The potential as a function of the masked coordinates alone, the rest fixed at ``init``.

    Returns ``(potential_sub, init_sub)`` with ``potential_sub(v) = potential(w)`` where
    ``w[mask] = v`` and ``w[~mask] = init[~mask]``. Sampling ``potential_sub`` is the direct
    computation that weight-restricted sampling (``restrict_to=mask``) must agree with. A batched
    potential (``potential.batched``) stays batched.
    """
    init = torch.as_tensor(init)
    if init.dim() != 1:
        raise ValueError(f"init must be one flat vector, got shape {tuple(init.shape)}")
    mask = _as_mask(mask, init.numel())
    index = mask.nonzero().flatten()
    # embedding (k, d): w = init + (v − init[mask]) @ embed, one matrix product that works for a
    # single vector and for a (chains, k) batch alike
    embed = torch.zeros(index.numel(), init.numel(), dtype=init.dtype)
    embed[torch.arange(index.numel()), index] = 1.0
    init_sub = init[index].clone()

    def potential_sub(v: torch.Tensor) -> torch.Tensor:
        return potential(init.to(v.dtype) + (v - init_sub.to(v.dtype)) @ embed.to(v.dtype))

    potential_sub.batched = bool(getattr(potential, "batched", False))  # type: ignore[attr-defined]
    return potential_sub, init_sub


def component_llcs(target, components: Mapping[str, Any], **sampler_kwargs) -> dict[str, LLCResult]:
    """Per-component LLCs: ``estimate_llc(target, restrict_to=components[name])`` for each name.

    A component is a list of parameter names or module prefixes (networks) or a boolean mask.
    Each is sampled with the other weights fixed at ``w*`` (the weight-restricted posterior).
    """
    if not isinstance(components, Mapping) or not components:
        raise ValueError("components must be a non-empty {name: parameter names or mask} mapping")
    if "restrict_to" in sampler_kwargs:
        raise ValueError("component_llcs sets restrict_to itself; give the components instead")
    return {name: estimate_llc(target, restrict_to=part, **sampler_kwargs)
            for name, part in components.items()}


# ----------------------------------------------------------------------------- networks


def module_loss_function(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """``L(w) = loss_fn(model_w(inputs), targets)`` as a function of the flat parameter vector.

    The flat vector is laid out as the sampler lays it out (the trainable parameters in
    ``named_parameters()`` order), so the function can be an observable or a perturbation
    (e.g. the loss on another data source, ``ΔL = L_{q'} − L_q``).
    """
    return _ModuleFunction(model, inputs, targets, loss_fn, per_sample=False)


def per_sample_loss_function(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                             per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """``w ↦ (ℓ_1(w), …, ℓ_n(w))`` with ``per_sample_loss(outputs, targets) -> (n,)``.

    For :func:`bayesian_influence`; the batch-mean of these must be the sampled loss.
    """
    return _ModuleFunction(model, inputs, targets, per_sample_loss, per_sample=True)


class _ModuleFunction:
    """A loss of a network's flat parameter vector (layout of :class:`ModuleObjective`)."""

    def __init__(self, model, inputs, targets, loss_fn, per_sample):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError("the loss must be callable as loss(outputs, targets)")
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise ValueError("inputs and targets must be tensors")
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(f"inputs and targets must be non-empty with the same length, got "
                             f"{inputs.shape[0]} and {targets.shape[0]}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters")
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self.model, self.inputs, self.targets, self.loss_fn = model, inputs, targets, loss_fn
        with torch.no_grad():
            value = loss_fn(model(inputs), targets)
        expected = (inputs.shape[0],) if per_sample else ()
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            what = "per-sample losses of shape (n,)" if per_sample else "the scalar batch-mean loss"
            raise ValueError(f"the loss must return {what} = {expected}, got {shape}")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels):
            params[name] = w[start : start + numel].view(shape)
            start += numel
        out = functional_call(self.model, (params, self.frozen, self.buffers), (self.inputs,))
        return self.loss_fn(out, self.targets)


# ----------------------------------------------------------------------------- internals


def _recording_observables(observables, perturbations, baseline) -> dict[str, Callable]:
    for role, fns in (("observables", observables), ("perturbations", perturbations)):
        if not isinstance(fns, Mapping):
            raise ValueError(f"{role} must be a {{name: function of w}} dict, got {type(fns).__name__}")
        for name, fn in fns.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"{role} names must be non-empty strings, got {name!r}")
            if not callable(fn):
                raise ValueError(f"{role}[{name!r}] must be a function of the flat parameters")
    if not observables:
        raise ValueError("give at least one observable: observables={name: phi(w)}")
    if baseline is not None and not callable(baseline):
        raise ValueError("baseline must be a function w -> L_q(w)")
    recorded = {OBSERVABLE_PREFIX + k: fn for k, fn in observables.items()}
    recorded.update({PERTURBATION_PREFIX + k: fn for k, fn in perturbations.items()})
    if baseline is not None:
        recorded[OBSERVABLE_PREFIX + "__baseline__"] = baseline
    return recorded


def _stack(recorded: Mapping[str, np.ndarray], keys: Sequence[str], prefix: str,
           discard: int) -> tuple[np.ndarray, list[str]]:
    """``(quantities, chains, draws)`` from recorded arrays of shape ``(chains, draws, ...)``."""
    series, names = [], []
    for key in keys:
        arr = np.asarray(recorded[key], dtype=np.float64)[:, discard:]
        if arr.ndim < 2:
            raise ValueError(f"{key!r} is not a (chains, draws, ...) record")
        label = key[len(prefix):] if key.startswith(prefix) else key
        extra = arr.shape[2:]
        flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
        if flat.shape[2] == 0:
            raise ValueError(f"{label!r} returned an empty tensor")
        for j in range(flat.shape[2]):
            series.append(flat[:, :, j])
            if int(np.prod(extra)) == 1 and len(extra) <= 1:
                names.append(label)
            else:
                idx = np.unravel_index(j, extra)
                names.append(f"{label}[{','.join(str(int(i)) for i in idx)}]")
    return np.stack(series), names


def _mean_mcse_ess(series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, ESS-based MCSE and ESS of the mean of each ``(chains, draws)`` series in a
    ``(k, chains, draws)`` stack. The ESS is arviz-stats' ``ess(method="mean")`` (split chains,
    Geyer's initial monotone sequence) and the MCSE ``sd / sqrt(ESS)`` with ``sd`` at ddof = 1,
    which is what arviz's ``mcse(method="mean")`` computes (one ESS evaluation instead of two).
    As :func:`toymodels.chain_diagnostics`: a constant series has MCSE 0, fewer than 4 draws NaN.
    """
    mean = series.mean(axis=(1, 2))
    k, _, draws = series.shape
    mcse = np.full(k, np.nan)
    ess = np.full(k, np.nan)
    if draws < 4:
        return mean, mcse, ess
    finite = np.isfinite(series).all(axis=(1, 2))
    constant = finite & (np.ptp(series.reshape(k, -1), axis=1) == 0)
    mcse[constant], ess[constant] = 0.0, float(series[0].size)
    varying = finite & ~constant
    if varying.any():
        with warnings.catch_warnings():
            # arviz-stats warns on few chains; the numbers are still the ones we report
            warnings.simplefilter("ignore")
            sub = series[varying]
            ess[varying] = array_stats.ess(sub, chain_axis=-2, draw_axis=-1, method="mean")
            sd = sub.reshape(sub.shape[0], -1).std(axis=1, ddof=1)
            mcse[varying] = sd / np.sqrt(ess[varying])
    return mean, mcse, ess


# products of (observable, perturbation) series are formed this many numbers at a time, so that a
# large response matrix (or per-sample influence over many samples) never holds all P·Q product
# series in memory at once
_PRODUCT_CHUNK = 2**22


def _from_draws(obs: np.ndarray, pert: np.ndarray, obs_names, pert_names, *, nbeta,
                response_scale, kind, llc, keep_draws) -> SusceptibilityResult:
    # an observable that returned inf/NaN gives NaN entries here, reported by
    # SusceptibilityResult.diagnose(); numpy's warnings about them are expected, not news
    with np.errstate(invalid="ignore", over="ignore"):
        return _from_draws_unchecked(obs, pert, obs_names, pert_names, nbeta=nbeta,
                                     response_scale=response_scale, kind=kind, llc=llc,
                                     keep_draws=keep_draws)


def _from_draws_unchecked(obs, pert, obs_names, pert_names, *, nbeta, response_scale, kind, llc,
                          keep_draws) -> SusceptibilityResult:
    num_obs, chains, draws = obs.shape
    num_pert = pert.shape[0]
    obs_mean = obs.mean(axis=(1, 2))
    pert_mean = pert.mean(axis=(1, 2))
    obs_c = obs - obs_mean[:, None, None]
    pert_c = pert - pert_mean[:, None, None]
    cov = np.empty((num_obs, num_pert))
    mcse = np.empty((num_obs, num_pert))
    ess = np.empty((num_obs, num_pert))
    cols = max(1, _PRODUCT_CHUNK // (chains * draws))
    for a in range(num_obs):
        for lo in range(0, num_pert, cols):
            hi = min(num_pert, lo + cols)
            # the centred product series (φ_a − φ̄_a)(ΔL_b − ΔL̄_b), b in [lo, hi)
            products = obs_c[a][None] * pert_c[lo:hi]
            cov[a, lo:hi], mcse[a, lo:hi], ess[a, lo:hi] = _mean_mcse_ess(products)
    return SusceptibilityResult(
        chi=-cov, mcse=mcse, ess=ess, observable_names=list(obs_names),
        perturbation_names=list(pert_names), nbeta=float(nbeta),
        response_scale=float(response_scale), observable_means=obs_mean,
        perturbation_means=pert_mean, num_chains=chains, num_draws=draws, kind=kind, llc=llc,
        observable_draws=obs if keep_draws else None,
        perturbation_draws=pert if keep_draws else None,
    )


def _index_of(name: str, names: list[str], role: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise ValueError(f"unknown {role} {name!r}; the result has {names}") from None


def _as_mask(mask, dim: int) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool or mask.shape != (dim,):
        raise ValueError(f"mask must be a boolean tensor of shape ({dim},), got {mask.dtype} "
                         f"of shape {tuple(mask.shape)}")
    if not mask.any():
        raise ValueError("mask selects no parameter")
    return mask


def _as_potential(target, *, init, data, loss_fn, restrict_to):
    """``(potential(w), w*, n or None, mask or None)`` for a potential or a full-batch network."""
    objective = make_objective(target, init=init, data=data, loss_fn=loss_fn)
    mask = None
    if restrict_to is not None:
        if isinstance(restrict_to, torch.Tensor):
            mask = _as_mask(restrict_to, objective.dim)
        elif isinstance(objective, ModuleObjective):
            names = [restrict_to] if isinstance(restrict_to, str) else list(restrict_to)
            mask = parameter_mask(objective, names)
        else:
            raise ValueError("restrict_to by name needs a network; for a potential pass a boolean (d,) mask")
    if isinstance(objective, ModuleObjective):
        potential = _ModuleFunction(objective.model, objective.inputs, objective.targets,
                                    objective.loss_fn, per_sample=False)
        return potential, objective.center, objective.num_samples, mask
    return objective.potential, objective.center, None, mask
