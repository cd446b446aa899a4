"""Toy models of superposition (TMS) in torch: the Chen et al. model, the Elhage et al. model,
a k-gon classifier, and the tempered posterior the Bayesian phase transition needs.

Modules: ``loss`` (parameters, exact and sampled losses, :class:`ChenTMS`), ``kgon`` (the k-gon
classifier), ``training`` (SGD trajectories, the Elhage model), ``posterior`` (tempered posterior).
The escape rule and the LLC at many points are estimators: :mod:`toymodels.estimators.escape`,
:mod:`toymodels.estimators.points`.

Sources: Z. Chen, E. Lau, J. Mendel, S. Wei, D. Murfet, "Dynamical versus Bayesian phase
transitions in a toy model of superposition", arXiv:2310.06301 (2023) — the two-hidden-dimension
model, its closed-form loss, the k-gon critical points; N. Elhage et al., "Toy models of
superposition", Transformer Circuits Thread (2022) — the model with n features, m hidden
dimensions, sparsity and importance. The exact ground truth is in ``theory/tms.py``; nothing here
imports it (the two meet only in tests and experiments).

Chen model (``c`` features, 2 hidden dimensions, ``d = 3c`` parameters)
---------------------------------------------------------------------
``f(x; W, b) = ReLU(WᵀW x + b)``, ``W ∈ R^{2×c}``, ``b ∈ R^c``; inputs ``x = μ e_i`` with
``i ~ Uniform{1..c}``, ``μ ~ U[0, 1]``; loss ``E ||x − f(x)||²`` (summed over the ``c`` outputs,
not halved). Every function of the parameters takes the flat vector
``w = concat(W[0, :], W[1, :], b)`` over its **last** dimension (the order of ``theory.tms``), so
that ``(num_chains, 3c)`` or ``(R, C, 3c)`` batches go through without ``vmap``.

Exact population loss. With ``a_ji = W_j·W_i`` and ``[u0, u1]`` the part of ``[0, 1]`` where
``a_ji μ + b_j > 0``, each output ``j`` on input ``i`` contributes
``P(s, t) = ∫_{u0}^{u1} (sμ + t)² dμ = s² M2 + 2st M1 + t² M0`` (``M_k = ∫_{u0}^{u1} μ^k dμ``,
``s = a_ji``, ``t = b_j``), and the own output ``i = j`` contributes
``Q = ∫_0^1 (μ − R(sμ + t))² dμ = 1/3 − 2(s M2 + t M1) + P``. Hence
``L = (1/c) [Σ_{j,i} P(a_ji, b_j) + Σ_i (1/3 − 2(a_ii M2_ii + b_i M1_ii))]``.
"""

from toymodels.models.tms.kgon import convex_hull_vertex_mask, kgon_label, kgon_labels, kgon_type
from toymodels.models.tms.loss import (
    ChenTMS,
    empirical_loss,
    empirical_loss_gradient,
    empirical_loss_potential,
    flatten_params,
    num_features,
    population_loss,
    population_loss_and_grad,
    sample_inputs,
    unflatten_params,
)
from toymodels.models.tms.posterior import TemperedPosteriorSamples, standard_normal_log_prior, tempered_posterior_mala
from toymodels.models.tms.training import ElhageTMS, dimensions_per_feature, sgd_trajectories, train_elhage

__all__ = [
    "ChenTMS", "ElhageTMS", "TemperedPosteriorSamples", "convex_hull_vertex_mask", "dimensions_per_feature",
    "empirical_loss", "empirical_loss_gradient", "empirical_loss_potential", "flatten_params", "kgon_label",
    "kgon_labels", "kgon_type", "num_features", "population_loss", "population_loss_and_grad",
    "sample_inputs", "sgd_trajectories", "standard_normal_log_prior", "tempered_posterior_mala",
    "train_elhage", "unflatten_params",
]
