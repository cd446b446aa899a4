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
# # 8. Choosing nβ, γ and ε for your own network
#
# *Run time: about 40 s on 2 CPU cores.* The earlier notebooks had exact answers to aim at. Your own network has none,
# so the settings must be chosen by rules that the exact cases have justified. The order matters:
#
# 1. **nβ and the loss scale** define *which* posterior is measured (notebook 2): choose them from the data.
# 2. **γ** keeps the posterior local to $w^*$: the smallest value at which the chains settle near $w^*$.
# 3. **ε** (and burn-in, draws, thinning) are chosen by the calibration, `step_size="auto"`; `res.schedule` says what
#    it chose and why, and `res.diagnose()` says what to change when something is off.
#
# The estimator is $\hat\lambda = n\beta\,(\mathbb{E}[L] - L(w^*))$ (Lau et al., arXiv 2308.12108, eq. 8); the rules are those of
# `docs/error_budget.md` ("How to choose ε, nβ and γ, in short").

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from theory.regular import localized_llc
from toymodels import CalibrationResult, estimate_llc

# %% [markdown]
# ## First, a network with an exact answer
#
# A `torch.nn.Linear(3, 1)` at its least-squares solution takes exactly the code path of any network. Its loss
# is quadratic, so the exact target is $\tfrac12\sum_i \frac{n\beta a_i}{n\beta a_i + \gamma}$ over the eigenvalues $a_i$ of the Hessian of the
# loss: for the MSE, $H = \frac2n\tilde X^\top\tilde X$ with $\tilde X$ the inputs and a column of ones for the bias.

# %%
g = torch.Generator().manual_seed(0)
inputs = torch.randn(200, 3, generator=g)
targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 * torch.randn(200, 1, generator=g)
linear = torch.nn.Linear(3, 1)
design = torch.cat([inputs, torch.ones(200, 1)], 1)
solution = torch.linalg.lstsq(design, targets).solution
with torch.no_grad():
    linear.weight.copy_(solution[:3].T)
    linear.bias.copy_(solution[3])

linear_res = estimate_llc(linear, data=(inputs, targets), loss_fn=F.mse_loss, localization=1.0,
                          step_size="auto", num_chains=32, seed=0, progress=False)
hessian = 2 * design.double().T @ design.double() / 200
exact = localized_llc(torch.linalg.eigvalsh(hessian).numpy(), nbeta=linear_res.nbeta, localization=1.0)
print(f"λ̂ = {linear_res.llc_mean:.3f} ± {linear_res.mcse:.3f}   exact = {exact:.4f}   "
      f"(nβ = {linear_res.nbeta:.2f}: {linear_res.nbeta_source})")

# %% [markdown]
# ## A small MLP on data
#
# Now a network without an exact λ: a 1 → 16 → 1 tanh MLP (49 parameters) fitted to $y = \sin 2x + \text{noise}$,
# noise standard deviation σ = 0.3, $n = 256$ samples. Train it to a minimum (Adam, then L-BFGS to polish).

# %%
torch.manual_seed(0)                                   # the MLP's initial weights
g = torch.Generator().manual_seed(1)
n, sigma = 256, 0.3
x = torch.rand(n, 1, generator=g) * 4 - 2
y = torch.sin(2 * x) + sigma * torch.randn(n, 1, generator=g)
mlp = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
adam = torch.optim.Adam(mlp.parameters(), lr=1e-2)
for _ in range(2000):
    loss = F.mse_loss(mlp(x), y)
    adam.zero_grad()
    loss.backward()
    adam.step()
