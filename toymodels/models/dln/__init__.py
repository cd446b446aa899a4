"""Deep linear networks: the model, random teachers, data, and the Gaussian-likelihood loss.

A deep linear network (DLN) with widths ``H_1`` (input), ..., ``H_{L+1}`` (output) computes
``f(x) = W_L ⋯ W_1 x`` with ``W_i`` of shape ``H_{i+1} × H_i`` and no biases. Its parameter is one
flat vector ``w`` (the layers' entries, row-major, first layer first), ``d = Σ_i H_i H_{i+1}``.

**The loss and the meaning of nβ.** Data ``y = P* x + e`` with ``e ~ N(0, σ² I)``. The sampled
loss is the Gaussian negative log-likelihood per sample,

    L_n(w) = (1/n) Σ_k ||y_k − P(w) x_k||² / (2σ²)       (+ (N/2) log(2πσ²), dropped),

so that ``nβ L_n`` is the tempered log-likelihood and ``nβ`` means what it says. A plain mean
squared error ``(1/(nN)) Σ ||y − f||²`` is ``(2σ²/N)`` times this: sampling it at ``nβ`` would
sample the likelihood at ``2σ²nβ/N``, silently rescaling the temperature (Lau et al. arXiv
2308.12108, the tempered posterior). The
additive constant cancels in ``λ̂ = nβ (E[L_n] − L_n(w*))`` and is left out.

**Sufficient statistics.** The loss depends on the data only through second moments. Writing
``D = P(w) − P*``, ``e_k = y_k − P* x_k`` (the residual at the centre ``P*``)::

    L_n(w) = [ (1/n)Σ||e_k||² − 2 tr(D R) + tr(D S Dᵀ) ] / (2σ²),
    S = (1/n) Σ x_k x_kᵀ,   R = (1/n) Σ x_k e_kᵀ,

an identity in ``w`` (expand the square). :func:`dln_potential` evaluates it for a batch of
chains in ``O(d)`` work independent of ``n``; with the population moments (``S = E[xxᵀ]``,
``R = 0``, ``(1/n)Σ||e||² → Nσ²``) it is the population NLL, whose excess over its minimum is
``K(w) = tr(D Σ_xx Dᵀ)/(2σ²)``, the function whose learning coefficient Aoyagi computed.

**Random teachers** follow Lau, Furman, Wang, Murfet, Wei (arXiv 2308.12108, appendix on DLNs):
depth and each width uniform in ranges, each layer Gaussian, and with probability 1/2 each layer
reduced to a uniformly random rank by truncating its SVD. See :func:`random_teacher` for the
points of the true-parameter set at which the LLC equals Aoyagi's λ (not every one: the
teacher's own layers can carry rank the product does not use).

Modules: ``network`` (widths, flat vectors, the product map, :class:`DeepLinearNetwork`),
``teacher`` (random teachers and teachers with a given product), ``data`` (inputs, the Gaussian
NLL, sufficient statistics, :func:`dln_potential`, :class:`DLNObjective`), ``curvature`` (the
Gauss–Newton spectrum and the step-size and run-length rules).
"""

from toymodels.models.dln.curvature import (
    SAMPLERS,
    dln_step_size,
    estimate_dln_llc,
    gauss_newton_eigenvalues,
    gauss_newton_top_eigenvalue,
)
from toymodels.models.dln.data import (
    INPUT_DISTRIBUTIONS,
    DLNObjective,
    SufficientStatistics,
    dln_potential,
    gaussian_nll_loss,
    input_covariance,
    make_data,
    sample_inputs,
)
from toymodels.models.dln.network import (
    DeepLinearNetwork,
    flatten_layers,
    num_parameters,
    product_matrix,
    unflatten_layers,
)
from toymodels.models.dln.teacher import DLNTeacher, random_teacher, teacher_from_product

__all__ = [
    "DLNObjective",
    "DLNTeacher",
    "DeepLinearNetwork",
    "SufficientStatistics",
    "dln_potential",
    "dln_step_size",
    "estimate_dln_llc",
    "flatten_layers",
    "gauss_newton_eigenvalues",
    "gauss_newton_top_eigenvalue",
    "gaussian_nll_loss",
    "input_covariance",
    "make_data",
    "num_parameters",
    "product_matrix",
    "random_teacher",
    "sample_inputs",
    "teacher_from_product",
    "unflatten_layers",
    "INPUT_DISTRIBUTIONS",
    "SAMPLERS",
]
