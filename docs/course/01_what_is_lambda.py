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
# # 1. What λ is: normal crossings, volumes and the free energy
#
# *Run time: about 10 s on 2 CPU cores.* This notebook defines the **learning coefficient** λ three ways
# and checks that they agree on the simplest singular models, where everything is exact:
#
# 1. as the exponent of the **volume** of near-optimal parameters, $V(\varepsilon) \sim c\,\varepsilon^{\lambda}(-\log\varepsilon)^{m-1}$;
# 2. as the coefficient of $\log n$ in the **free energy**, $F_n = -\log Z_n \approx nL_n(w^*) + \lambda\log n - (m-1)\log\log n$;
# 3. as the limit of the **thermodynamic** quantity $n\beta\,\mathbb{E}_{n\beta}[K]$ that the LLC estimator of
#    notebook 2 measures.
#
# Sources: Watanabe, *Algebraic Geometry and Statistical Learning Theory* (2009), Thm 6.6 and §7.1
# (λ of a normal crossing), Thm 6.7 (the volume), ch. 6 (the free energy); Lau et al., *The local
# learning coefficient*, arXiv 2308.12108, eq. 8 (the estimator). The formulas used below are
# written out, with their sources, on the theory pages `docs/theory/llc.md`,
# `docs/theory/normal_crossings.md` and `docs/theory/compressibility.md`, and in the docstrings of
# `theory/normal_crossing.py`, `theory/volumes.py` and `toymodels/estimators/compressibility/volume.py`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import integrate, special

from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from theory.volumes import normal_crossing_leading_term, normal_crossing_volume
from toymodels import log_uniform_sampler, volume_exponent_mc
from toymodels.models.potentials import normal_crossing_potential

# %% [markdown]
# ## Normal crossings
#
# A **normal crossing** is a potential $K(w) = \prod_i w_i^{2k_i}$ with a prior density
# $\varphi(w) \propto \prod_i |w_i|^{h_i}$ near $0$. By Hironaka's resolution of singularities every
# analytic $K$ looks like this in suitable local coordinates, which is why these toys matter
# (Watanabe 2009, Thm 2.3). For a normal crossing the learning coefficient and its multiplicity
# are (Watanabe 2009, Thm 6.6):
#
# $$\lambda = \min_{i:\,k_i>0} \frac{h_i + 1}{2k_i}, \qquad m = \#\{i : \tfrac{h_i+1}{2k_i} = \lambda\}.$$
#
# A regular model with $d$ parameters has $K \approx \tfrac12 w^\top H w$, so $\lambda = d/2$: each
# quadratic direction counts $\tfrac12$. Singular directions count less. `theory` returns exact
# fractions:

# %%
examples = {"x² y⁴": [1, 2], "x² y²": [1, 1], "x⁴ y⁴": [2, 2], "x² (regular, 1-D)": [1]}
for name, k in examples.items():
    lam, m = learning_coefficient(k)
    print(f"K = {name:<18}  λ = {str(lam):>4}   m = {m}")

# %% [markdown]
# ## 1. λ as a volume exponent
#
# Let $V(\varepsilon) = \varphi\{w : K(w) < \varepsilon\}$ be the prior mass of the parameters whose loss
# is within $\varepsilon$ of the minimum. As $\varepsilon \to 0$ (Watanabe 2009, Thm 6.7)
#
# $$V(\varepsilon) = c\,\varepsilon^{\lambda}\,(-\log\varepsilon)^{m-1}\,(1 + o(1)).$$
#
# A small λ means many near-optimal parameters: the model is "simpler" there. For
# $K = x^2y^4$ on the box $[-1,1]^2$ with the uniform prior, `theory.volumes` gives $V$ exactly (the
# variables $-\log|w_i|$ are independent exponentials, so $V$ is a hypoexponential tail); we compare
# it with the plain Monte-Carlo fraction of uniform draws that fall below ε.

# %%
rng = np.random.default_rng(0)
draws = rng.uniform(-1, 1, size=(400_000, 2))
eps_grid = np.geomspace(1e-7, 1e-1, 25)
curves = {}
for name, k in (("x² y⁴", [1, 2]), ("x² y²", [1, 1])):
    K_draws = np.prod(draws ** (2 * np.array(k)), axis=1)
    mc = np.array([(K_draws < e).mean() for e in eps_grid])
    exact = np.array([normal_crossing_volume(k, eps=e) for e in eps_grid])
    curves[name] = (k, mc, exact)