lbfgs = torch.optim.LBFGS(mlp.parameters(), max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")


def closure():
    lbfgs.zero_grad()
    value = F.mse_loss(mlp(x), y)
    value.backward()
    return value


lbfgs.step(closure)
with torch.no_grad():
    print(f"training MSE {F.mse_loss(mlp(x), y).item():.5f} (noise variance σ² = {sigma ** 2})")

# %% [markdown]
# ## 1. nβ and the loss scale
#
# The tempered posterior is $\propto e^{-n\beta L(w)}$. For it to be the Bayesian posterior at temperature $\beta$, $L$ must be
# the **negative log-likelihood per sample**. For Gaussian noise that is $\lVert y - f\rVert^2/(2\sigma^2)$, not the plain MSE: the MSE
# is $2\sigma^2$ times it, and sampling the MSE at nβ samples the likelihood at $2\sigma^2 n\beta$: here 5.6 times hotter. The
# default nβ for a network is $n/\log n$ with $n$ the **dataset** size (Watanabe's WBIC temperature; devinterp 1.x used
# the batch size instead, see `docs/migrating_from_devinterp.md`), and `res.nbeta_source` says which was used.

# %%
def gaussian_nll(output, target):
    """Per-sample Gaussian negative log-likelihood (the constant log(2πσ²)/2 dropped: it cancels)."""
    return F.mse_loss(output, target) / (2 * sigma ** 2)


print(f"default nβ = n / log n = {n / math.log(n):.2f}")

# %% [markdown]
# **The DataLoader rule.** `data=` takes tensors or a `DataLoader`; a DataLoader is concatenated **once** into
# tensors, and its batch size is *not* the sampler's: the chains use the full batch unless you pass
# `batch_size=` (then each chain draws its own minibatch, with replacement, at every step). nβ still comes from
# the dataset size. So these two calls sample the same posterior with the same random numbers (the loader
# shuffled the samples, which changes only the rounding of the sums):

# %%
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
settings = dict(loss_fn=gaussian_nll, localization=100.0, step_size=1e-5, num_chains=4, num_draws=50,
                seed=0, progress=False)
from_loader = estimate_llc(mlp, data=loader, **settings)
from_tensors = estimate_llc(mlp, data=(x, y), **settings)
print(f"DataLoader: λ̂ = {from_loader.llc_mean:.6f}, nβ = {from_loader.nbeta:.2f} [{from_loader.nbeta_source}], "
      f"batch_size = {from_loader.batch_size}")
print(f"tensors:    λ̂ = {from_tensors.llc_mean:.6f}, nβ = {from_tensors.nbeta:.2f} [{from_tensors.nbeta_source}]")

# %% [markdown]
# ## 2. γ: the smallest localization at which the chains settle
#
# A network has flat and nearly flat directions (here, e.g., hidden units that trade weight between layers, or
# whose tanh saturates). With a weak γ the chains drift along them, far from $w^*$, and the estimate is no longer
# *local*. Look at how far plain SGLD chains go from $w^*$ in 3000 steps for three values of γ (a fixed step,
# 16 chains; the distance from $w^*$ is recorded at every draw, `res.trace.distance`):

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for gamma in (1.0, 10.0, 100.0):
    probe = estimate_llc(mlp, data=(x, y), loss_fn=gaussian_nll, localization=gamma, step_size=2e-5,
                         num_chains=16, num_draws=300, num_steps_bw_draws=10, seed=0, progress=False)
    distance2 = (probe.trace.distance ** 2).mean(axis=0)        # mean over chains, per draw
    ax.plot(10 * np.arange(1, distance2.size + 1), distance2, label=f"γ = {gamma:g}")
    print(f"γ = {gamma:5g}: mean ||w − w*||² after 1000 steps {distance2[99]:.2f}, after 3000 {distance2[-1]:.2f}")
ax.set(xlabel="SGLD step", ylabel="mean ||w − w*||²", title="do the chains settle near w*?")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At γ = 1 and 10 the chains are still moving away after 3000 steps; at γ = 100 the distance levels off. With
# `step_size="auto"` this test is built in: the chains are first **relaxed** away from $w^*$ in blocks of doubling
# length until the per-chain means of λ̂ and of $\lVert w - w^*\rVert^2$ stop changing, and `res.schedule["relaxation"]["relaxed"]` says
# whether they did (a relaxation that runs out of budget is a *problem* in `diagnose()`, with the advice to raise γ).
# A larger γ than needed biases λ̂ down (each regular direction loses $\gamma/(n\beta a + \gamma)$, notebook 2), so keep the
# smallest γ that settles, and report it with the estimate: λ̂ at (nβ, γ) is a property of the model *and* of those
# two numbers.
#
# ## 3. ε and the schedule: `res.schedule`
#
# Now the calibrated run at γ = 100. The calibration scans for the largest stable step, relaxes the chains,
# measures λ̂ on a grid of steps from the relaxed chains, fits the bias law $\hat\lambda(\varepsilon) = \lambda_0/(1 - s\varepsilon)$ and takes the
# largest ε whose bias is within 1 %. Then it sets the burn-in (20 autocorrelation times) and the draws for an
# MCSE of `rel_mcse` (here 5 %) of λ̂, within `budget_seconds`:

# %%
res = estimate_llc(mlp, data=(x, y), loss_fn=gaussian_nll, localization=100.0, step_size="auto",
                   num_chains=32, rel_mcse=0.05, budget_seconds=30, seed=0, progress=False)
print(res.summary())
relaxation = res.schedule["relaxation"]
print(f"relaxed: {relaxation['relaxed']} after {relaxation['steps']} steps at ε = {relaxation['step_size']:.3g}; "
      f"sampling ε = {res.schedule['step_size']:.3g}")
for key, why in res.schedule["reasons"].items():
    print(f"  {key}: {why}")
fig, ax = plt.subplots(figsize=(6, 3.5))
CalibrationResult.from_dict(res.calibration).plot(axes=[ax])
plt.show()
res.diagnose();

# %% [markdown]
# Read the diagnosis before the number: it reports what is off, with the change that would fix it. A split R-hat
# above 1.01 means the chains' means differ more than their draws vary, so the MCSE understates the uncertainty:
# give the run more `budget_seconds` (a longer burn-in and more draws), or more chains (nearly free for a model
# this small). A budget that stops short of the precision asked for is reported too. Whatever the run, λ̂ of a
# 49-parameter network must lie between 0 and $d/2 = 24.5$; here it is far below, as for the singular models of
# the earlier notebooks:

# %%
d = sum(p.numel() for p in mlp.parameters())
print(f"λ̂ = {res.llc_mean:.2f} ± {res.mcse:.2f} at nβ = {res.nbeta:.1f}, γ = 100;  d/2 = {d / 2}")
res.plot_diagnostics()
plt.show()

# %% [markdown]
# ## Checklist for your own network
#
# * `model.eval()`, float32 or float64, a **mean** loss; the library checks these and the output/target shapes.
# * Loss = negative log-likelihood per sample, so that nβ means what it says; nβ = n/log n unless you compare
#   with a theory value at another temperature.
# * The smallest γ at which `res.schedule["relaxation"]["relaxed"]` is true and `diagnose()` reports no escape.
# * `step_size="auto"` with a `budget_seconds` you can afford; then `res.diagnose()`.
# * Report λ̂ ± MCSE together with nβ, γ, ε and the number of chains and draws.
#
# ## Exercises
#
# **Exercise 1.** Sample the MLP with the *plain MSE* as the loss at the default nβ, γ = 100, `step_size=2e-5`, 16 chains,
# 300 draws 10 steps apart, and compare λ̂ with the NLL run above. Why does it differ? (Hint: which posterior does
# the MSE at nβ define?)

# %% tags=["solution"]
plain = estimate_llc(mlp, data=(x, y), loss_fn=F.mse_loss, localization=100.0, step_size=2e-5,
                     num_chains=16, num_draws=300, num_steps_bw_draws=10, seed=0, progress=False)
print(f"MSE: λ̂ = {plain.llc_mean:.3f} ± {plain.mcse:.3f};  NLL: λ̂ = {res.llc_mean:.2f} ± {res.mcse:.2f}")
# The MSE is 2σ² = 0.18 times the NLL, so nβ·MSE is the likelihood at nβ' = 0.18 nβ ≈ 8.3: a posterior
# 5.6 times hotter, held more by γ = 100 than by the data. Each regular direction keeps only the fraction
# nβ'a/(nβ'a + γ) of its ½, so λ̂ is smaller: it describes the pair (MSE, nβ), not the network's likelihood.

# %% [markdown]
# **Exercise 2.** The linear network at the top: what does the exact target become at γ = 0 (no localization), and
# why is γ = 0 allowed there but not for the MLP?

# %% tags=["solution"]
print(f"γ = 0: exact {localized_llc(torch.linalg.eigvalsh(hessian).numpy(), nbeta=linear_res.nbeta, localization=0.0):.4f} = d/2 = 2")
# With γ = 0 every regular direction contributes exactly ½: λ = d/2 = 2 for the 4 parameters. The
# linear model's loss is a strictly convex quadratic, so the posterior is a proper Gaussian without
# γ. The MLP has flat and nearly flat directions, along which an unlocalized posterior is improper or
# leaves w* for other basins: γ keeps the estimate local.
