"""The LLC of deep linear networks at scale (issue 19, item 5; Furman & Lau, arXiv 2402.03698): λ̂ by minibatch SGLD on an ``nn.Module`` against Aoyagi's λ, from 10³ to 10⁵ parameters, with the time per estimate.

The users' path, not the closed-form potential: the student is an ``nn.Sequential`` of bias-free
``nn.Linear`` layers in float32, the data a dataset of ``n`` pairs, the loss
:func:`toymodels.models.dln.gaussian_nll_loss` (``mean_k ||y_k − f(x_k)||²/(2σ²)``, so nβ keeps its
meaning), and λ̂ comes from ``toymodels.estimate_llc(model, data=(x, y), loss_fn=...,
batch_size=B, step_size="auto", calibration=..., localization=γ)``.

Per size (depth ``L = 4``, all widths ``H``, ``d = L H²``):

* **Teacher.** A rank-``r`` product ``P* = U diag(s) Vᵀ`` (``r = H/2``: the model is singular and
  λ < d/2), ``U, V`` the singular vectors of a Gaussian matrix, its singular values normalised to
  ``s_1 = 1`` and floored at ``1/max_condition``. ``λ, m = theory.dln.learning_coefficient(widths,
  r)`` (Aoyagi 2024). For equal widths λ is the regular part ``r(2H − r)/2`` (the dimension of the
  rank-``r`` matrices, over 2) plus the λ of a rank-0 DLN of width ``H − r`` (the dead units):
  96 + 20 at ``H = 16``, 9,600 + 2,000 at ``H = 160``.
* **Data.** ``x ~ N(0, I)``, ``y = P* x + N(0, σ²I)``, σ = 1, ``n`` pairs; ``nβ = n / log n``.
* **The point w\\*: the empirical minimiser, not the teacher.** With the empirical loss, λ̂ at the
  teacher carries a bias ``−βν`` (ν the singular fluctuation; ``−β ≈ −1/log n`` relative for a
  regular model): the teacher is not where ``L_n`` is lowest. Gradient descent from the teacher's
  minimal factorisation (:func:`toymodels.models.dln.teacher_from_product`) keeps every layer in
  the rank-``r`` stratum (the gradient ``(W_L⋯W_{i+1})ᵀ G (W_{i−1}⋯W_1)ᵀ`` lies in the signal
  block) and converges to the rank-``r`` least-squares product in the metric of ``S = XᵀX/n``,
  which has a closed form: ``P̂ = [P_ols S^{1/2}]_r S^{−1/2}`` (``[·]_r`` the truncated SVD,
  ``P_ols = (YᵀX)(XᵀX)^{−1}``). ``w*`` is its balanced factorisation; the JSON records the
  full-batch gradient norm there (float64) and ``nβ (L_n(teacher) − L_n(w*))``. The exact
  sampler on the same data (below, first size) shows the difference the point makes.
* **Sampler.** SGLD with minibatches of ``B`` drawn with replacement. The step size is
  ``step_size="auto"``'s: :func:`toymodels.calibrate` (its rule: the largest ε whose fitted
  step-size bias is within 1% with 95% confidence) with a bounded grid (``calibration_*``
  settings, the same at every size), passed to ``estimate_llc(step_size="auto",
  calibration=...)``. The run length is set here, not by the auto schedule (below).
* **λ̂ is measured from where ``w*`` puts the chains.** Chains start at ``w*`` (``num_burnin_steps``
  given, so no relaxation) and run for a *diffusion time* ``T = ε × steps`` (the variance a free
  coordinate accumulates); the first half is burn-in. ``T`` is the one budgeted quantity, in
  ``steps = min(T/ε, max_steps_per_chain)``: the JSON says which bound applied.

Why these settings (measured on this suite, numbers in the docstring are from the prototypes of
this file at ``H = 16`` and ``H = 50``, nβ = 8,686):

* **Minibatch noise sets ε.** The gradient of a minibatch of ``B`` has covariance ``≈ H_L/B``
  (the Fisher), so SGLD's noise in a direction of curvature ``a`` is inflated by
  ``1 + (ε nβ a) nβ/(4B)``: with ``nβ/B`` large, a step that would be fine for full-batch SGLD
  (``ε nβ h_max = 0.1``) gave λ̂ = 173 against 108 at ``H = 16``, ``B = 256``. The calibration sees
  this and chooses ``ε nβ h_max ≈ 0.01`` (``B = 1024``); ``B = 1024`` rather than 256 because a step
  costs much less than 4× as much (8.8 against 4.1 ms per chain-step at ``d = 10⁵``, one thread)
  while the noise is 4× smaller.
* **The dead units set the run length.** At ``w*`` the ``H − r`` dead units of each hidden layer
  are exactly zero; their share of λ (17% here) is reached only once they have diffused to their
  equilibrium scale (variance of order ``(nβ k³)^{−1/4}``, ``k = H − r``), a diffusion time of a few
  hundredths whatever ε is. The exact sampler (MALA on the closed-form loss, population moments,
  γ = 10) at ``H = 16`` gives −7.1% at ``T = 0.1`` and −5.5% at ``T = 0.4``; at ``H = 50`` −6.2% at
  ``T = 0.05``. Minibatch SGLD at ``H = 16`` (``B = 256``, ``ε nβ h_max = 0.0066``, ``T = 0.05``)
  gave −6.5% ± 2.6%, what the exact sampler gives. With ε ≈ 2·10⁻⁷, ``T = 0.05`` is 2.5·10⁵
  steps; at ``d = 10⁵`` (7.6 ms a chain-step on one thread) that is half an hour per chain.
* **γ = 10 at every size.** Regular directions of curvature ``a`` contribute ``nβa/(nβa + γ)/2``
  instead of 1/2; the softest here have ``a ≈ 0.3``, so ``nβ a/γ ≈ 260`` (0.4%). A larger γ shortens
  the relaxation of the flat directions (time ``2/γ``) but clips the dead units: at ``H = 50`` and
  ``T = 0.05`` the exact sampler gives −8.2% at γ = 31 against −6.2% at γ = 10; at ``H = 16`` and
  ``T = 0.1``, γ = 100 gives −17% (the dead units' share lost entirely).
* **n = 10⁵.** The estimator's own finite-nβ shortfall (exact sampler, long runs) is about −9% at
  ``n = 10⁴`` and ``3·10⁴`` and −3 to −6% at ``10⁵``: smaller ``n`` would make runs cheaper (ε grows
  like ``1/nβ²``) but leaves no room under 10%.
* **Reference: the exact sampler on the same posterior.** For every size, MALA
  (:class:`toymodels.MALA`) on :class:`toymodels.models.dln.DLNObjective` built from the *same
  dataset's* sufficient statistics, at the same ``w*``, nβ, γ and diffusion time ``T``
  (``ε = 0.1/(nβ h_ref)``, ``h_ref = L max(1, ŝ_1^{2(L−1)/L}) ||S||/σ²``): what an exact sampler
  reaches in the same diffusion time. The gap between λ̂ and this is the SGLD's (step size,
  minibatch noise); the gap between this and λ is the estimator's at this nβ, γ and T.
* **Threads: one** (``num_threads = 1``): on this shared two-core machine two threads were 10×
  slower at ``d = 10⁵`` (39 against 4 ms per chain-step).

**Result of the default run** (this machine, shared, one thread; 784 s in all):

=======  ====  ==========  ========  =====================  ========  ==========  ======  =====================
d        H, r  λ (Aoyagi)  regular   λ̂ ± MCSE (SGLD)        T         steps       s       exact sampler, same T
=======  ====  ==========  ========  =====================  ========  ==========  ======  =====================
1,024    16, 8     116        96     108.2 ± 2.2  (−6.8%)   0.050     125,001     162     104.4 ± 0.7 (−10.0%)
10,000   50, 25   1,133     937.5    989.4 ± 6.8  (−12.7%)  0.011     40,000 cap  202     979.2 ± 7.0 (−13.6%)
102,400  160, 80  11,600    9,600    9,767 ± 20   (−15.8%)  0.0029    15,000 cap  325     9,638 ± 45 (−16.9%)
=======  ====  ==========  ========  =====================  ========  ==========  ======  =====================

(seconds: calibration included, 37, 45 and 98 s.) At every size λ̂ agrees with the exact sampler
of the same posterior at the same diffusion time to within 1–4%, so the users' path measures that
posterior correctly at 10⁵ parameters; what separates both from Aoyagi's λ is the run length.
Within 10% only where the run reached ``T = 0.05`` (d = 10³); the exact sampler there goes on to
−6.4% at ``T = 0.2``. At 10⁴ and 10⁵ the step cap stopped the chains at ``T = 0.011`` and
``0.0029``, where the dead units have barely grown (the right panel: still rising;
``result.diagnose()`` says "still drifting" at 10⁵); ``T = 0.05`` would take about 12 and 66
minutes of sampling. The exact sampler at the *teacher* on the same data gives −16.3% against
−10.0% at ``w*`` (d = 10³, ``T = 0.05``): the −βν bias that measuring at the empirical minimiser
avoids. (``diagnose()`` also flags "escaped" at the two smaller sizes: half the draws' minibatch
losses are below ``L(w*)`` because their spread, ``nβ sqrt(Var ℓ/B)``, is 6.5 and 2.3 times λ
there, not because the chains left.)

Outputs: a printed table; ``results/dln_at_scale.json`` (rewritten after each size: λ̂ ± MCSE,
λ, relative error, seconds, settings, λ̂ in windows of the draws, the references);
``figures/dln_at_scale.png`` (λ̂/λ against d with the ±10% band; λ̂/λ against diffusion time).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.dln import learning_coefficient
from toymodels import calibrate, estimate_llc
from toymodels.models.dln import (
    DLNObjective,
    SufficientStatistics,
    gaussian_nll_loss,
    make_data,
    teacher_from_product,
)


@dataclass
class Config(ExperimentConfig):
    """λ̂ of deep linear networks from 10³ to 10⁵ parameters by minibatch SGLD, against Aoyagi's λ."""

    seed: int = 0
    """seed of the teachers (seed + i for size i), the datasets (seed + 100 + i) and the samplers"""
    hidden_widths: tuple[int, ...] = (16, 50, 160)
    """H per size: every layer H × H, so d = depth · H² (1,024; 10,000; 102,400)"""
    depth: int = 4
    """number of layers L"""
    rank_fraction: float = 0.5
    """r = round(rank_fraction · H), the rank of the teacher's product"""
    max_condition: float = 4.0
    """the product's singular values are s/s_1 floored at 1/max_condition"""
    num_samples: int = 100_000
    """n; nβ = n / log n"""
    noise_std: float = 1.0
    """σ of the Gaussian output noise"""
    localization: float = 10.0
    """γ, the same at every size"""
    batch_size: int = 1024
    """SGLD minibatch size"""
    sampler: str = "sgld"
    """sgld or rmsprop_sgld"""
    num_chains: int = 2
    """chains per estimate"""
    diffusion_time: float = 0.05
    """T = ε × steps asked for (first half burn-in)"""
    max_steps_per_chain: tuple[int, ...] = (150_000, 40_000, 15_000)
    """cap on the steps per chain, per size (the time budget: about 2, 3 and 4 minutes of sampling
    on this machine)"""
    num_windows: int = 8
    """λ̂ is also reported in this many consecutive windows of the draws"""
    calibration_chains: tuple[int, ...] = (32, 8, 4)
    """chains per point of the calibration's bias grid, per size: the grid's λ̂ must resolve a
    step-size bias of a few percent through the noise of the minibatch losses, whose per-draw
    spread relative to λ (nβ sqrt(Var ℓ / B) / λ) is 6.5, 2.3 and 0.2 at the three default sizes;
    more chains where that ratio is large, and where they are cheap (small networks' chains are
    vmapped). With 4 chains at H = 16 the rule chose ε = 1.1e-7, with 32 chains 4.1e-7"""
    calibration_draws: int = 200
    """draws (after as many burn-in steps) per point of the bias grid"""
    calibration_step_sizes: int = 7
    """points of the bias grid, a factor 2 apart"""
    calibration_scan_steps: int = 50
    """steps per point of the stability scan (2 chains)"""
    calibration_relax_steps: int = 300
    """steps of the relaxation before the bias grid"""
    reference: bool = True
    """also run the exact sampler (MALA, closed-form loss of the same data) at each size"""
    reference_chains: int = 4
    """chains of the exact sampler"""
    reference_step_fraction: float = 0.1
    """ε nβ h_ref of the exact sampler"""
    teacher_reference_sizes: int = 1
    """for this many sizes, also the exact sampler at the teacher (shows the −βν bias)"""
    long_reference_time: float = 0.2
    """diffusion time of a longer run of the exact sampler at w* (where the dead units have grown)"""
    long_reference_sizes: int = 1
    """for this many sizes (the cheap ones), also that longer exact run"""
    progress: bool = False
    """show the samplers' progress bars"""

    QUICK = dict(hidden_widths=(6,), num_samples=2_000, batch_size=128, diffusion_time=0.01,
                 max_steps_per_chain=(300,), num_windows=4, calibration_chains=(2,),
                 calibration_draws=20, calibration_step_sizes=3, calibration_scan_steps=10,
                 calibration_relax_steps=20, reference_chains=2, long_reference_time=0.02)


