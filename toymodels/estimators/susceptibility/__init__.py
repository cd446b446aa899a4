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

The modules: ``response`` (the estimators that sample, and :func:`susceptibilities_from_trace`),
``results`` (:class:`SusceptibilityResult` and the others), ``statistics`` (covariances and MCSEs)
and ``functions`` (network losses and restricted potentials as functions of the flat vector).
"""

from toymodels.estimators.susceptibility.functions import (
    module_loss_function,
    per_sample_loss_function,
    restricted_potential,
)
from toymodels.estimators.susceptibility.response import (
    OBSERVABLE_PREFIX,
    PERTURBATION_PREFIX,
    bayesian_influence,
    component_llcs,
    finite_difference_response,
    susceptibilities,
    susceptibilities_from_trace,
)
from toymodels.estimators.susceptibility.results import (
    FiniteDifferenceResult,
    PrincipalComponents,
    SusceptibilityResult,
)

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
    "OBSERVABLE_PREFIX",
    "PERTURBATION_PREFIX",
]
