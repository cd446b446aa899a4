"""The potential of a noisy-Turing-machine synthesis task as a torch function, batched over chains.

Sources: Clift, Murfet, Wallbridge, "Geometry of program synthesis", arXiv 2103.16080 (noisy
codes and the potential ``K``); Murfet, Troiani, "Programs as singularities", arXiv 2504.08075
(learning coefficients at classical codes); sources Clift, Murfet & Wallbridge arXiv 2103.16080;
Murfet & Troiani arXiv 2504.08075.

**What this module is given.** Plain arrays, not machines: the parameter space is a product of
simplices (``simplex_sizes``), and for each training example ``x`` (weight ``q_x``) the
probability of the correct output is a polynomial in the barycentric entries,

    P_x(p) = sum_m c_{x,m} prod_k p[i_{x,m,k}],

with positive integer coefficients. The exact semantics that produce these polynomials live in
``theory.turing.output_probability_polynomial`` (path sums of the noisy machine); an experiment
turns them into arrays (its ``padded_factor_indices``: padding index ``num_entries`` stands for
the constant 1) and passes them here. So ``theory`` stays the ground truth, this module stays a
torch twin that knows nothing of Turing machines, and the two meet in tests and experiments.
The potential is

    K(p) = -sum_x q_x log P_x(p)          (theory.turing.potential).

**Coordinates and prior (the change of variables).** The sampler needs unconstrained
coordinates, and the learning coefficient at a vertex lives on a corner of the simplex, where
``K`` is linear in the error probabilities. Each barycentric entry ``p_i`` gets one real
coordinate ``s_i`` (``E = sum_j k_j`` coordinates for simplices of sizes ``k_j``: one more per
simplex than its dimension). On simplex ``j``

    ell_j = log sum_{l in j} exp(s_l),      p_i = exp(s_i - ell_j)      (a softmax),

so ``s <-> (p, ell)`` is a diffeomorphism of ``R^k`` onto (open simplex) x ``R`` with inverse
``s_i = log p_i + ell_j`` and volume element ``ds = prod_{i in j} p_i^{-1} dp dell`` (with
``dp`` Lebesgue measure on the first ``k - 1`` entries). The prior density on ``s`` is

    phi(s) = prod_j [ prod_{i in j} p_i^{alpha_i} ] N(ell_j; 0, 1) / B(alpha^{(j)})
                                                                (``log_prior``, constant dropped)

with ``B`` the Dirichlet normaliser. Multiplying by the volume element, its law in ``(p, ell)`` is
``prod_j Dirichlet(p^{(j)}; alpha^{(j)}) N(ell_j; 0, 1)``: the code is Dirichlet(``alpha``) and
the scales are independent standard normals. ``K`` depends on ``s`` only through ``p``, so for
every ``t`` the tempered posterior ``exp(-t K(p(s))) phi(s)`` that SGLD samples in ``s`` (drift
``-t grad K + grad log phi``) has ``p``-marginal exactly

    exp(-t K(p)) prod_j Dirichlet(p^{(j)}; alpha^{(j)})   (normalised),

and ``t E[K]`` is the same number in both coordinate systems. (The law of the scales is free;
the textbook choice, independent ``Gamma(alpha_i)`` variables ``g_i = e^{s_i}``, gives the same
``p``-law but a prior force ``e^{s_i}`` that grows exponentially and makes SGLD unstable when a
chain overshoots; the Gaussian on ``ell`` has curvature 1.)

* ``alpha = 1`` everywhere: the uniform prior of Murfet & Troiani, the *barycentric*
  convention, where each relevant error coordinate contributes 1 to ``lambda``
  (``theory.turing.learning_coefficient_at_vertex(..., coordinates="barycentric")``) and the
  one-step oracle is ``theory.turing.single_step_llc``.
* ``alpha = 1/2`` on the error entries: ``Dirichlet(1/2, ...)`` is the uniform law on the sphere
  of squared coordinates ``p = u^2/|u|^2``, the *squared* convention, where each relevant
  coordinate contributes 1/2 (``coordinates="squared"``).
* ``alpha_c > 1`` on the classical entries of a machine: localisation by the prior. The density
  factor ``p_c^{alpha_c - 1}`` is smooth and positive at the vertex, so local exponents do not
  change, but the prior concentrates on the corner of that machine (error mass of order
  ``1/alpha_c`` per entry). It plays the role of the Gaussian localisation ``gamma`` of
  Lau et al., which has no natural centre here (the vertex sits at ``s = -infinity``).

**Why log coordinates.** Near a vertex ``t K ~ t sum_i c_i p_i`` with ``log p_i = s_i - ell``:
the posterior of each relevant ``log p_i`` is a log-Gamma law shifted by ``-log t``, of width
O(1) at every ``t``. One step size therefore serves every ``nbeta`` (in squared coordinates the
width shrinks like ``t^{-1/2}`` and the step must shrink with it). The forces are bounded in
equilibrium: ``log P_x`` is a log-sum-exp of linear functions of the ``log p``, whose gradients
``e_i - p`` are bounded, and the prior's curvature on a simplex is at most
``(sum alpha + |ell|) / 2 + 1`` (the covariance ``diag(p) - p p^T`` of a categorical law has
norm at most 1/2). Only the transient is stiff: a chain
started far from the vertex at large ``t`` feels a force up to ``t max_x q_x * degree``; start
it from a lower ``t`` (an annealing ladder) or near the vertex.

**No Gaussian localisation.** The domain is compact and the prior is proper, so the estimator is
``lambda-hat = t (E[K] - K(w*))`` under the tempered posterior with this prior and
``localization = 0``; at a vertex ``K(w*) = 0``. With ``alpha = 1`` it targets the exact
finite-temperature value of theory (no localisation there either).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from toymodels.objectives import PotentialObjective
from toymodels.sampling import anneal, geometric_ladder

__all__ = ["NoisyCodePotential", "annealed_chain_init"]


def _as_int_array(values, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of integers, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must hold integers, got {array.dtype}")
    return array.astype(np.int64)


def _checked_arrays(simplex_sizes, coefficients, factor_indices, monomial_example, example_weights,
                    concentration):
    """The constructor's arguments as checked numpy arrays (each error says what to change)."""
    sizes = _as_int_array(simplex_sizes, "simplex_sizes", 1)
    if sizes.size == 0 or np.any(sizes < 2):
        raise ValueError(
            f"simplex_sizes must list at least one simplex, each with >= 2 entries (a simplex "
            f"with one entry is the constant 1: drop it); got {sizes.tolist()}"
        )
    num_entries = int(sizes.sum())
    coefficients = np.asarray(coefficients, dtype=np.float64)
    indices = _as_int_array(factor_indices, "factor_indices", 2)
    owner = _as_int_array(monomial_example, "monomial_example", 1)
    weights = np.asarray(example_weights, dtype=np.float64)
    num_monomials = coefficients.shape[0] if coefficients.ndim == 1 else -1
    if num_monomials < 1:
        raise ValueError(f"coefficients must be a non-empty 1-D array, got shape "
                         f"{coefficients.shape}")
    if indices.shape[0] != num_monomials or owner.shape[0] != num_monomials:
        raise ValueError(
            f"coefficients ({num_monomials}), factor_indices ({indices.shape[0]} rows) and "
            f"monomial_example ({owner.shape[0]}) must have one entry per monomial"
        )
    if not np.all(coefficients > 0) or not np.all(np.isfinite(coefficients)):
        raise ValueError("coefficients must be positive and finite (path counts)")
    if indices.size and (indices.min() < 0 or indices.max() > num_entries):
        raise ValueError(
            f"factor_indices must lie in 0..{num_entries} ({num_entries} = the padding "
            f"constant 1), got {indices.min()}..{indices.max()}"
        )
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"example_weights must be a non-empty 1-D array, got {weights.shape}")
    if np.any(weights <= 0) or not math.isclose(weights.sum(), 1.0, abs_tol=1e-12):
        raise ValueError(
            f"example_weights must be positive and sum to 1, got sum {weights.sum()!r}"
        )
    num_examples = weights.size
    if owner.min() < 0 or owner.max() >= num_examples:
        raise ValueError(f"monomial_example must lie in 0..{num_examples - 1}")
    missing = sorted(set(range(num_examples)) - set(owner.tolist()))
    if missing:
        raise ValueError(f"examples {missing} have no monomial: P_x = 0 and K = infinity")

    alpha = np.broadcast_to(np.asarray(concentration, dtype=np.float64), (num_entries,))
    if alpha.shape != (num_entries,) or not np.all(alpha > 0) or not np.all(np.isfinite(alpha)):
        raise ValueError(
            f"concentration must be a positive number or {num_entries} positive numbers"
        )
    return sizes, coefficients, indices, owner, weights, np.array(alpha)


