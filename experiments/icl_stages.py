"""Reproduces Hoogland et al. 2024 (arXiv 2402.02364), Figure 1: loss and LLC over training of an in-context linear-regression transformer, stages LR1 and LR2, at CPU scale.

The task is the paper's (D = 4, K = 8, σ² = 0.125, M = ∞: a fresh task ``w ~ N(0, I_4)`` for every
sequence). Changed from the paper to fit CPU minutes: a d = 32, 4-head, 2-layer model with MLP width
64 (17,857 parameters instead of ~50k), position embeddings initialised at scale 0.02, batch 64
instead of 256, and 80k steps instead of 500k with a one-cycle schedule (warm-up, cosine decay), so
the run covers LR1 and LR2 and stops there; the LLC sampler uses the paper's ε = 3e-4, nβ = 66.7,
γ = 6.67 but 2 chains × 200 draws per checkpoint instead of 10 × 5000 (draws start at w* and are
averaged from the first step, so λ̂ is that of a short, not fully mixed chain).
The training step (forward and backward) is compiled with TorchInductor and Adam uses its
``foreach`` kernels: 3.7 ms a step against 5.4 eager, which is what keeps 80k steps within the
10-minute budget on 2 cores (the loss needs about 70k steps to come within 10% of ridge: 60k end at
+10.8%).

Loss scaling for the LLC: the plain MSE averaged over sequences and positions (``icl_mse``), as in
the paper; λ̂ = nβ (E[MSE] − MSE(w*)) on a fixed set of ``llc_data_size`` sequences.

Stages, read from the loss as the paper does from its curves:
* LR1 ends at the last checkpoint before in-context learning starts, i.e. before the drop of the
  loss from the first to the last position exceeds ``icl_onset_fraction`` of ridge's drop
  ``R(1) − R(K)``; in LR1 the model predicts the prior mean 0 and the first-position loss tends to
  ``D + σ² = 4.125``.
* LR2 ends where the run ends (the budget covers LR1 and LR2); there the loss should be near the
  ridge Bayes risk 1.659 (``theory.icl.ridge_mean_bayes_risk``). In these runs λ̂ peaks early in LR2
  (near 1–2k steps, when the loss falls fastest) and then settles about a third lower while the loss
  keeps creeping toward ridge, which resembles the paper's LR3 (λ̂ falls while the loss still falls);
  the summary reports the peak's step and the loss there.

The loss is evaluated with the exact ridge risk as a control variate. At M = ∞ ridge is the posterior
mean, so for any predictor f of the context ``E(f − y)² = R_ridge(k) + E(f − ridge)²`` at every
position k (the cross term vanishes; tested in tests/models/test_icl.py). The loss per position is therefore
reported as the exact ``R_ridge(k)`` (``theory.icl``) plus the Monte-Carlo mean of ``(f − ridge)²`` on
a fixed evaluation set, whose only noise is that of the excess; at position 1 (ridge predicts 0)
this is ``D + σ² + E f(x_1)²``. The plain Monte-Carlo loss is reported beside it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json  # noqa: E402
from theory.icl import first_position_bayes_risk, ridge_bayes_risks  # noqa: E402
from toymodels import estimate_llc  # noqa: E402
from toymodels.models.icl import (  # noqa: E402
    InContextRegression,
    icl_mse,
    log_spaced_steps,
    position_risks,
    ridge_predictions,
    warmup_cosine_lr,
)
from toymodels.models.transformer import ICLTransformer, ICLTransformerConfig, tokenize_icl  # noqa: E402


@dataclass
class Config(ExperimentConfig):
    """Training a small in-context regression transformer and measuring λ̂ at log-spaced checkpoints."""

    seed: int = 0
    """Seed of the model initialisation; the data, evaluation and LLC seeds are derived from it."""
    num_threads: int = 2
    """torch intra-op threads: 2 uses both cores (about 1.25x faster than 1 on an idle machine); use 1 on a machine shared with other jobs, where 2 threads contend."""
    compile: bool = True
    """Compile the training step's forward and backward with TorchInductor (measured 3.7 against 5.4 ms per step with the foreach Adam; about 15 s to compile). Falls back to eager if compilation fails. Evaluation and λ̂ always run the eager module."""

    dim: int = 4
    """D, the task dimension (paper: 4)."""
    num_examples: int = 8
    """K, pairs per sequence (paper: 8)."""
    noise_variance: float = 0.125
    """σ², the label noise variance (paper: 0.125)."""

    d_model: int = 32
    """Residual width (paper: 64)."""
    num_layers: int = 2
    """Transformer blocks (paper: 2)."""
    num_heads: int = 4
    """Attention heads (paper: 4)."""
    d_mlp: int = 64
    """MLP hidden width (paper: 64)."""
    position_init_std: float = 0.02
    """Standard deviation of the initial position embeddings (GPT-2's 0.02; N(0, 1) delays LR2 by ~3x)."""

    num_steps: int = 80000
    """Adam steps (paper: 500k at batch 256, LR2 ending near 40k of them)."""
    batch_size: int = 64
    """Sequences per step (paper: 256)."""
    peak_lr: float = 3e-3
    """Peak learning rate of the one-cycle schedule (paper: 3e-3)."""
    warmup_steps: int = 1000
    """Linear warm-up steps before the cosine decay."""
    num_checkpoints: int = 20
    """Log-spaced checkpoints at which the loss and λ̂ are measured."""
    eval_size: int = 16384
    """Sequences in the fixed evaluation set (loss per position)."""

    llc_step_size: float = 3e-4
    """SGLD step size ε (paper: 3e-4)."""
    llc_nbeta: float = 66.7
    """nβ for the plain-MSE loss (paper: 66.7)."""
    llc_localization: float = 6.67
    """Localisation γ (paper: 6.67)."""
    llc_num_chains: int = 2
    """SGLD chains per checkpoint (paper: 10)."""
    llc_num_draws: int = 200
    """Draws per chain (paper: 5000)."""
    llc_batch_size: int = 64
    """SGLD minibatch size."""
    llc_data_size: int = 4096
    """Sequences in the fixed dataset the LLC is measured on."""

    icl_onset_fraction: float = 0.1
    """In-context learning has started once loss(position 1) − loss(position K) exceeds this fraction of ridge's."""

    QUICK = dict(compile=False, num_steps=300, warmup_steps=30, num_checkpoints=6, eval_size=1024,
                 llc_num_draws=20, llc_data_size=256)


