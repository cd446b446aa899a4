# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. In-context linear regression: developmental stages
#
# *Run time: about 35 s on 2 CPU cores.* A transformer reads a sequence $(x_1, y_1, \dots, x_{k-1}, y_{k-1}, x_k)$ with
# $y_j = w^\top x_j + \mathcal N(0, \sigma^2)$ and a fresh task $w \sim N(0, I_D)$ per sequence, and predicts $y_k$. Nothing in
# the weights can memorise $w$: to do better than guessing it must *learn in context*. Hoogland et al.
# (arXiv 2402.02364, Fig. 1) found that training passes through **stages** separated by changes in the
# LLC: first (LR1) the model learns the prior mean and predicts $\hat y = 0$, whose loss is exactly
# $\mathbb{E}[y^2] = D + \sigma^2$; then (LR2) it learns to use the context, and the loss at later positions falls towards the
# Bayes-optimal predictor, ridge regression.
#
# Both reference values are exact (`theory.icl`, with sources in its docstring): the Bayes risk at
# position $k$ is $R_{\text{ridge}}(k) = \sigma^2 + \mathbb{E}\operatorname{tr}(I + X^\top X/\sigma^2)^{-1}$ over $(k-1)\times D$ Gaussian $X$, computed
# by quadrature from the Wishart eigenvalue density, with $R_{\text{ridge}}(1) = D + \sigma^2$.
#
# To fit a laptop minute the problem is smaller than the paper's: $D = 2$, $K = 4$ pairs, $\sigma^2 = 0.125$, a
# 2-layer transformer of width 16 (4,673 parameters), 3000 Adam steps of batch 64. The full-size run
# (D = 4, K = 8, 80k steps, ~8 minutes) is `python -m experiments.icl_stages`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from theory.icl import first_position_bayes_risk, ridge_bayes_risks, ridge_mean_bayes_risk
from toymodels import estimate_llc
from toymodels.models.icl import (
    InContextRegression,
    icl_mse,
    log_spaced_steps,
    ridge_predictions,
    warmup_cosine_lr,
)
from toymodels.models.transformer import ICLTransformer, ICLTransformerConfig, tokenize_icl

D, K, noise_variance = 2, 4, 0.125
task = InContextRegression(dim=D, num_examples=K, noise_variance=noise_variance)
ridge_risks = ridge_bayes_risks(K, D, noise_variance)
print("exact Bayes risk per position (ridge):", " ".join(f"{r:.4f}" for r in ridge_risks))
print(f"first position D + σ² = {first_position_bayes_risk(D, noise_variance):.4f}; "
      f"mean over positions {ridge_mean_bayes_risk(K, D, noise_variance):.4f}")

# %% [markdown]
# ## A check of the exact risks
#
# Ridge regression itself, run on 20,000 simulated sequences (`ridge_predictions`), should have exactly these
# risks. Its Monte-Carlo loss per position, ± one standard error:

# %%
evaluation = task.sample(20_000, torch.Generator().manual_seed(2), dtype=torch.float64)
ridge = ridge_predictions(evaluation.xs, evaluation.ys, noise_variance)      # (sequences, K)
squared = (ridge - evaluation.ys) ** 2
for k, exact in enumerate(ridge_risks, start=1):
    mc, se = squared[:, k - 1].mean().item(), squared[:, k - 1].std().item() / math.sqrt(squared.shape[0])
    print(f"position {k}: ridge loss = {mc:.4f} ± {se:.4f}   exact = {exact:.4f}")

# %% [markdown]
# ## Training with λ̂ at checkpoints
#
# At 8 log-spaced checkpoints we record the loss per position and estimate λ̂ with the paper's sampler settings
# (ε = 3e-4, nβ = 66.7, γ = 6.67 on the plain MSE, minibatches of 64) but only 4 chains × 150 draws, so λ̂ is
# a short-chain estimate. The loss per position is measured with ridge as a control variate: at $M = \infty$
# ridge is the posterior mean, so for any predictor $f$, $\mathbb{E}(f - y)^2 = R_{\text{ridge}}(k) + \mathbb{E}(f - \text{ridge})^2$ exactly, and only the
# (small) second term is estimated.

# %%
config = ICLTransformerConfig(dim=D, num_examples=K, d_model=16, num_layers=2, num_heads=2, d_mlp=32)
model = ICLTransformer(config, torch.Generator().manual_seed(0))
optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
data_generator = torch.Generator().manual_seed(1)
eval_tokens = tokenize_icl(evaluation.xs.float(), evaluation.ys.float())
llc_data = task.sample(1024, torch.Generator().manual_seed(3))
llc_inputs, llc_targets = tokenize_icl(llc_data.xs, llc_data.ys), llc_data.ys
num_steps = 3000
checkpoints = set(log_spaced_steps(num_steps, 8))
records = []
for step in range(num_steps + 1):
    if step in checkpoints:
        with torch.no_grad():
            excess = (model(eval_tokens).double() - ridge) ** 2
        llc = estimate_llc(model, data=(llc_inputs, llc_targets), loss_fn=icl_mse, nbeta=66.7,
                           step_size=3e-4, localization=6.67, num_chains=4, num_draws=150,
                           batch_size=64, seed=step, progress=False)
        records.append(dict(step=step, loss=np.array(ridge_risks) + excess.mean(0).numpy(),
                            loss_se=(excess.std(0) / math.sqrt(excess.shape[0])).numpy(),
                            llc=llc.llc_mean, llc_mcse=llc.mcse))
        print(f"step {step:5d}: loss per position {np.round(records[-1]['loss'], 3)}   "
              f"λ̂ = {llc.llc_mean:6.1f} ± {llc.mcse:.1f}")
    if step == num_steps:
        break
    for group in optimiser.param_groups:
        group["lr"] = warmup_cosine_lr(step, peak_lr=3e-3, num_steps=num_steps, warmup_steps=150)
    batch = task.sample(64, data_generator)
    loss = icl_mse(model(tokenize_icl(batch.xs, batch.ys)), batch.ys)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()

