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
# # 6. Susceptibilities and the response matrix
#
# *Run time: about 15 s on 2 CPU cores.* The LLC says how complex the posterior near $w^*$ is. **Susceptibilities** say how
# it *responds* when the data change (Baker et al., *Structural inference: interpreting small language models
# with susceptibilities*, arXiv 2504.18274). Perturb the loss towards another data distribution $q'$,
#
# $$L^h = L + h\,\Delta L, \qquad \Delta L = L_{q'} - L_q,$$
#
# and ask how the posterior mean of an observable $\varphi(w)$ moves. Differentiating
# $\mathbb{E}_h[\varphi] = \int \varphi\, e^{-n\beta L^h}\cdots / \int e^{-n\beta L^h}\cdots$ at $h = 0$ gives the **fluctuation–dissipation** identity
#
# $$\frac{\partial}{\partial h}\mathbb{E}_h[\varphi]\Big|_{h=0} = n\beta\,\chi, \qquad \chi = -\operatorname{Cov}_{p}(\varphi, \Delta L):$$
#
# the response to a change of the data is a covariance under the *unperturbed* posterior, so one sampling
# run gives the whole response matrix $\chi_{ab}$ (observables × data sources), and the LLC from the same draws.
# The conventions are those of `docs/theory/susceptibilities.md` and `theory/susceptibility.py`, which also has the
# closed forms used below.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from theory.regular import localized_llc
from theory.susceptibility import posterior_mean_derivative, singular_energy_variance, susceptibility
from toymodels import estimate_llc, finite_difference_response, susceptibilities

# %% [markdown]
# ## A Gaussian posterior, where everything is exact
#
# For a quadratic loss $L(w) = \tfrac12(w - m)^\top A(w - m)$ the localized posterior is Gaussian,
# $N(\mu, \Sigma)$ with $\Sigma = (n\beta A + \gamma I)^{-1}$, and for observables and perturbations that are linear or
# quadratic in $w$, $\varphi = c^\top w + \tfrac12 w^\top C w$ and $\Delta L = g^\top w + \tfrac12 w^\top B w$, Isserlis' theorem gives the covariance
# exactly:
#
# $$\chi = -\big[(c + C\mu)^\top\Sigma\,(g + B\mu) + \tfrac12\operatorname{tr}(C\Sigma B\Sigma)\big].$$
#
# A linear $\Delta L$ is a data source that shifts the optimum; a quadratic one changes the curvature (e.g. more
# input variance along one axis). We take three observables and four sources in $d = 3$.

# %%
A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
m = np.array([0.5, -1.0, 0.2])
nbeta, gamma = 50.0, 1.0
A_t, m_t = torch.tensor(A), torch.tensor(m)


def loss(w):
    d = w - m_t
    return 0.5 * d @ A_t @ d


# name: (c, C) of each observable and (g, B) of each source (None = 0)
observable_forms = {"w₁": (np.array([1.0, 0, 0]), None), "w₂ + w₃": (np.array([0, 1.0, 1.0]), None),
                    "|w|²/2": (None, np.eye(3))}
source_forms = {"shift e₁ − e₃": (np.array([1.0, 0, -1.0]), None), "shift e₂": (np.array([0, 1.0, 0]), None),
                "curvature x₁": (None, np.diag([1.0, 0, 0])), "curvature x₃": (None, np.diag([0, 0, 1.0]))}


def form(vector, matrix):
    """The torch function w ↦ vᵀw + ½ wᵀMw of one flat vector."""
    v = None if vector is None else torch.tensor(vector)
    M = None if matrix is None else torch.tensor(matrix)
    def f(w):
        out = torch.zeros((), dtype=w.dtype)
        if v is not None:
            out = out + v @ w
        if M is not None:
            out = out + 0.5 * w @ M @ w
        return out
    return f


res = susceptibilities(loss, init=m_t, nbeta=nbeta, localization=gamma,
                       observables={k: form(*v) for k, v in observable_forms.items()},
                       perturbations={k: form(*v) for k, v in source_forms.items()},
                       sampler="mala", step_size=0.02, num_chains=64, num_burnin_steps=500,
                       num_draws=2000, num_steps_bw_draws=2, seed=0, progress=False)
exact = np.array([[susceptibility(A, m, nbeta=nbeta, localization=gamma, c=c, C=C, g=g, B=B)
                   for (g, B) in source_forms.values()] for (c, C) in observable_forms.values()])
z = (res.chi - exact) / res.mcse
print(res.table())
print(f"\n|estimate − exact| / MCSE over the {z.size} entries: max {np.abs(z).max():.1f}, rms {np.sqrt((z ** 2).mean()):.2f}")
a, b = 1, 0
print(f"χ[{res.observable_names[a]}, {res.perturbation_names[b]}] = {res.chi[a, b]:.5f} ± {res.mcse[a, b]:.5f}"
      f"   exact = {exact[a, b]:.5f}")
print(f"and the LLC from the same draws: λ̂ = {res.llc.llc_mean:.4f} ± {res.llc.mcse:.4f}   exact = "
      f"{localized_llc(np.linalg.eigvalsh(A), nbeta=nbeta, localization=gamma):.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
limit = np.abs(exact).max()
for ax, matrix, title in ((axes[0], res.chi, "estimated χ (one MALA run)"), (axes[1], exact, "exact χ")):
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(source_forms)), list(source_forms), rotation=20, fontsize=8)
    ax.set_yticks(range(len(observable_forms)), list(observable_forms))
    ax.set_title(title)
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# `sampler="mala"` adds a Metropolis test to each Langevin move, so the draws have no step-size bias on this
# full-batch loss; with SGLD the covariances would carry an $O(\varepsilon)$ bias like λ̂ (notebook 2).
#
# ## Fluctuation–dissipation, checked by a finite difference
#
# The identity can be checked without theory: sample the perturbed posteriors at $h = \pm\delta$ and difference
# their means (`finite_difference_response`, same seeds on both sides). Here also against the exact derivative
# of the Gaussian posterior's mean, computed by differentiating $\mu(h)$ and $\Sigma(h)$ rather than through a covariance
# (`posterior_mean_derivative`).