def _grouped_by_example(owner, indices, coefficients, num_examples: int, num_entries: int):
    """Monomials grouped by example, ``(X, Mmax, D)`` factor indices (padded with the constant
    entry ``E``) and ``(X, Mmax)`` log coefficients (padding monomials at ``-inf``)."""
    num_monomials = coefficients.shape[0]
    # monomials grouped by example: (X, Mmax, D), padding monomials have log c = -inf
    counts = np.bincount(owner, minlength=num_examples)
    mmax, width = int(counts.max()), max(indices.shape[1], 1)
    grouped = np.full((num_examples, mmax, width), num_entries, dtype=np.int64)
    log_coeff = np.full((num_examples, mmax), -np.inf)
    slot = np.zeros(num_examples, dtype=np.int64)
    for m in range(num_monomials):
        x = owner[m]
        grouped[x, slot[x], : indices.shape[1]] = indices[m]
        log_coeff[x, slot[x]] = math.log(coefficients[m])
        slot[x] += 1
    return grouped, log_coeff


class NoisyCodePotential:
    """``K(s) = -sum_x q_x log P_x(softmax(s))`` on a product of simplices (module docstring).

    Args:
        simplex_sizes: ``(S,)`` sizes ``k_j >= 2`` of the simplices; entries of simplex ``j`` are
            the coordinates ``offset_j .. offset_j + k_j - 1`` (simplices concatenated in order),
            ``E = sum_j k_j`` coordinates in all.
        coefficients: ``(M,)`` positive monomial coefficients ``c_m``.
        factor_indices: ``(M, D)`` integers in ``0..E``: the entries multiplied in monomial
            ``m``, padded with ``E`` (the constant 1), as in
            ``theory.turing.OutputPolynomial.padded_factor_indices``.
        monomial_example: ``(M,)`` the example ``x`` (``0..X-1``) each monomial belongs to.
        example_weights: ``(X,)`` input probabilities ``q_x > 0``, summing to 1.
        concentration: Dirichlet parameters ``alpha_i > 0``: a number for all entries or an
            ``(E,)`` array (e.g. ``alpha_c`` on a machine's classical entries and 1 elsewhere, to
            localise at that machine; module docstring).
        dtype: float dtype of the internal tensors (float64 by default: ``K`` at a vertex is
            ``lambda / t``, and ``1 - P_x`` must not drown in rounding).

    Calling the object evaluates ``K`` on ``(E,)`` or a ``(C, E)`` batch of chains (it sets
    ``batched = True`` for ``toymodels.estimate_llc``); pass ``log_prior`` as the sampler's
    ``log_prior``.
    """

    batched = True

    def __init__(
        self,
        simplex_sizes: Sequence[int],
        coefficients,
        factor_indices,
        monomial_example,
        example_weights,
        concentration=1.0,
        dtype: torch.dtype = torch.float64,
    ):
        sizes, coefficients, indices, owner, weights, alpha = _checked_arrays(
            simplex_sizes, coefficients, factor_indices, monomial_example, example_weights,
            concentration)
        num_entries, num_examples = int(sizes.sum()), weights.size

        self.dtype = dtype
        self.simplex_sizes = tuple(int(k) for k in sizes)
        self.num_entries = num_entries
        self.num_examples = num_examples
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.simplex_offsets = tuple(int(o) for o in offsets)
        #: (E,) the simplex of each coordinate
        self.simplex_index = torch.as_tensor(np.repeat(np.arange(sizes.size), sizes))
        # (S, kmax) table of coordinates per simplex, padded with E (an entry fixed at -inf), so
        # the per-simplex log-sum-exp is one reduction over the last dimension
        kmax = int(sizes.max())
        table = np.full((sizes.size, kmax), num_entries, dtype=np.int64)
        for j, (o, k) in enumerate(zip(offsets, sizes)):
            table[j, :k] = np.arange(o, o + k)
        self._simplex_table = torch.as_tensor(table)
        grouped, log_coeff = _grouped_by_example(owner, indices, coefficients, num_examples, num_entries)
        self._factors = torch.as_tensor(grouped)
        self._log_coefficients = torch.as_tensor(log_coeff, dtype=dtype)
        self._weights = torch.as_tensor(weights, dtype=dtype)
        self.example_weights = self._weights
        #: (E,) Dirichlet parameters alpha_i
        self.concentration = torch.as_tensor(np.array(alpha), dtype=dtype)
        self.degree = int(indices.shape[1])

    # ------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of sampled coordinates ``E`` (one per barycentric entry)."""
        return self.num_entries

    def _check(self, s: torch.Tensor) -> torch.Tensor:
        if not isinstance(s, torch.Tensor) or s.shape[-1:] != (self.num_entries,):
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(
                f"coordinates must be a tensor whose last dimension is {self.num_entries}, "
                f"got {shape}"
            )
        return s

    def _log_barycentric_and_scale(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self._check(s)
        padded = torch.cat([s, torch.full_like(s[..., :1], -math.inf)], dim=-1)
        ell = torch.logsumexp(padded[..., self._simplex_table], dim=-1)  # (..., S)
        return s - ell[..., self.simplex_index], ell

    def log_barycentric(self, s: torch.Tensor) -> torch.Tensor:
        """``log p_i = s_i - ell_j``, ``ell_j = logsumexp_{l in simplex j} s_l``, ``j`` the
        simplex of ``i``; ``(..., E) -> (..., E)``."""
        return self._log_barycentric_and_scale(s)[0]

    def scales(self, s: torch.Tensor) -> torch.Tensor:
        """``ell_j = logsumexp_{i in simplex j} s_i`` (the direction ``K`` does not see);
        ``(..., E) -> (..., S)``."""
        return self._log_barycentric_and_scale(s)[1]

    def barycentric(self, s: torch.Tensor) -> torch.Tensor:
        """The code ``p`` (every simplex's entries, concatenated); ``(..., E) -> (..., E)``."""
        return torch.exp(self.log_barycentric(s))

    def log_output_probabilities(self, s: torch.Tensor) -> torch.Tensor:
        """``log P_x(p(s))`` for every example; ``(..., E) -> (..., X)``.

        Computed in the log domain: ``log P_x = logsumexp_m (log c_m + sum_k log p[i_mk])``,
        so codes far from the vertex do not underflow.
        """
        log_p = self.log_barycentric(s)
        padded = torch.cat([log_p, torch.zeros_like(log_p[..., :1])], dim=-1)  # log 1 = 0
        log_terms = padded[..., self._factors].sum(-1)  # (..., X, Mmax)
        return torch.logsumexp(log_terms + self._log_coefficients.to(s.dtype), dim=-1)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """``K(s) = -sum_x q_x log P_x``; ``(E,) -> ()`` or ``(C, E) -> (C,)``."""
        return -(self.log_output_probabilities(s) * self._weights.to(s.dtype)).sum(-1)

    def log_prior(self, s: torch.Tensor) -> torch.Tensor:
        """``log phi(s) = sum_j [sum_{i in j} alpha_i log p_i - ell_j^2 / 2]`` (constant dropped).

        ``ell_j = logsumexp_{i in j} s_i`` is the scale of simplex ``j``. Its pushforward to the
        simplices is ``Dirichlet(alpha)``, with every ``ell_j ~ N(0, 1)`` independent of it
        (module docstring). ``(..., E) -> (...)``.
        """
        log_p, ell = self._log_barycentric_and_scale(s)
        return (self.concentration.to(s.dtype) * log_p).sum(-1) - 0.5 * (ell * ell).sum(-1)

    def log_prior_normalizer(self) -> float:
        """``log Z`` with ``phi = exp(log_prior) / Z`` a probability density on ``R^E``.

        ``Z = prod_j (prod_{i in j} Gamma(alpha_i)) / Gamma(sum_{i in j} alpha_i) * sqrt(2 pi)``
        (the Dirichlet normaliser times the Gaussian one).
        """
        alpha = self.concentration
        totals = torch.zeros(len(self.simplex_sizes), dtype=alpha.dtype).index_add(
            0, self.simplex_index, alpha)
        return float(torch.lgamma(alpha).sum() - torch.lgamma(totals).sum()
                     + 0.5 * len(self.simplex_sizes) * math.log(2 * math.pi))

    def sample_prior(self, num_chains: int, rng: np.random.Generator | int) -> torch.Tensor:
        """``(num_chains, E)`` exact prior draws: ``p ~ Dirichlet(alpha)``, ``ell ~ N(0, 1)``,
        ``s = log p + ell`` per simplex.

        Use them as ``chain_init`` (chains then start in equilibrium at ``t = 0``). ``rng`` is a
        numpy Generator or a seed: randomness is an argument, nothing global is touched.
        """
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        rng = np.random.default_rng(rng)
        alpha = self.concentration.double().numpy()
        # log g with g ~ Gamma(alpha), as log Gamma(alpha + 1) + log(U) / alpha, which keeps a
        # small alpha from underflowing to g = 0; p = g / sum g per simplex.
        log_g = (np.log(rng.gamma(alpha + 1.0, size=(num_chains, self.num_entries)))
                 + np.log(rng.uniform(size=(num_chains, self.num_entries))) / alpha)
        log_g = torch.as_tensor(log_g, dtype=self.dtype)
        log_p = self.log_barycentric(log_g)
        ell = torch.as_tensor(rng.standard_normal((num_chains, len(self.simplex_sizes))),
                              dtype=self.dtype)
        return log_p + ell[:, self.simplex_index]

    def coordinates_of(self, p, floor: float = 1e-30) -> torch.Tensor:
        """Coordinates ``s = log max(p, floor)`` of a code ``p`` (``(..., E)``, each simplex
        summing to 1); ``softmax`` maps them back to ``p`` up to the floor.

        At a vertex the zeros become ``log(1e-30)``: every ``P_x`` is then 1 to float64
        precision, so ``K`` there is 0 (or within 1e-29 of it).
        """
        p = torch.as_tensor(p, dtype=self.dtype)
        self._check(p)
        if torch.any(p < 0):
            raise ValueError("barycentric entries must be nonnegative")
        sums = torch.zeros(p.shape[:-1] + (len(self.simplex_sizes),), dtype=p.dtype)
        sums = sums.index_add(-1, self.simplex_index, p)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-9):
            raise ValueError("each simplex of p must sum to 1")
        if not 0 < floor < 1e-6:
            raise ValueError(f"floor must be in (0, 1e-6), got {floor!r}")
        return torch.log(torch.clamp(p, min=floor))

    def __repr__(self) -> str:
        return (f"NoisyCodePotential({len(self.simplex_sizes)} simplices, {self.num_entries} "
                f"coordinates, {self.num_examples} examples, degree {self.degree})")


