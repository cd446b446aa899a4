"""What the susceptibility estimators return: :class:`SusceptibilityResult` (the response matrix
with its MCSEs, principal components, combinations), :class:`PrincipalComponents` and
:class:`FiniteDifferenceResult`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toymodels.estimators.diagnose import Diagnosis, Finding
from toymodels.estimators.llc_result import LLCResult
from toymodels.estimators.susceptibility.statistics import covariances

__all__ = ["PrincipalComponents", "SusceptibilityResult", "FiniteDifferenceResult", "from_draws"]


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
        return from_draws(self.observable_draws, pert, list(self.observable_names), names,
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


def from_draws(obs: np.ndarray, pert: np.ndarray, obs_names, pert_names, *, nbeta,
               response_scale, kind, llc, keep_draws) -> SusceptibilityResult:
    """The :class:`SusceptibilityResult` of observable and perturbation draws
    (``(quantities, chains, draws)`` each): ``chi = −cov`` (:func:`covariances`)."""
    obs_mean, pert_mean, cov, mcse, ess = covariances(obs, pert)
    _, chains, draws = obs.shape
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