def check_config(cfg: Config) -> None:
    for name in ("max_steps_per_chain", "calibration_chains"):
        if len(getattr(cfg, name)) != len(cfg.hidden_widths):
            raise ValueError(f"{name} needs one value per size: {len(cfg.hidden_widths)} sizes "
                             f"{cfg.hidden_widths}, got {getattr(cfg, name)}")
    if min(cfg.calibration_chains) < 2:
        raise ValueError(f"calibration_chains must be at least 2 (the fit needs a spread over "
                         f"chains), got {cfg.calibration_chains}")
    if cfg.depth < 2:
        raise ValueError(f"depth must be at least 2, got {cfg.depth}")
    if not 0 < cfg.rank_fraction < 1:
        raise ValueError(f"rank_fraction must be in (0, 1) (a singular model, λ < d/2), got {cfg.rank_fraction}")
    if cfg.num_chains < 2:
        raise ValueError(f"num_chains must be at least 2 (R-hat needs two), got {cfg.num_chains}")


def nbeta_of(n: int) -> float:
    return n / math.log(n)


def teacher_product(hidden: int, rank: int, max_condition: float, seed: int) -> torch.Tensor:
    """``P* = U diag(s) Vᵀ`` of rank ``rank`` (float64): ``U, V, s`` from a Gaussian matrix,
    ``s`` normalised to ``s_1 = 1`` and floored at ``1/max_condition``."""
    g = torch.Generator().manual_seed(seed)
    U, s, Vh = torch.linalg.svd(torch.randn(hidden, hidden, generator=g, dtype=torch.float64))
    s = (s[:rank] / s[0]).clamp_min(1.0 / max_condition)
    return (U[:, :rank] * s) @ Vh[:rank]