def _loss_per_position(predictions: torch.Tensor, ridge: torch.Tensor, ridge_risks: list[float]):
    """``R_ridge(k) + mean (f − ridge)²`` per position, its standard error per position, and the
    standard error of the mean over positions (module docstring)."""
    excess = (predictions.double() - ridge).square()  # (N, K)
    n = excess.shape[0]
    se = (excess.std(dim=0) / math.sqrt(n)).numpy()
    mean_se = excess.mean(dim=1).std().item() / math.sqrt(n)
    return np.asarray(ridge_risks) + excess.mean(dim=0).numpy(), se, mean_se


@uses_threads
def main(cfg: Config) -> dict:
    start_time = time.perf_counter()

    # Derived quantities and seeding: one generator per stream, all from cfg.seed.
    task = InContextRegression(dim=cfg.dim, num_examples=cfg.num_examples, noise_variance=cfg.noise_variance)
    model_config = ICLTransformerConfig(
        dim=cfg.dim, num_examples=cfg.num_examples, d_model=cfg.d_model, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, d_mlp=cfg.d_mlp, position_init_std=cfg.position_init_std,
    )
    init_generator = torch.Generator().manual_seed(cfg.seed)
    data_generator = torch.Generator().manual_seed(10_000 + cfg.seed)
    model = ICLTransformer(model_config, init_generator)
    num_parameters = sum(p.numel() for p in model.parameters())
    evaluation = task.sample(cfg.eval_size, torch.Generator().manual_seed(20_000 + cfg.seed))
    eval_tokens = tokenize_icl(evaluation.xs, evaluation.ys)
    eval_ridge = ridge_predictions(evaluation.xs.double(), evaluation.ys.double(), cfg.noise_variance)
    llc_data = task.sample(cfg.llc_data_size, torch.Generator().manual_seed(30_000 + cfg.seed))
    llc_inputs, llc_targets = tokenize_icl(llc_data.xs, llc_data.ys), llc_data.ys
    ridge_risks = ridge_bayes_risks(cfg.num_examples, cfg.dim, cfg.noise_variance)
    ridge_mean = float(np.mean(ridge_risks))
    prior_risk = first_position_bayes_risk(cfg.dim, cfg.noise_variance)
    checkpoints = set(log_spaced_steps(cfg.num_steps, cfg.num_checkpoints))

    # foreach: one kernel per Adam operation over all 31 parameter tensors, not 31 (0.3 ms a step)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.peak_lr, foreach=True)
    train_forward = torch.compile(model) if cfg.compile else model  # shares model's parameters
    compile_note = "compiled" if cfg.compile else "eager"
    records = []
    train_seconds = llc_seconds = 0.0
    for step in range(cfg.num_steps + 1):
        if step in checkpoints:
            t0 = time.perf_counter()
            with torch.no_grad():
                predictions = model(eval_tokens)
            losses, errors, mean_error = _loss_per_position(predictions, eval_ridge, ridge_risks)
            losses_mc, _ = position_risks(predictions, evaluation.ys)
            llc = estimate_llc(
                model, data=(llc_inputs, llc_targets), loss_fn=icl_mse, nbeta=cfg.llc_nbeta,
                step_size=cfg.llc_step_size, localization=cfg.llc_localization,
                num_chains=cfg.llc_num_chains, num_draws=cfg.llc_num_draws,
                batch_size=cfg.llc_batch_size, seed=cfg.seed * 1000 + step, progress=False,
                on_divergence="drop",
            )
            llc_seconds += time.perf_counter() - t0
            records.append(
                dict(
                    step=step,
                    loss_per_position=losses.tolist(),
                    loss_per_position_se=errors.tolist(),
                    mean_loss=float(losses.mean()),
                    mean_loss_se=mean_error,
                    mean_loss_plain_monte_carlo=losses_mc.mean().item(),
                    first_position_loss=float(losses[0]),
                    first_position_loss_se=float(errors[0]),
                    icl_drop=float(losses[0] - losses[-1]),
                    llc_mean=llc.llc_mean,
                    llc_mcse=llc.mcse,
                    llc_std=llc.llc_std,
                    llc_per_chain=[float(v) for v in llc.llc_per_chain],
                    llc_init_loss=llc.init_loss,
                )
            )
            print(f"  step {step:>6}: loss {losses.mean():.3f}, loss@1 {losses[0]:.3f}, λ̂ {llc.llc_mean:.1f} "
                  f"({time.perf_counter() - start_time:.0f} s)", flush=True)
        if step == cfg.num_steps:
            break
        t0 = time.perf_counter()
        for group in optimiser.param_groups:
            group["lr"] = warmup_cosine_lr(step, peak_lr=cfg.peak_lr, num_steps=cfg.num_steps, warmup_steps=cfg.warmup_steps)
        batch = task.sample(cfg.batch_size, data_generator)
        tokens = tokenize_icl(batch.xs, batch.ys)
        try:
            loss = icl_mse(train_forward(tokens), batch.ys)
        except Exception as exc:  # noqa: BLE001 - no working compiler: the same step, eager
            if train_forward is model:
                raise
            print(f"  compilation failed ({type(exc).__name__}); training eagerly", flush=True)
            train_forward, compile_note = model, f"eager (compilation failed: {type(exc).__name__})"
            loss = icl_mse(model(tokens), batch.ys)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        train_seconds += time.perf_counter() - t0

    # Stage boundaries (module docstring).
    ridge_drop = ridge_risks[0] - ridge_risks[-1]
    onset = next(
        (i for i, r in enumerate(records) if r["icl_drop"] > cfg.icl_onset_fraction * ridge_drop), len(records)
    )
    lr1_index = max(onset - 1, 0)
    lr2_index = len(records) - 1
    lr1, lr2 = records[lr1_index], records[lr2_index]
    peak = max(records[lr1_index:], key=lambda r: r["llc_mean"])
    summary = dict(
        lr1_end_step=lr1["step"],
        lr2_end_step=lr2["step"],
        first_position_loss_lr1=lr1["first_position_loss"],
        first_position_loss_lr1_relative_error=lr1["first_position_loss"] / prior_risk - 1.0,
        mean_loss_lr2=lr2["mean_loss"],
        mean_loss_lr2_relative_to_ridge=lr2["mean_loss"] / ridge_mean - 1.0,
        llc_lr1=lr1["llc_mean"],
        llc_lr2=lr2["llc_mean"],
        llc_ratio_lr2_over_lr1=lr2["llc_mean"] / lr1["llc_mean"] if lr1["llc_mean"] > 0 else float("nan"),
        llc_peak_step=peak["step"],
        llc_peak=peak["llc_mean"],
        mean_loss_at_llc_peak=peak["mean_loss"],
    )
    targets = dict(
        first_position_within_2_percent=abs(summary["first_position_loss_lr1_relative_error"]) <= 0.02,
        mean_loss_within_10_percent_of_ridge=abs(summary["mean_loss_lr2_relative_to_ridge"]) <= 0.10,
        llc_grows_5x=summary["llc_ratio_lr2_over_lr1"] >= 5.0,
    )
    wall_seconds = time.perf_counter() - start_time

    print(f"ICL stages: D={cfg.dim} K={cfg.num_examples} σ²={cfg.noise_variance}, {num_parameters} parameters, "
          f"{cfg.num_steps} steps × batch {cfg.batch_size}")
    print(f"{'step':>7} {'loss':>7} {'loss@1':>7} {'loss@K':>7} {'λ̂':>8} {'±mcse':>6}")
    for r in records:
        mark = " <- end LR1" if r is lr1 else (" <- end LR2" if r is lr2 else "")
        print(f"{r['step']:>7} {r['mean_loss']:7.3f} {r['first_position_loss']:7.3f} {r['loss_per_position'][-1]:7.3f} "
              f"{r['llc_mean']:8.2f} {r['llc_mcse']:6.2f}{mark}")
    print(f"references: D+σ² = {prior_risk:.3f}, ridge mean risk = {ridge_mean:.4f}")
    print(f"end LR1 (step {lr1['step']}): loss@1 {lr1['first_position_loss']:.3f} "
          f"({100 * summary['first_position_loss_lr1_relative_error']:+.2f}% of D+σ²), λ̂ {lr1['llc_mean']:.1f}")
    print(f"end LR2 (step {lr2['step']}): loss {lr2['mean_loss']:.3f} "
          f"({100 * summary['mean_loss_lr2_relative_to_ridge']:+.1f}% of ridge), λ̂ {lr2['llc_mean']:.1f} "
          f"(×{summary['llc_ratio_lr2_over_lr1']:.1f})")
    print(f"λ̂ peak: {summary['llc_peak']:.1f} at step {summary['llc_peak_step']} (loss there {summary['mean_loss_at_llc_peak']:.3f})")
    print(f"targets: {targets}")
    print(f"wall time {wall_seconds:.0f} s (training {train_seconds:.0f} s, {compile_note}; evaluation + LLC {llc_seconds:.0f} s)")

    result = dict(
        experiment="icl_stages",
        paper="Hoogland et al. 2024, arXiv 2402.02364, Figure 1",
        config=asdict(cfg),
        num_parameters=num_parameters,
        loss_scaling="plain MSE over sequences and positions (icl_mse)",
        ridge_bayes_risk_per_position=ridge_risks,
        ridge_mean_bayes_risk=ridge_mean,
        first_position_bayes_risk=prior_risk,
        checkpoints=records,
        summary=summary,
        targets=targets,
        wall_seconds=wall_seconds,
        train_seconds=train_seconds,
        training_step=compile_note,
        llc_and_eval_seconds=llc_seconds,
    )
    paths = output_paths(cfg, "icl_stages")
    write_json(paths.json, result)
    _plot(records, lr1, lr2, prior_risk, ridge_mean, ridge_risks, paths.figure)
    return result


