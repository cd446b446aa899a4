"""The susceptibility estimators that sample — :func:`susceptibilities`, :func:`bayesian_influence`,
:func:`finite_difference_response`, :func:`component_llcs` — and the re-analysis of a recorded
trace, :func:`susceptibilities_from_trace` (conventions: :mod:`toymodels.estimators.susceptibility`).

Each takes a :class:`toymodels.Posterior` as its target, or builds one with
:func:`toymodels.make_posterior` from the keyword arguments ``init``, ``data``, ``loss_fn``,
``batch_size``, ``nbeta``, ``localization``, ``log_prior`` and ``restrict_to``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from toymodels.estimators.llc import estimate_llc
from toymodels.estimators.llc_result import LLCResult
from toymodels.estimators.susceptibility.functions import ModuleFunction
from toymodels.estimators.susceptibility.results import (
    FiniteDifferenceResult,
    SusceptibilityResult,
    from_draws,
)
from toymodels.estimators.susceptibility.statistics import mean_mcse_ess, stack_records
from toymodels.objectives import (
    PHYSICS_ARGUMENTS,
    ModuleObjective,
    Posterior,
    PotentialObjective,
    make_posterior,
    resolve_mask,
)
from toymodels.sampling import SamplingTrace

__all__ = ["susceptibilities", "bayesian_influence", "susceptibilities_from_trace",
           "finite_difference_response", "component_llcs", "OBSERVABLE_PREFIX",
           "PERTURBATION_PREFIX"]

# prefixes of the names under which the observables and perturbations are recorded in the trace
OBSERVABLE_PREFIX = "phi:"
PERTURBATION_PREFIX = "dL:"


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

    Runs :func:`toymodels.estimate_llc` once (``target``, a :class:`toymodels.Posterior` or what
    builds one, and ``sampler_kwargs`` as there:
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
    physics, sampler_kwargs = _split_physics(sampler_kwargs)
    posterior = make_posterior(target, **physics)
    _check_per_sample_mean(posterior, per_sample_losses)
    result = susceptibilities(posterior, observables=observables,
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


def _check_per_sample_mean(posterior: Posterior, per_sample_losses) -> None:
    """The contract of :func:`bayesian_influence`: ``mean_i ℓ_i(w*) = L(w*)``, checked before sampling.

    Per-sample losses whose mean is not the sampled loss give covariances with the wrong
    functions, and a BIF that looks fine; a sum instead of a mean, or another model's losses,
    fail here with the two numbers.
    """
    objective = posterior.objective
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

    obs, obs_names = stack_records(recorded, observables, OBSERVABLE_PREFIX, discard_draws)
    pert, pert_names = stack_records(recorded, perturbations, PERTURBATION_PREFIX, discard_draws)
    if baseline is not None:
        base = recorded[baseline][:, discard_draws:]
        if base.ndim != 2:
            raise ValueError(f"baseline {baseline!r} must be a scalar per draw, got shape {base.shape[2:]}")
        pert = pert - base[None]
    nbeta = trace.hyper.nbeta
    return from_draws(obs, pert, obs_names, pert_names, nbeta=nbeta,
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
    alike. ``target`` is a :class:`toymodels.Posterior` (full batch), a potential (with ``init``
    and ``nbeta``) or a network (with ``data`` and ``loss_fn``, full batch); ``perturbation`` is
    one scalar ``ΔL(w)``. The two runs sample ``p_{±δ}``: the same posterior with the loss
    ``L ± δ ΔL`` (same nβ, γ, prior and mask).
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (0 < delta < math.inf):
        raise ValueError(f"delta must be a positive finite number, got {delta!r}")
    if not callable(perturbation):
        raise ValueError("perturbation must be one function w -> scalar ΔL(w)")
    if sampler_kwargs.get("batch_size") is not None:
        raise ValueError(_FULL_BATCH)
    sampler_kwargs.pop("batch_size", None)
    if "observables" in sampler_kwargs:
        raise ValueError("pass the observables as observables=..., not inside the sampler kwargs")
    physics, sampler_kwargs = _split_physics(sampler_kwargs)
    posterior = make_posterior(target, init=init, data=data, loss_fn=loss_fn, nbeta=nbeta,
                               restrict_to=restrict_to, **physics)
    if posterior.batch_size is not None:
        raise ValueError(_FULL_BATCH)
    base = _loss_function(posterior)
    recorded = _recording_observables(observables, {}, None)
    runs = []
    for h in (+delta, -delta):
        def shifted(w, h=h):
            return base(w).reshape(()) + h * perturbation(w).reshape(())

        shifted_posterior = replace(posterior, objective=PotentialObjective(shifted, posterior.center))
        runs.append(estimate_llc(shifted_posterior, observables=recorded, **sampler_kwargs))
    plus, names = stack_records(runs[0].trace.observables, list(recorded), OBSERVABLE_PREFIX, 0)
    minus, _ = stack_records(runs[1].trace.observables, list(recorded), OBSERVABLE_PREFIX, 0)
    if plus.shape != minus.shape:
        raise ValueError(
            f"the two runs kept different chains ({runs[0].dropped_chains} and "
            f"{runs[1].dropped_chains} dropped); lower step_size so that no chain diverges")
    diff = (plus - minus) / (2 * delta)
    _, mcse, _ = mean_mcse_ess(diff)
    return FiniteDifferenceResult(
        derivative=diff.mean(axis=(1, 2)), mcse=mcse, mean_plus=plus.mean(axis=(1, 2)),
        mean_minus=minus.mean(axis=(1, 2)), delta=float(delta), observable_names=names,
        nbeta=posterior.nbeta, seconds=runs[0].seconds + runs[1].seconds,
    )


_FULL_BATCH = "finite_difference_response samples full-batch potentials; drop batch_size"


def component_llcs(target, components: Mapping[str, Any], **sampler_kwargs) -> dict[str, LLCResult]:
    """Per-component LLCs: ``estimate_llc(target, restrict_to=components[name])`` for each name.

    A component is a list of parameter names or module prefixes (networks) or a boolean mask.
    Each is sampled with the other weights fixed at ``w*`` (the weight-restricted posterior).
    ``target`` is a :class:`toymodels.Posterior` without a mask, or what builds one (with the
    keyword arguments of :func:`toymodels.make_posterior`). Every component's mask is resolved
    before anything is sampled. Each component is sampled on its own objective, as separate
    calls would be: a network's "auto" compilation counts the work done on its objective, and
    one component's run must not change the numbers of the next.
    """
    if not isinstance(components, Mapping) or not components:
        raise ValueError("components must be a non-empty {name: parameter names or mask} mapping")
    if "restrict_to" in sampler_kwargs:
        raise ValueError("component_llcs sets restrict_to itself; give the components instead")
    physics, sampler_kwargs = _split_physics(sampler_kwargs)
    if isinstance(target, Posterior) and target.mask is not None:
        raise ValueError("component_llcs sets the mask itself: pass a Posterior built without "
                         "restrict_to, and the components")
    first = make_posterior(target, **physics)
    masks = {name: resolve_mask(first.objective, part) for name, part in components.items()}
    out = {}
    for i, (name, mask) in enumerate(masks.items()):
        posterior = first if i == 0 or isinstance(target, Posterior) else make_posterior(target, **physics)
        out[name] = estimate_llc(replace(posterior, mask=mask), **sampler_kwargs)
    return out


def _split_physics(kwargs: dict) -> tuple[dict, dict]:
    """``(the arguments that define the posterior, the rest)``: see :func:`toymodels.make_posterior`."""
    physics = {k: v for k, v in kwargs.items() if k in PHYSICS_ARGUMENTS}
    return physics, {k: v for k, v in kwargs.items() if k not in PHYSICS_ARGUMENTS}


def _loss_function(posterior: Posterior) -> Callable[[torch.Tensor], torch.Tensor]:
    """The posterior's full-batch loss as a potential ``L(w)`` of one flat vector."""
    objective = posterior.objective
    if isinstance(objective, ModuleObjective):
        return ModuleFunction(objective.model, objective.inputs, objective.targets,
                              objective.loss_fn, per_sample=False)
    return objective.potential


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
