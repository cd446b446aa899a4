"""Choosing the step size: short batched runs over a grid of ε, and a documented rule.

**Why.** SGLD (and SGNHT, preconditioned SGLD) samples a law that differs from the target by O(ε):
for a Gaussian of curvature κ, SGLD's variance is ``1/(κ(1 − εκ/4))``, so ``λ̂`` is biased up by
about ``εκ/4`` (docs/error_budget.md). Too small a step wastes time (the chain needs ~``1/(εκ)``
steps to forget where it was); too large a step biases the estimate or diverges.

**The rule** (:func:`calibrate`):

1. *Stability scan* — a geometric grid ``ε₀·4^k`` around the starting guess, a few chains and a
   few hundred steps each, all as one batched run. ``ε_max`` is the largest step at which no chain
   diverged and, where the loss is exact (full batch), the mean MALA acceptance probability of
   the SGLD moves is at least 0.5 (a move that a Metropolis test would reject half the time is far
   outside the small-ε regime).
2. *Bias grid* — ``ε_max·2^{−j}``, ``j = 0 … num_step_sizes−1``, as one batched run; each point
   gives ``λ̂(ε) ± MCSE``.
3. *Fit* — the step-size bias is linear in ε to leading order (SGLD is a weak-order-one scheme:
   Mattingly, Stuart & Tretyakov, SIAM J. Numer. Anal. 48 (2010); Vollmer, Zygalakis & Teh,
   JMLR 17 (2016)): ``λ̂(ε) = λ₀ (1 + sε + O(ε²))``. The law ``λ̂(ε) = λ₀/(1 − sε)`` has that
   expansion and is *exact* for SGLD on a quadratic potential with one curvature, so it stays
   straight (as ``1/λ̂`` against ε) up to large biases; it is fitted by weighted least squares
   (weights from the MCSEs) to the mixed points (split R-hat ≤ 1.1, no divergence), dropping the
   largest ε while the fit is rejected (χ² p-value < 0.01). ``λ₀`` is the zero-step limit
   (:func:`fit_step_size_bias`; estimates near zero use ``λ₀(1 + sε)`` instead).
4. *Choice* — the largest ε whose bias, with 95 % confidence (slope ``|s| + 2σ_s``), is within
   ``tolerance`` (1 %) of ``λ₀``, capped at the largest ε used in the fit (beyond it the law is not
   trusted). Equivalently: the largest step whose estimate agrees with the zero-step limit to
   1 % — which the MCSE of a short run could never resolve directly; instead the slope is measured
   where the bias is large and well resolved, and extrapolated down.

Points whose chains escaped (more than 5 % of draws below ``L(w*)``) are reported; they do not
change the rule, which is about the step size only.

For MALA the step-size bias is zero and the rule is an acceptance target instead: ε is adapted by
dual averaging during burn-in to reach a mean acceptance of ``target_accept`` (0.8 by default:
higher than the d → ∞ optimum 0.57 because on singular potentials a large step leaves chains stuck
in stiff valleys).

The same grid can be crossed with several ``nbeta`` and ``localization`` values: every
combination is one group of chains in the same batched run, and each gets its own choice.

The modules: ``rule`` (:func:`calibrate`, step by step), ``runs`` (the batched grid runs and the
numbers read from them), ``bias`` (the bias law, its fit and the choice) and ``result``
(:class:`CalibrationResult` and the :class:`Schedule` it gives).
"""

from toymodels.estimators.calibration.bias import choose_step_size, fit_step_size_bias, relative_bias
from toymodels.estimators.calibration.result import CalibrationChoice, CalibrationResult, Schedule
from toymodels.estimators.calibration.rule import RULE, SAMPLER_NAMES, calibrate
from toymodels.estimators.calibration.runs import MAX_GRID_RHAT_RELAXED, MIN_GRID_ESS

__all__ = ["CalibrationResult", "CalibrationChoice", "Schedule", "calibrate", "fit_step_size_bias",
           "choose_step_size", "relative_bias", "RULE", "SAMPLER_NAMES", "MIN_GRID_ESS",
           "MAX_GRID_RHAT_RELAXED"]