# %%
# the end of LR1: the first checkpoint whose first-position loss is within 1 % of D + σ²
lr1 = next(r for r in records if r["step"] > 0 and abs(r["loss"][0] / (D + noise_variance) - 1) < 0.01)
last = records[-1]
steps = np.array([max(r["step"], 1) for r in records])
losses = np.array([r["loss"] for r in records])
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
for k in range(K):
    ax1.semilogx(steps, losses[:, k], "o-", ms=3, label=f"position {k + 1}")
ax1.axhline(D + noise_variance, color="gray", ls="--", label="D + σ² (predict 0)")
ax1.set(xlabel="training step", ylabel="loss", title="loss per position")
ax1.legend(fontsize=7)
ax2.errorbar(steps, [r["llc"] for r in records], [2 * r["llc_mcse"] for r in records], fmt="o-", color="C3")
ax2.set(xscale="log", xlabel="training step", ylabel="λ̂ (short chains, ± 2 MCSE)", title="local learning coefficient")
positions = np.arange(1, K + 1)
ax3.plot(positions, ridge_risks, "kx:", label="exact ridge Bayes risk")
for r, name in ((lr1, "end of LR1"), (last, "end of training")):
    ax3.errorbar(positions, r["loss"], 2 * r["loss_se"], fmt="o-", capsize=2, label=f"{name} (step {r['step']})")
ax3.set(xlabel="position k", ylabel="loss at position k", title="against the Bayes-optimal predictor")
ax3.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## Reading the stages
#
# * **LR1.** The loss at position 1 settles at $D + \sigma^2$ within the first few hundred steps (the model predicts
#   the prior mean): its control-variate estimate is $D + \sigma^2 + \mathbb{E}f(x_1)^2$, so the gap to the exact value is the
#   model's whole error there.
# * **LR2.** The later positions then fall below $D + \sigma^2$, towards ridge: the model uses its context. λ̂ rises
#   as it does: the in-context algorithm costs complexity.

# %%
print(f"first position at step {lr1['step']}: loss = {lr1['loss'][0]:.4f} ± {lr1['loss_se'][0]:.1e}   "
      f"exact D + σ² = {D + noise_variance:.4f}")
print(f"end of training: mean loss {last['loss'].mean():.3f}   exact ridge Bayes risk "
      f"{ridge_mean_bayes_risk(K, D, noise_variance):.3f} ({last['loss'].mean() / ridge_mean_bayes_risk(K, D, noise_variance) - 1:+.0%})")
print(f"λ̂ from step {lr1['step']} to the end: {lr1['llc']:.1f} → {last['llc']:.1f}")

# %% [markdown]
# λ̂ here is a *short-chain* estimate at a point that is not yet a minimum, so it carries no exact target;
# the comparison that matters is its change between stages. At the first checkpoints, before training
# has found a minimum, it can be negative: the chains find lower loss than $w^*$ (`diagnose()` would say so).
#
# ## Exercises
#
# **Exercise 1.** The best a model can do with only *one* context pair is the exact Bayes risk at position 2,
# $R_{\text{ridge}}(2)$. At which positions does the trained model beat every one-pair predictor, i.e. provably use
# more than one pair of its context? Use the loss per position at the end of training and its standard error.

# %% tags=["solution"]
one_pair = ridge_risks[1]
for k in range(2, K + 1):
    gap = (one_pair - last["loss"][k - 1]) / last["loss_se"][k - 1]
    print(f"position {k}: loss {last['loss'][k - 1]:.4f} ± {last['loss_se'][k - 1]:.4f}   "
          f"one-pair bound {one_pair:.4f}   {'uses more than one pair' if gap > 3 else 'not shown'} ({gap:+.0f} SE)")
# Positions 3 and 4 are far below R_ridge(2): there the model combines several pairs. At position 2 it
# is slightly above R_ridge(2), the best possible there.

# %% [markdown]
# **Exercise 2.** How does the exact ridge risk at the last position change with the noise σ²? Tabulate
# `ridge_bayes_risks(K, D, s)[-1]` for σ² = 0.01, 0.125, 1, and explain the limit σ² → 0 for $K - 1 \ge D$.

# %% tags=["solution"]
for s in (0.01, 0.125, 1.0):
    print(f"σ² = {s:5.3f}: last-position Bayes risk {ridge_bayes_risks(K, D, s)[-1]:.4f}")
# With K − 1 = 3 ≥ D = 2 pairs, noiseless data determine w, so the risk tends to 0 with σ²: what is left
# is the label noise σ² of y_K and the error of w estimated from noisy pairs. The second term falls more
# slowly than σ² here (0.054 at σ² = 0.01), because E tr (XᵀX)⁻¹ is infinite for 3 pairs in 2 dimensions
# (a Wishart matrix needs more than D + 1 samples for a finite inverse mean).