def _plot(records, lr1, lr2, prior_risk, ridge_mean, ridge_risks, path: Path) -> None:
    steps = np.array([max(r["step"], 1) for r in records])  # step 0 drawn at 1 on the log axis
    fig, (ax_loss, ax_llc, ax_pos) = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_loss.plot(steps, [r["mean_loss"] for r in records], "o-", label="mean loss")
    ax_loss.plot(steps, [r["first_position_loss"] for r in records], "s-", label="loss at position 1")
    ax_loss.plot(steps, [r["loss_per_position"][-1] for r in records], "^-", label="loss at position K")
    ax_loss.axhline(prior_risk, color="gray", ls="--", label="D + σ² (prior mean)")
    ax_loss.axhline(ridge_mean, color="k", ls=":", label="ridge Bayes risk (mean)")
    ax_llc.errorbar(steps, [r["llc_mean"] for r in records], yerr=[2 * r["llc_mcse"] for r in records],
                    fmt="o-", color="C3", capsize=2, label="λ̂ ± 2 MCSE")
    for ax in (ax_loss, ax_llc):
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        for r, name in ((lr1, "LR1"), (lr2, "LR2")):
            ax.axvline(max(r["step"], 1), color="C2", alpha=0.6)
            ax.text(max(r["step"], 1), ax.get_ylim()[1], f" end {name}", va="top", fontsize=8, color="C2")
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("MSE")
    ax_llc.set_ylabel("λ̂ (nβ = 66.7, ε = 3e-4, γ = 6.67)")
    positions = np.arange(1, len(ridge_risks) + 1)
    ax_pos.plot(positions, ridge_risks, "k:", marker="x", label="ridge Bayes risk")
    for r, name in ((lr1, "end LR1"), (lr2, "end LR2")):
        ax_pos.errorbar(positions, r["loss_per_position"], yerr=[2 * e for e in r["loss_per_position_se"]],
                        fmt="o-", capsize=2, label=f"{name} (step {r['step']})")
    ax_pos.set_xlabel("position k")
    ax_pos.set_ylabel("loss at position k")
    ax_pos.legend(fontsize=8)
    fig.suptitle("In-context linear regression (D = 4, K = 8, σ² = 0.125): stages LR1 and LR2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