fig, ax = plt.subplots(figsize=(6, 4))
for name, (k, mc, exact) in curves.items():
    lam, m = learning_coefficient(k)
    ax.loglog(eps_grid, exact, label=f"{name}: exact V(ε), λ = {lam}, m = {m}")
    ax.loglog(eps_grid, np.where(mc > 0, mc, np.nan), "o", ms=3, label=f"{name}: 400k uniform draws")
ax.set(xlabel="ε", ylabel="V(ε) = prior mass of {K < ε}", title="volumes of sublevel sets")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Plain draws stop resolving $V$ once it falls below about 100/400 000. To reach $\varepsilon = 10^{-20}$
# one draws $\log|w_i|$ uniformly instead and reweights each draw by prior/proposal
# (`log_uniform_sampler`); `volume_exponent_mc` then fits $V = \varepsilon^\lambda \sum_{j<m} c_j (\log 1/\varepsilon)^j$ with the
# $m-1$ log powers the expansion says are there. A plain log–log slope would be biased low by
# about $(m-1)/\log(1/\varepsilon)$ when $m > 1$.

# %%
for name, k in (("x² y⁴", [1, 2]), ("x² y²", [1, 1])):
    lam, m = learning_coefficient(k)
    potential = torch.vmap(normal_crossing_potential(k))  # a batch of (2,) points -> losses
    fit = volume_exponent_mc(potential, log_uniform_sampler(2, prior="box", depth=20.0),
                             num_samples=200_000, multiplicity=m, seed=0)
    print(f"K = {name}:  λ̂_V = {fit.exponent:.3f} ± {fit.exponent_se:.3f}   exact λ = {float(lam):.4f}"
          f"   (plain log-log slope {fit.naive_exponent:.3f})")

# %% [markdown]
# The leading constant $c$ is exact too (`normal_crossing_leading_term`): the ratio of the exact
# volume to $c\,\varepsilon^\lambda(\log 1/\varepsilon)^{m-1}$ tends to 1, slowly when $m > 1$ (the next term is
# smaller only by a factor $1/\log(1/\varepsilon)$).

# %%
for name, k in (("x² y⁴", [1, 2]), ("x² y²", [1, 1])):
    lam, m, c = normal_crossing_leading_term(k)
    ratios = [normal_crossing_volume(k, eps=e) / (c * e ** float(lam) * math.log(1 / e) ** (m - 1))
              for e in (1e-4, 1e-8, 1e-16, 1e-32)]
    print(f"K = {name}: V / (c ε^λ log(1/ε)^(m−1)) at ε = 1e-4, 1e-8, 1e-16, 1e-32:",
          " ".join(f"{r:.3f}" for r in ratios))

# %% [markdown]
# ## 2. λ in the free energy
#
# With $n$ samples the Bayesian evidence of a model is $Z_n = \int e^{-nL_n(w)}\varphi(w)\,dw$ and its
# free energy is $F_n = -\log Z_n$. Writing $L_n = L_n(w^*) + K$ and
# $Z(t) = \int e^{-tK}\varphi\,dw = t\int_0^\infty e^{-t\varepsilon}V(\varepsilon)\,d\varepsilon$ (the Laplace transform
# of the volume), the volume law gives Watanabe's asymptotic expansion
#
# $$F_n = nL_n(w^*) + \lambda\log n - (m-1)\log\log n + O_p(1).$$
#
# So λ is the price, in nats per $\log n$, of the model's freedom near $w^*$: the Bayesian
# "complexity" that replaces $d/2$ of the BIC. For $K = x^2 y^{2b}$ on the box the inner integral is
# an error function, $\int_0^1 e^{-c x^2}dx = \frac{\sqrt\pi}{2\sqrt c}\operatorname{erf}\sqrt c$, and one
# quadrature is left:

# %%
def log_partition(t: float, b: int) -> float:
    """log Z(t) = log ∫∫_{[0,1]²} exp(−t x² y^(2b)) dx dy (the uniform prior on the box)."""
    def inner(y):
        c = t * y ** (2 * b)
        return 1.0 if c < 1e-12 else math.sqrt(math.pi) / (2 * math.sqrt(c)) * math.erf(math.sqrt(c))
    breaks = [t ** (-1 / (2 * b)) * f for f in (0.1, 1, 10) if t ** (-1 / (2 * b)) * f < 1]
    return math.log(integrate.quad(inner, 0, 1, points=breaks or None, limit=200)[0])


