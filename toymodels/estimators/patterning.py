"""Patterning: choose the data mixture that moves chosen observables by a target amount.

Wang & Murfet, "Patterning: The Dual of Interpretability" (arXiv 2601.13548); Elliott & Murfet's
primer (arXiv 2605.07980) gives the same relation. Susceptibilities give the linear response of
posterior expectations to the data distribution (:mod:`toymodels.estimators.susceptibility`)::

    dμ = J dh,      J = nβ χ,      χ[a, b] = −Cov(φ_a, ΔL_b),

for the mixture ``q_h = q + Σ_b h_b (q_b − q)`` (so ``ΔL_b = L_{q_b} − L_q``). Inverting it, the
**minimum-norm intervention** that asks for the change ``dμ`` is ``dh = J⁺ dμ`` (Moore–Penrose):
among all ``dh`` that minimise ``||J dh − dμ||`` it has the least ``||dh||``, so it leaves the
other directions of the data alone as far as first order allows.

Mixture weights. ``h`` are the weights of the sources ``q_1..q_k`` in a mixture whose remaining
weight ``1 − Σ_b h_b`` is the base ``q``; a mixture needs ``h ≥ 0`` and ``Σ_b h_b ≤ 1`` (the
simplex over ``[q, q_1, …, q_k]``). At the current weights ``h₀`` (``0``: the base alone; the
susceptibilities must then be estimated at the posterior of ``q_{h₀}``, still with
``ΔL_b = L_{q_b} − L_q``), the new weights ``h₀ + dh`` must stay in that simplex. Three ways to
handle it, chosen by ``method``:

* ``"scale"``: ``dh = s J⁺ dμ`` with the largest ``s ∈ (0, 1]`` that keeps the weights in the
  simplex (the direction of the minimum-norm solution, shortened). Fails, saying so, when ``s = 0``:
  the unconstrained direction leaves the simplex at once (e.g. it removes a source whose weight
  is already 0).
* ``"constrained"`` (default): the constrained least squares
  ``min ||J dh − dμ||² + ε ||dh||²`` over ``h₀ + dh`` in the simplex (scipy's bounded least
  squares, ``lsq_linear``, and SLSQP when the sum constraint binds), with a small ridge
  ``ε = ridge · ||J||²`` that picks the least-norm solution among equals. Equal to ``J⁺ dμ``
  whenever that is feasible (up to ε).
* ``"unconstrained"``: ``dh = J⁺ dμ`` with no constraint (the new weights may be invalid; for
  tangent directions that are not mixture weights).

Unattainable targets. With ``strict=True`` a target that the chosen ``dh`` meets only partly
(relative residual ``||J dh − dμ|| / ||dμ|| > tolerance``) is refused with the numbers; with
``strict=False`` the closest feasible step is returned and ``result.residual`` says how close.

One-shot or repeated. One call is one first-order step. Repeated patterning re-estimates the
susceptibilities at the new mixture and calls again with ``current=result.weights``;
:func:`repeated_patterning` does that loop for a function that returns ``J`` at given weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Intervention", "minimum_norm_intervention", "repeated_patterning", "PATTERNING_METHODS"]

PATTERNING_METHODS = ("constrained", "scale", "unconstrained")


@dataclass
class Intervention:
    """A patterning step: the change ``dh`` of the source weights and what it predicts.

    ``predicted_change = J dh`` is the first-order change of the observables' posterior means
    (with ``J`` the Jacobian passed in, ``nβ χ``); ``unconstrained = J⁺ dμ``; ``weights`` the new
    source weights ``current + dh`` (the base keeps ``1 − Σ weights``); ``scale`` the fraction of
    the unconstrained step that ``"scale"`` took (1 otherwise); ``residual`` the relative miss
    ``||J dh − dμ|| / ||dμ||``; ``rank`` and ``singular_values`` those of ``J``.
    """

    dh: np.ndarray
    predicted_change: np.ndarray
    target: np.ndarray
    unconstrained: np.ndarray
    weights: np.ndarray
    current: np.ndarray
    scale: float
    residual: float
    rank: int
    singular_values: np.ndarray
    method: str
    observable_names: list[str] | None = None
    source_names: list[str] | None = None
    history: list[Any] = field(default_factory=list, repr=False)

    @property
    def base_weight(self) -> float:
        """The weight ``1 − Σ_b h_b`` left to the base distribution."""
        return float(1.0 - self.weights.sum())

    def to_dict(self) -> dict[str, Any]:
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()
               if k != "history"}
        out["base_weight"] = self.base_weight
        return out


def _jacobian(jacobian) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    names = (None, None)
    if hasattr(jacobian, "jacobian") and hasattr(jacobian, "observable_names"):
        names = (list(jacobian.observable_names), list(jacobian.perturbation_names))
        jacobian = jacobian.jacobian  # a SusceptibilityResult: nβ χ
    try:
        J = np.asarray(jacobian, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"the Jacobian must be a numeric (observables × sources) matrix, got "
                         f"{type(jacobian).__name__}") from None
    if J.ndim == 1:
        J = J[None, :]
    if J.ndim != 2 or J.size == 0:
        raise ValueError(f"the Jacobian must be a non-empty (observables × sources) matrix, got "
                         f"shape {J.shape}: estimate it with susceptibilities(...) first")
    if not np.all(np.isfinite(J)):
        raise ValueError("the Jacobian has non-finite entries; check the susceptibility run "
                         "(result.diagnose())")
    return J, names[0], names[1]


def _vector(value, size: int, name: str, hint: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a vector of {size} numbers, got {value!r}") from None
    if v.ndim == 0 and size == 1:
        v = v[None]
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) ({hint}), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has non-finite entries")
    return v


def _feasible(weights: np.ndarray, atol: float = 1e-12) -> bool:
    return bool(np.all(weights >= -atol) and weights.sum() <= 1 + atol)


def _max_scale(current: np.ndarray, direction: np.ndarray) -> float:
    """The largest ``s ∈ [0, 1]`` with ``current + s·direction`` in ``{h ≥ 0, Σh ≤ 1}``."""
    s = 1.0
    for h, d in zip(current, direction):
        if d < 0:
            s = min(s, h / -d)
    total = direction.sum()
    if total > 0:
        s = min(s, (1.0 - current.sum()) / total)
    return max(0.0, s)


def _constrained(J, target, current, ridge) -> np.ndarray:
    from scipy.optimize import lsq_linear, minimize

    k = J.shape[1]
    eps = ridge * max(float(np.square(J).sum()), 1e-300)
    A = np.vstack([J, math.sqrt(eps) * np.eye(k)])
    b = np.concatenate([target, np.zeros(k)])
    lower = -current
    fit = lsq_linear(A, b, bounds=(lower, np.full(k, np.inf)), method="bvls", tol=1e-14)
    dh = fit.x
    if current.sum() + dh.sum() <= 1 + 1e-12:
        return dh
    # the sum constraint binds: SLSQP from the scaled feasible point
    start = dh * _max_scale(current, dh)

    def objective(x):
        r = A @ x - b
        return float(r @ r), 2 * A.T @ r

    res = minimize(objective, start, jac=True, method="SLSQP",
                   bounds=[(lo, None) for lo in lower],
                   constraints=[{"type": "ineq", "fun": lambda x: 1 - current.sum() - x.sum(),
                                 "jac": lambda x: -np.ones(k)}],
                   options=dict(ftol=1e-15, maxiter=500))
    x = np.maximum(res.x, lower)
    return x * _max_scale(current, x) if not _feasible(current + x) else x


def minimum_norm_intervention(jacobian, target, *, current=None, method: str = "constrained",
                              strict: bool = True, tolerance: float = 1e-6, rcond: float = 1e-10,
                              ridge: float = 1e-12) -> Intervention:
    """The intervention ``dh`` on the source weights that moves the observables by ``target``.

    Args:
        jacobian: ``J = nβ χ`` (observables × sources), e.g. ``SusceptibilityResult.jacobian``,
            or the :class:`~toymodels.SusceptibilityResult` itself (its names are kept). Column
            ``b`` is the response to moving weight from the base ``q`` to source ``q_b``.
        target: ``dμ``, the wanted change of each observable's posterior mean, shape
            ``(observables,)``. Use 0 for an observable that should stay put and leave an
            observable out of ``J`` when it is free.
        current: the current source weights ``h₀`` (default 0: the base distribution alone);
            ``h₀ ≥ 0`` and ``Σ h₀ ≤ 1``.
        method: ``"constrained"``, ``"scale"`` or ``"unconstrained"`` (module docstring).
        strict: refuse a target that the step meets only partly (relative residual above
            ``tolerance``); ``False`` returns the closest feasible step.
        rcond: singular values of ``J`` below ``rcond · σ_max`` count as zero (pseudo-inverse
            and rank). A ``J`` of rank 0 is refused.
        ridge: the relative ridge ``ε / ||J||²_F`` of ``"constrained"``.

    Returns:
        An :class:`Intervention`; ``result.predicted_change = J dh`` is the first-order
        prediction to compare with what the reweighted data do.
    """
    J, obs_names, src_names = _jacobian(jacobian)
    m, k = J.shape
    target = _vector(target, m, "target", f"one entry per observable, the rows of the {m} × {k} "
                     "Jacobian")
    if method not in PATTERNING_METHODS:
        raise ValueError(f"method must be one of {PATTERNING_METHODS}, got {method!r}")
    current = np.zeros(k) if current is None else _vector(current, k, "current",
                                                           "one weight per source")
    if not _feasible(current):
        raise ValueError(f"current weights must be ≥ 0 with sum ≤ 1 (the base keeps the rest), "
                         f"got {current.tolist()}")
    for name, value in (("tolerance", tolerance), ("rcond", rcond), ("ridge", ridge)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < math.inf):
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    singular_values = np.linalg.svd(J, compute_uv=False)
    rank = int(np.sum(singular_values > rcond * singular_values[0])) if singular_values[0] > 0 else 0
    if rank == 0:
        raise ValueError("the Jacobian is zero (rank 0): no source moves these observables, so no "
                         "reweighting can pattern them; choose other sources or observables, or "
                         "sample longer if the entries are within their MCSE of 0")
    unconstrained = np.linalg.pinv(J, rcond=rcond) @ target
    scale = 1.0
    if method == "unconstrained":
        dh = unconstrained
    elif method == "scale":
        scale = _max_scale(current, unconstrained)
        if scale <= 0:
            raise ValueError(
                f"the minimum-norm step J⁺dμ = {np.round(unconstrained, 6).tolist()} leaves the "
                f"simplex at once from weights {current.tolist()} (it lowers a weight that is "
                "already 0, or raises a full mixture): these weights cannot be met along it; use "
                "method='constrained' for the closest feasible mixture")
        dh = scale * unconstrained
    else:
        dh = _constrained(J, target, current, ridge)
    predicted = J @ dh
    norm = float(np.linalg.norm(target))
    residual = float(np.linalg.norm(predicted - target) / norm) if norm > 0 else float(
        np.linalg.norm(predicted))
    if strict and residual > tolerance:
        what = ("first-order response" if method == "unconstrained"
                else "first-order response within the mixture simplex")
        raise ValueError(
            f"the target {target.tolist()} is not attainable by a {what}: the best step "
            f"{np.round(dh, 6).tolist()} gives {np.round(predicted, 6).tolist()} (relative "
            f"residual {residual:.3g} > tolerance {tolerance:g}; J has rank {rank} of "
            f"{min(m, k)}). Ask for less, add sources, or pass strict=False for the closest step")
    return Intervention(dh=dh, predicted_change=predicted, target=target,
                        unconstrained=unconstrained, weights=current + dh, current=current,
                        scale=float(scale), residual=residual, rank=rank,
                        singular_values=singular_values, method=method,
                        observable_names=obs_names, source_names=src_names)


def repeated_patterning(jacobian_at: Callable[[np.ndarray], Any], target, *, rounds: int,
                        current=None, **kwargs) -> Intervention:
    """Repeated patterning: ``rounds`` first-order steps of ``target / rounds`` each, with the
    Jacobian re-estimated at the current weights before every step.

    ``jacobian_at(weights)`` returns ``J`` (or a SusceptibilityResult) at the mixture with source
    weights ``weights``; ``kwargs`` go to :func:`minimum_norm_intervention`. Returns the last
    step with ``dh``, ``predicted_change`` and ``target`` summed over the rounds, ``current`` the
    first weights, and every step in ``history``. Walking the target in small steps follows a
    curved response where one step would overshoot (Wang & Murfet arXiv 2601.13548).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if not callable(jacobian_at):
        raise ValueError("jacobian_at must be a function weights -> Jacobian")
    steps: list[Intervention] = []
    weights = current
    for _ in range(rounds):
        if weights is None:
            J = jacobian_at(None)
        else:
            J = jacobian_at(np.asarray(weights, dtype=np.float64).copy())
        step_target = np.asarray(target, dtype=np.float64) / rounds
        step = minimum_norm_intervention(J, step_target, current=weights, **kwargs)
        steps.append(step)
        weights = step.weights
    first, last = steps[0], steps[-1]
    total = Intervention(
        dh=last.weights - first.current, predicted_change=sum(s.predicted_change for s in steps),
        target=sum(s.target for s in steps), unconstrained=first.unconstrained,
        weights=last.weights, current=first.current, scale=float(min(s.scale for s in steps)),
        residual=float(max(s.residual for s in steps)), rank=last.rank,
        singular_values=last.singular_values, method=last.method,
        observable_names=last.observable_names, source_names=last.source_names, history=steps)
    return total