def empirical_minimiser(X: torch.Tensor, Y: torch.Tensor, rank: int) -> torch.Tensor:
    """The rank-``rank`` product minimising the empirical NLL: ``[P_ols S^{1/2}]_r S^{−1/2}``
    (module docstring), float64."""
    X, Y = X.double(), Y.double()
    n = X.shape[0]
    S = X.T @ X / n
    P_ols = torch.linalg.solve(S, X.T @ Y / n).T
    evals, evecs = torch.linalg.eigh(S)
    root, inv_root = (evecs * evals.sqrt()) @ evecs.T, (evecs / evals.sqrt()) @ evecs.T
    U, s, Vh = torch.linalg.svd(P_ols @ root)
    return (U[:, :rank] * s[:rank]) @ Vh[:rank] @ inv_root


def student(layers, dtype=torch.float32) -> nn.Sequential:
    """``nn.Sequential`` of bias-free ``nn.Linear`` layers holding ``layers`` (``W_i``: out × in)."""
    model = nn.Sequential(*[nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=dtype) for W in layers])
    with torch.no_grad():
        for lin, W in zip(model, layers):
            lin.weight.copy_(W.to(dtype))
    return model


def full_batch_gradient_norm(layers, X, Y, noise_std: float) -> float:
    """``||∇L_n||`` at the layers, in float64 (a check that ``w*`` is a critical point)."""
    model = student(layers, torch.float64)
    loss = gaussian_nll_loss(noise_std)(model(X.double()), Y.double())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return float(torch.sqrt(sum((g ** 2).sum() for g in grads)))