ts = np.geomspace(1e2, 1e10, 9)
fig, ax = plt.subplots(figsize=(6, 4))
for name, k in (("x² y⁴", [1, 2]), ("x² y²", [1, 1])):
    lam, m = learning_coefficient(k)
    F = np.array([-log_partition(t, k[1]) for t in ts])
    ax.plot(np.log(ts), F, "o-", label=f"{name}: F(t) = −log Z(t)")
    ax.plot(np.log(ts), float(lam) * np.log(ts) - (m - 1) * np.log(np.log(ts)) + (F[-1] - float(lam) * np.log(ts[-1]) + (m - 1) * np.log(np.log(ts[-1]))),
            "k:", lw=1)
    slope = (F[-1] - F[-2]) / (np.log(ts[-1]) - np.log(ts[-2]))
    print(f"K = {name}: slope of F over log t near t = 1e10: {slope:.4f}   λ = {float(lam):.4f}"
          f"   (with m = {m}: λ − (m−1)/log t = {float(lam) - (m - 1) / np.log(1e10):.4f})")
ax.set(xlabel="log t", ylabel="free energy F(t)", title="F(t) against λ log t − (m−1) log log t (dotted)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. λ as a thermodynamic quantity
#
# Differentiating the free energy in $\log t$ gives an **average** instead of an integral:
#
# $$-\frac{d\log Z(t)}{d\log t} = t\,\mathbb{E}_t[K], \qquad \mathbb{E}_t[K] = \frac{\int K e^{-tK}\varphi}{\int e^{-tK}\varphi},$$
#
# and the slope of $F$ tends to λ. The right-hand side is what a sampler can estimate: draw $w$ from
# the tempered posterior $\propto e^{-n\beta L(w)}\varphi(w)$ and average $n\beta\,(L(w) - L(w^*))$. That is the
# **local learning coefficient** estimator $\hat\lambda = n\beta\,(\mathbb{E}[L] - L(w^*))$ (Lau et al. 2023,
# eq. 8), the subject of notebook 2. At finite $t = n\beta$ it measures $t\,\mathbb{E}_t[K]$, not λ; the exact
# value is `finite_temperature_llc`. Here both sides of the identity, computed independently:

# %%
print("   t        −dlogZ/dlogt (finite difference)   t·E_t[K] (theory)     λ")
for t in (1e2, 1e4, 1e6, 1e8):
    h = 1e-3
    slope = -(log_partition(t * math.exp(h), 2) - log_partition(t * math.exp(-h), 2)) / (2 * h)
    exact = finite_temperature_llc([1, 2], nbeta=t, box=1.0)
    print(f"{t:8.0e}   {slope:12.5f}                       {exact:10.5f}        1/4")

# %% [markdown]
# The finite-temperature value approaches λ = 1/4 from below, and slowly: here the gap shrinks like
# $t^{-1/4}$ (the next pole of the zeta function $\int K^z\varphi$ sits at $-1/2$, from the $x$ direction), and
# when $m > 1$ only like $1/\log t$. **An estimate at finite nβ must be compared with the
# finite-temperature value, not with λ.** Every notebook in this course does so.
#
# ## Exercises
#
# **Exercise 1.** Compute λ and m by hand for $K = x^4 y^6$ with the prior $\varphi \propto |x|$, then check
# with `learning_coefficient` (the prior exponents are the argument `h`).

# %% tags=["solution"]
# (h+1)/(2k): x gives (1+1)/4 = 1/2, y gives (0+1)/6 = 1/6, so λ = 1/6 (the y direction), m = 1.
print(learning_coefficient([2, 3], h=[1, 0]))

# %% [markdown]
# **Exercise 2.** For $K = x^2y^2$ ($m = 2$), compute the plain log–log slope of the *exact* volume between
# $\varepsilon/10$ and $\varepsilon$ for $\varepsilon = 10^{-4}, 10^{-8}, 10^{-16}$, and compare it with $\lambda - (m-1)/\log(1/\bar\varepsilon)$ at the
# midpoint $\bar\varepsilon = \varepsilon/\sqrt{10}$.
# What does this say about reading λ off a log–log plot?

# %% tags=["solution"]
for e in (1e-4, 1e-8, 1e-16):
    slope = math.log(normal_crossing_volume([1, 1], eps=e) / normal_crossing_volume([1, 1], eps=e / 10)) / math.log(10)
    mid = e / math.sqrt(10)
    print(f"ε = {e:.0e}: slope {slope:.4f}   λ − 1/log(1/ε̄) = {0.5 - 1 / math.log(1 / mid):.4f}   λ = 0.5")
# d log V / d log ε = λ − (m−1)/log(1/ε) + smaller terms: with m = 2 the slope is still 5% low at
# ε = 1e-16, so λ must be fitted with the log factor (as volume_exponent_mc does), never read off
# a log-log plot.