# %%
name = "curvature x₃"
g_, B_ = source_forms[name]
fd = finite_difference_response(loss, init=m_t, nbeta=nbeta, localization=gamma,
                                observables={k: form(*v) for k, v in observable_forms.items()},
                                perturbation=form(g_, B_), delta=0.02, sampler="mala",
                                step_size=0.02, num_chains=64, num_burnin_steps=500,
                                num_draws=1000, num_steps_bw_draws=2, seed=1, progress=False)
col = res.perturbation_names.index(name)
for i, obs in enumerate(res.observable_names):
    c_, C_ = observable_forms[obs]
    exact_derivative = posterior_mean_derivative(A, m, g_, B_, c_, C=C_, nbeta=nbeta, localization=gamma)
    print(f"∂E[{obs}]/∂h for '{name}':  nβχ = {res.jacobian[i, col]:+.4f} ± {res.jacobian_mcse[i, col]:.4f}   "
          f"finite difference = {fd.derivative[i]:+.4f} ± {fd.mcse[i]:.4f}   exact = {exact_derivative:+.4f}")

# %% [markdown]
# The finite difference has its own $O(\delta^2)$ error besides its Monte-Carlo error (try `delta=0.2`: the
# curvature source then changes the posterior's precision along $w_3$ by ±40 %, and the difference is 30 % off),
# and its MCSE grows like $1/\delta$; the covariance needs no δ at all.
#
# ## The response matrix and its principal components
#
# With many sources, the matrix $\chi$ is read through its principal components over the sources
# (`principal_components()`): the leading direction says which combination of observables the data move most.
# Here $\chi$'s structure is $-(c + C\mu)^\top\Sigma(g + B\mu)$: the sources act through the posterior covariance $\Sigma$, so
# directions in which the posterior is wide respond most.

# %%
pcs = res.principal_components(centered=False)
for i in range(2):
    loadings = ", ".join(f"{n} {v:+.2f}" for n, v in zip(pcs.observable_names, pcs.loadings[i]))
    print(f"component {i + 1}: {pcs.explained_variance_ratio[i]:.0%} of the squared response; loadings {loadings}")

# %% [markdown]
# ## A singular case: the energy's fluctuation is λ
#
# Take the observable and the perturbation both equal to the loss itself, $\varphi = \Delta L = K$. Then $\chi = -\operatorname{Var}(K)$,
# and $n\beta^2\operatorname{Var}(K) = \operatorname{Var}(n\beta K)$ is the *specific heat*. For $K = w^{2k}$ on the line, $t K$ is Gamma$(s, 1)$ with
# $s = 1/(2k)$ at every temperature $t$, so $\operatorname{Var}(tK) = \mathbb{E}[tK] = \lambda$ exactly (`singular_energy_variance`; Watanabe 2009, ch. 2):
# a second thermodynamic route to λ. Here $K = w^4$, λ = 1/4, without localization.

# %%
def quartic(w):
    return (w ** 4).sum()


t = 1000.0
energy = susceptibilities(quartic, init=torch.zeros(1, dtype=torch.float64), nbeta=t, localization=0.0,
                          observables={"K": quartic}, perturbations={"K": quartic}, sampler="mala",
                          step_size=0.01, num_chains=64, num_burnin_steps=500, num_draws=2000,
                          num_steps_bw_draws=2, seed=2, progress=False)
heat, heat_se = -t ** 2 * energy.chi[0, 0], t ** 2 * energy.mcse[0, 0]
lam = float(singular_energy_variance(2))
print(f"Var(nβ K) = {heat:.3f} ± {heat_se:.3f}   exact = {lam:.4f}")
print(f"E[nβ K]   = {energy.llc.llc_mean:.3f} ± {energy.llc.mcse:.3f}   exact = {lam:.4f}")

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** A source that is *constant* in $w$ (ΔL = 1) moves nothing. Show it from $\chi = -\operatorname{Cov}(\varphi, \Delta L)$, and
# show that adding a constant to any source leaves its column of χ unchanged. Check with `susceptibility`.

# %% tags=["solution"]
# Cov(φ, ΔL + const) = Cov(φ, ΔL): constants have zero covariance with anything. The closed form takes
# ΔL = gᵀw + ½ wᵀBw without a constant for this reason; g = 0, B = 0 is the constant source:
print(f"χ[w₁, constant source] = {susceptibility(A, m, nbeta=nbeta, localization=gamma, c=np.array([1.0, 0, 0])):.1f}")

# %% [markdown]
# **Exercise 2.** For the source "shift e₂" ($\Delta L = w_2$), the response of the posterior mean is $\partial_h\mu = -n\beta\,\Sigma e_2$. Verify this
# against the second column of `res.jacobian` for the observables $w_1$ and $w_2 + w_3$.

# %% tags=["solution"]
Sigma = np.linalg.inv(nbeta * A + gamma * np.eye(3))
d_mu = -nbeta * Sigma @ np.array([0, 1.0, 0])
col = res.perturbation_names.index("shift e₂")
print(f"w₁:      exact {d_mu[0]:+.4f}   estimated {res.jacobian[0, col]:+.4f} ± {res.jacobian_mcse[0, col]:.4f}")
print(f"w₂ + w₃: exact {d_mu[1] + d_mu[2]:+.4f}   estimated {res.jacobian[1, col]:+.4f} ± {res.jacobian_mcse[1, col]:.4f}")