def nll(P: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, noise_std: float) -> float:
    return float(gaussian_nll_loss(noise_std)(X.double() @ P.T, Y.double()))


def exact_reference(widths, center: torch.Tensor, stats: SufficientStatistics, cfg: Config,
                    nbeta: float, diffusion_time: float, seed: int) -> dict:
    """MALA on the closed-form NLL of ``stats`` at ``center`` for ``diffusion_time`` (half burn-in)."""
    start = time.perf_counter()
    L = len(widths) - 1
    s1 = float(torch.linalg.svdvals(stats.center_product)[0])
    input_norm = float(torch.linalg.matrix_norm(stats.input_moment, ord=2))
    h_ref = L * max(1.0, s1 ** (2 * (L - 1) / L)) * input_norm / cfg.noise_std**2
    eps = cfg.reference_step_fraction / (nbeta * h_ref)
    steps = max(4, math.ceil(diffusion_time / eps))
    objective = DLNObjective(widths, stats, center, cfg.noise_std)
    res = estimate_llc(objective, nbeta=nbeta, localization=cfg.localization, step_size=eps,
                       sampler="mala", num_chains=cfg.reference_chains, num_burnin_steps=steps // 2,
                       num_draws=steps - steps // 2, seed=seed, progress=cfg.progress, num_threads=1)
    return dict(llc=res.llc_mean, mcse=res.mcse, step_size=eps, steps=steps,
                diffusion_time=eps * steps,
                acceptance=None if res.acceptance_rate is None else float(np.mean(res.acceptance_rate)),
                seconds=time.perf_counter() - start)


def windows(result, nbeta: float, num_windows: int) -> list[float]:
    """λ̂ over consecutive windows of the draws (chains pooled)."""
    trace = np.asarray(result.loss_trace, dtype=np.float64)
    edges = np.linspace(0, trace.shape[1], num_windows + 1).astype(int)
    return [float(nbeta * (trace[:, a:b].mean() - result.init_loss))
            for a, b in zip(edges[:-1], edges[1:]) if b > a]


def measure_size(index: int, hidden: int, cfg: Config) -> dict:
    L = cfg.depth
    widths = (hidden,) * (L + 1)
    rank = max(1, round(cfg.rank_fraction * hidden))
    d = L * hidden * hidden
    lam, multiplicity = learning_coefficient(widths, rank)
    n, nbeta = cfg.num_samples, nbeta_of(cfg.num_samples)

    P_star = teacher_product(hidden, rank, cfg.max_condition, cfg.seed + index)
    X, Y = make_data(P_star, n, noise_std=cfg.noise_std, seed=cfg.seed + 100 + index)
    P_hat = empirical_minimiser(X, Y, rank)
    point = teacher_from_product(P_hat, widths, seed=cfg.seed + index, rank=rank)
    grad_norm = full_batch_gradient_norm(point.layers, X, Y, cfg.noise_std)
    teacher_gap = nbeta * (nll(P_star, X, Y, cfg.noise_std) - nll(P_hat, X, Y, cfg.noise_std))

    model = student(point.layers)
    data = (X.float(), Y.float())
    loss_fn = gaussian_nll_loss(cfg.noise_std)
    start = time.perf_counter()
    calibration = calibrate(
        model, data=data, loss_fn=loss_fn, batch_size=cfg.batch_size, localization=cfg.localization,
        sampler=cfg.sampler, num_chains=cfg.calibration_chains[index], num_draws=cfg.calibration_draws,
        num_burnin_steps=cfg.calibration_draws, num_step_sizes=cfg.calibration_step_sizes,
        max_rounds=1, scan_chains=2, scan_steps=cfg.calibration_scan_steps,
        relax_max_steps=cfg.calibration_relax_steps, seed=cfg.seed + 1, progress=cfg.progress)
    calibration_seconds = time.perf_counter() - start
    choice = calibration.choice()
    eps = choice.step_size
    wanted = math.ceil(cfg.diffusion_time / eps)
    cap = cfg.max_steps_per_chain[index]
    steps = max(4, min(wanted, cap))
    result = estimate_llc(model, data=data, loss_fn=loss_fn, batch_size=cfg.batch_size,
                          step_size="auto", calibration=calibration, localization=cfg.localization,
                          sampler=cfg.sampler, num_chains=cfg.num_chains,
                          num_burnin_steps=steps // 2, num_draws=steps - steps // 2,
                          num_steps_bw_draws=1, seed=cfg.seed, progress=cfg.progress)
    seconds = time.perf_counter() - start
    sampling_seconds = seconds - calibration_seconds
    s_hat = torch.linalg.svdvals(P_hat)[:rank]
    h_max = L * float(s_hat[0]) ** (2 * (L - 1) / L)  # stiffest Gauss–Newton direction, S ≈ I
    diagnosis = result.diagnose(echo=None)
    row = dict(
        hidden=hidden, widths=list(widths), depth=L, rank=rank, num_parameters=d,
        llc_exact=str(lam), llc_exact_float=float(lam), multiplicity=multiplicity,
        regular_part=rank * (2 * hidden - rank) / 2,
        llc=result.llc_mean, mcse=result.mcse, rel_error=result.llc_mean / float(lam) - 1,
        rel_mcse=result.mcse / float(lam), llc_per_chain=list(map(float, result.llc_per_chain)),
        rhat=result.rhat, ess=result.ess,
        seconds=seconds, calibration_seconds=calibration_seconds, sampling_seconds=sampling_seconds,
        seconds_per_chain_step=sampling_seconds / (steps * cfg.num_chains),
        step_size=eps, step_times_nbeta_hmax=eps * nbeta * h_max, steps_per_chain=steps,
        steps_wanted=wanted, capped=wanted > cap, diffusion_time=eps * steps,
        seconds_for_diffusion_time=wanted * cfg.num_chains * sampling_seconds / (steps * cfg.num_chains),
        window_llc=windows(result, nbeta, cfg.num_windows),
        calibration=dict(llc_zero_step=choice.llc_zero_step, rel_slope=choice.rel_slope,
                         step_size_max=choice.step_size_max, reason=choice.reason,
                         fit_points=list(choice.fit_points)),
        gradient_norm_at_w_star=grad_norm, nbeta_teacher_minus_w_star=teacher_gap,
        nbeta=nbeta, init_loss=result.init_loss,
        diagnosis=[f"[{f.severity}] {f.code}: {f.message}" for f in diagnosis.findings],
        product_singular_values=[float(v) for v in s_hat[[0, -1]]],
    )
    if cfg.reference:
        stats = SufficientStatistics.from_data(X, Y, P_hat)
        row["reference_w_star"] = exact_reference(widths, point.flat, stats, cfg, nbeta,
                                                  row["diffusion_time"], cfg.seed + 7)
        if index < cfg.long_reference_sizes:
            row["reference_w_star_long"] = exact_reference(widths, point.flat, stats, cfg, nbeta,
                                                       cfg.long_reference_time, cfg.seed + 7)
        if index < cfg.teacher_reference_sizes:
            teacher = teacher_from_product(P_star, widths, seed=cfg.seed + index, rank=rank)
            stats_t = SufficientStatistics.from_data(X, Y, P_star)
            row["reference_teacher"] = exact_reference(widths, teacher.flat, stats_t, cfg, nbeta,
                                                       row["diffusion_time"], cfg.seed + 7)
    return row


def _print_row(row: dict) -> None:
    ref = row.get("reference_w_star")
    print(f"H={row['hidden']:4d} d={row['num_parameters']:7d} r={row['rank']:3d} m={row['multiplicity']}  "
          f"λ={row['llc_exact_float']:8.1f}  λ̂={row['llc']:8.1f} ± {row['mcse']:6.1f} "
          f"({100 * row['rel_error']:+5.1f}%)  ε={row['step_size']:.2e} steps={row['steps_per_chain']}"
          f"{' (capped)' if row['capped'] else ''} T={row['diffusion_time']:.4f}  "
          f"{row['seconds']:6.0f} s (calibration {row['calibration_seconds']:.0f} s)"
          + (f"  exact sampler: {ref['llc']:.1f} ± {ref['mcse']:.1f} ({100 * (ref['llc'] / row['llc_exact_float'] - 1):+.1f}%)"
             if ref else ""), flush=True)
    for key, label in (("reference_w_star_long", "exact sampler at w*, longer"),
                       ("reference_teacher", "exact sampler at the teacher")):
        if key in row:
            r = row[key]
            print(f"    {label}: T={r['diffusion_time']:.3f} λ̂={r['llc']:.1f} ± {r['mcse']:.1f} "
                  f"({100 * (r['llc'] / row['llc_exact_float'] - 1):+.1f}%), {r['seconds']:.0f} s", flush=True)


@uses_threads
def main(cfg: Config) -> dict:
    check_config(cfg)
    paths = output_paths(cfg, "dln_at_scale")
    start = time.perf_counter()
    rows: list[dict] = []
    report = dict(config=asdict(cfg), nbeta=nbeta_of(cfg.num_samples), sizes=rows)
    for index, hidden in enumerate(cfg.hidden_widths):
        rows.append(measure_size(index, hidden, cfg))
        _print_row(rows[-1])
        report.update(seconds=time.perf_counter() - start, summary=_summary(rows))
        write_json(paths.json, report)  # after each size, so a long run leaves what it measured
    s = report["summary"]
    print(f"worst |λ̂/λ − 1| = {100 * s['worst_abs_rel_error']:.1f}% (at d = {s['worst_num_parameters']}); "
          f"within 10% at every size: {s['all_within_10_percent']}; total {report['seconds']:.0f} s")
    _plot(report, paths.figure)
    return report


def _summary(rows: list[dict]) -> dict:
    worst = max(rows, key=lambda r: abs(r["rel_error"]))
    return dict(worst_abs_rel_error=abs(worst["rel_error"]), worst_num_parameters=worst["num_parameters"],
                all_within_10_percent=all(abs(r["rel_error"]) <= 0.10 for r in rows),
                largest_num_parameters=max(r["num_parameters"] for r in rows),
                any_capped=any(r["capped"] for r in rows))


def _plot(report: dict, path) -> None:
    from matplotlib.figure import Figure

    rows = report["sizes"]
    fig = Figure(figsize=(11, 4.4))
    ax, ax2 = fig.subplots(1, 2)
    d = [r["num_parameters"] for r in rows]
    ax.axhspan(0.9, 1.1, color="g", alpha=0.12, label="±10%")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.errorbar(d, [r["llc"] / r["llc_exact_float"] for r in rows],
                yerr=[2 * r["mcse"] / r["llc_exact_float"] for r in rows], fmt="o", capsize=3,
                label="λ̂, minibatch SGLD on nn.Module (2 MCSE)")
    refs = [(r["num_parameters"], r["reference_w_star"]["llc"] / r["llc_exact_float"]) for r in rows
            if "reference_w_star" in r]
    if refs:
        ax.plot(*zip(*refs), "x", ms=8, label="exact sampler, same data, w* and T")
    ax.plot(d, [r["regular_part"] / r["llc_exact_float"] for r in rows], "_", ms=14, color="grey",
            label="regular part r(2H−r)/2 only")
    for r in rows:
        ax.annotate(f"{r['seconds']:.0f} s, T={r['diffusion_time']:.3f}", (r["num_parameters"],
                    r["llc"] / r["llc_exact_float"]), textcoords="offset points", xytext=(8, 4),
                    fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(min(d) / 2, max(d) * 3)
    ax.set_ylim(0.78, 1.12)
    ax.set_xlabel("number of parameters d")
    ax.set_ylabel("λ̂ / λ (Aoyagi)")
    ax.set_title(f"DLN, depth {rows[0]['depth']}, r = H/2, nβ = {report['nbeta']:.0f}, "
                 f"γ = {report['config']['localization']:g}")
    ax.legend(fontsize=7, loc="upper right")
    for r in rows:
        T, k = r["diffusion_time"], len(r["window_llc"])
        t = [T / 2 + (i + 0.5) * T / (2 * k) for i in range(k)]
        ax2.plot(t, [v / r["llc_exact_float"] for v in r["window_llc"]], "o-", ms=3,
                 label=f"d = {r['num_parameters']:,}")
    for i, r in enumerate(rows):
        for key, marker in (("reference_w_star", "x"), ("reference_w_star_long", "*")):
            if key in r:
                ax2.plot(r[key]["diffusion_time"], r[key]["llc"] / r["llc_exact_float"], marker,
                         color=f"C{i}", ms=8)
    ax2.plot([], [], "kx", label="exact sampler, same T")
    ax2.plot([], [], "k*", label="exact sampler, longer T")
    ax2.axhspan(0.9, 1.1, color="g", alpha=0.12)
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_ylim(0.78, 1.12)
    ax2.set_xlabel("diffusion time T = ε × steps (SGLD: windows of the draws)")
    ax2.set_ylabel("λ̂ / λ in the window")
    ax2.set_title("the dead units still growing where the run is short")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    run(main, Config)