def annealed_chain_init(
    potential: NoisyCodePotential,
    init: torch.Tensor,
    *,
    nbeta: float,
    num_chains: int,
    step_size: float,
    seed: int = 0,
    start_nbeta: float = 1.0,
    ratio: float = 10.0,
    steps_per_rung: int = 300,
) -> torch.Tensor:
    """``(num_chains, E)`` starting points for chains at ``nbeta``, by an annealing ladder.

    Chains start from exact prior draws (``sample_prior``) and run ``steps_per_rung`` SGLD
    steps at each rung ``start_nbeta, start_nbeta * ratio, ...`` and finally at ``nbeta``.
    ``init`` is only the reference point of the objective (``w*``); the chains do not start
    there. ``step_size`` may be larger than the estimate's (a starting point needs stability,
    not an unbiased stationary law): ``0.2`` is stable for ``alpha <= 10``.

    Why a ladder: in log coordinates a chain far from the vertex at large ``t`` feels a force up
    to ``t max_x q_x * degree``, and one step throws it ``O(step_size * t)`` deep into the left
    tail of some ``log p``, from which it drifts back only at speed ``alpha``. Raising ``t`` by
    ``ratio`` at a time keeps each jump near ``log(ratio)``; after it the left tail refills in a
    few times ``4 / alpha^2`` units of time (``step_size`` per step; ``alpha^2 / 4`` is the
    spectral gap of a diffusion with drift ``alpha``): the caller's burn-in should cover a few
    of those (measured: a burn-in of 15 units after a jump by 10 left a bias of +4.5% at
    ``alpha = 1/2``).
    """
    if not isinstance(potential, NoisyCodePotential):
        raise ValueError(f"potential must be a NoisyCodePotential, got {type(potential).__name__}")
    if not (nbeta > 0 and start_nbeta > 0 and ratio > 1):
        raise ValueError(
            f"need nbeta > 0, start_nbeta > 0 and ratio > 1; got {nbeta}, {start_nbeta}, {ratio}"
        )
    if (isinstance(steps_per_rung, bool) or not isinstance(steps_per_rung, int)
            or steps_per_rung < 1):
        raise ValueError(f"steps_per_rung must be a positive integer, got {steps_per_rung!r}")
    ladder = geometric_ladder(start_nbeta, nbeta, ratio)
    return anneal(PotentialObjective(potential, init), ladder, potential.sample_prior(num_chains, seed),
                  step_size=step_size, steps_per_rung=steps_per_rung, seed=seed,
                  log_prior=potential.log_prior)
