"""The volume-scaling exponent: λ from how the prior volume of ``{K < ε}`` shrinks with ε.

Theory (Watanabe 2009, Thm 6.7 and §7.1; Urdshals, Lau, Hoogland, van Wingerden, Murfet, arXiv
2510.12077, §3): ``V(ε) = φ{K < ε} = ε^λ (c_0 + c_1 L + … + c_{m−1} L^{m−1}) + o(ε^λ)`` with
``L = log(1/ε)``: the Mellin transform of ``V`` is the zeta function ``∫ K^z φ``, whose largest
pole ``−λ`` has order ``m``, and the next poles give higher powers of ε. Two routes:

* :func:`fit_volume_exponent` / :func:`volume_exponent_mc` — **Monte Carlo in low dimension**:
  ``V̂(ε)`` is the fraction of prior draws with ``K < ε``; λ is fitted with the ``m − 1`` powers of
  ``L`` that the expansion says are there (a plain log-log slope is biased by ``≈ (m−1)/L``:
  at ``ε = 10^{−6}`` and ``m = 2`` that is −7%, far outside 2%). Its cost is
  ``1/V(ε) ≈ ε^{−λ}`` draws per resolved point, so it only works while ``λ log(1/ε)`` is a few
  units: small λ, low dimension.
* :func:`volume_exponent_from_llcs` — **thermodynamic integration** for higher dimension: the
  partition function ``Z(t) = ∫ e^{−tK} φ = t ∫_0^∞ e^{−tε} V(ε) dε`` is the Laplace transform of
  ``V``, so ``V ~ C ε^λ L^{m−1}`` gives ``Z(t) ~ C Γ(λ+1) t^{−λ} (log t)^{m−1}`` (an Abelian
  theorem for Laplace transforms), and ``−d log Z/d log t = t E_t[K]``, the LLC estimator's
  target at ``nβ = t`` (Lau et al. arXiv 2308.12108, eq. 8). Integrating λ̂ over ``log nβ``
  gives ``log Z(t_1) − log Z(t_K)`` and the exponent of ``Z`` over the ladder, which is the
  exponent of ``V`` at ``ε ≈ 1/t``. Its cost is that of a few LLC estimates whatever λ is: the
  tempered posterior concentrates where ``K ≈ λ/t`` instead of waiting for the prior to fall there.
  With localization γ the prior is ``N(w*, I/γ)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize

from toymodels.checks import as_choice, as_float, as_int

__all__ = ["VolumeExponent", "fit_volume_exponent", "log_uniform_sampler", "volume_exponent_mc",
           "volume_exponent_from_llcs", "volume_code_length"]


@dataclass
class VolumeExponent:
    """A fitted volume exponent.

    Attributes:
        exponent: λ̂, with the ``multiplicity − 1`` log powers of the expansion in the fit.
        exponent_se: its standard error (bootstrap over draws; or propagated MCSEs for TI).
        multiplicity: the ``m`` assumed in the fit.
        naive_exponent: the plain log-log slope (``m = 1``), which the log factor biases low.
        eps: the tolerances used; log_volume: ``log V̂(ε)`` there (``log Z`` for TI, at ``1/t``).
        method: ``"monte_carlo"`` or ``"thermodynamic"``.
    """

    exponent: float
    exponent_se: float
    multiplicity: int
    naive_exponent: float
    eps: np.ndarray
    log_volume: np.ndarray
    method: str

    def to_dict(self) -> dict:
        return dict(exponent=self.exponent, exponent_se=self.exponent_se,
                    multiplicity=self.multiplicity, naive_exponent=self.naive_exponent,
                    eps=self.eps.tolist(), log_volume=self.log_volume.tolist(), method=self.method)


def _fit(eps: np.ndarray, vol: np.ndarray, sd: np.ndarray, multiplicity: int) -> float:
    """λ by weighted least squares of ``V̂`` against ``ε^λ Σ_i c_i L^i`` (the ``c_i`` linear,
    profiled out; λ by a bounded scalar search); ``sd`` the standard errors of ``V̂``."""
    L = np.log(1 / eps)
    basis = np.stack([L**i for i in range(multiplicity)], axis=1)

    def residual(lam: float) -> float:
        design = basis * (eps**lam)[:, None] / sd[:, None]
        target = vol / sd
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        return float(np.sum((design @ coef - target) ** 2))

    # the profile residual is not unimodal (the c_i trade off against λ): a grid first, then
    # Brent's method between the grid neighbours of the best point
    slope = np.polyfit(np.log(eps), np.log(vol), 1)[0]
    grid = np.linspace(1e-6, max(2.0 * slope, slope + 2.0), 801)
    values = [residual(x) for x in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = optimize.minimize_scalar(residual, bounds=(lo, hi), method="bounded",
                                   options=dict(xatol=1e-8))
    return float(res.x)


def _volumes(K_sorted: np.ndarray, cum_w: np.ndarray, cum_w2: np.ndarray, eps: np.ndarray):
    """``V̂(ε)`` and its standard error from sorted losses and cumulative (squared) weights."""
    n = K_sorted.size
    idx = np.searchsorted(K_sorted, eps, side="left")
    s1 = np.where(idx > 0, cum_w[np.maximum(idx - 1, 0)], 0.0) / n
    s2 = np.where(idx > 0, cum_w2[np.maximum(idx - 1, 0)], 0.0) / n
    sd = np.sqrt(np.maximum(s2 - s1**2, 0.0) / n)
    return s1, np.maximum(sd, 1e-300), idx


def fit_volume_exponent(losses, *, log_weights=None, eps: Sequence[float] | None = None,
                        multiplicity: int = 1, min_count: int = 200, min_volume: float = 0.0,
                        max_volume: float = 0.01,
                        num_points: int = 24, num_bootstrap: int = 100,
                        seed: int = 0) -> VolumeExponent:
    """The volume exponent from excess losses ``K(w_j) = L(w_j) − L(w*)`` at draws ``w_j``.

    ``V̂(ε) = (1/n) Σ_j ω_j 1[K_j < ε]``, with importance weights ``ω_j = exp(log_weights_j)`` =
    prior density / proposal density (all 1 for draws from the prior itself). Drawing the
    magnitudes ``|w_i − w*_i|`` log-uniformly resolves ``V`` over tens of decades of ε with the
    same number of draws per decade, which a fit with log factors (``m > 1``) needs; plain prior
    draws reach only ``ε`` with ``V(ε) ≳ min_count/n``. Grid: geometric in ε from where
    ``min_count`` draws lie below and ``V̂ ≥ min_volume`` (an importance sampler that leaves out
    prior mass ``δ`` is only trusted where ``V ≫ δ``) to where ``V̂ = max_volume`` (larger ε is
    not asymptotic), or the given ``eps``. Fit: ``V = ε^λ Σ_{i<m} c_i log(1/ε)^i`` (module docstring). The standard
    error is the spread of the fit over ``num_bootstrap`` resamplings of the draws (the ``V̂`` at
    nested ε are correlated, so per-point errors would not do).
    """
    K = np.asarray(losses, dtype=np.float64).ravel()
    n = K.size
    multiplicity = as_int("multiplicity", multiplicity, 1)
    if n == 0 or not np.all(np.isfinite(K)):
        raise ValueError("losses must be a non-empty array of finite numbers")
    if np.any(K < 0):
        raise ValueError("losses are excess losses K = L(w) − L(w*) ≥ 0; got negative values: "
                         "subtract the loss at the centre w*, and check that w* is a minimum")
    lw = np.zeros(n) if log_weights is None else np.asarray(log_weights, dtype=np.float64).ravel()
    if lw.shape != K.shape or not np.all(np.isfinite(lw)):
        raise ValueError("log_weights must be finite, one per loss")
    order = np.argsort(K)
    K, w = K[order], np.exp(lw[order])

    def cumulants(K_, w_):
        return np.cumsum(w_), np.cumsum(w_ * w_)

    cw, cw2 = cumulants(K, w)
    if eps is None:
        min_count = as_int("min_count", min_count, 1)
        max_volume = as_float("max_volume", max_volume, minimum=0, strict=True, maximum=1)
        min_volume = as_float("min_volume", min_volume, minimum=0, maximum=1)
        hi_index = int(np.searchsorted(cw / n, max_volume))
        lo_index = max(min_count, int(np.searchsorted(cw / n, min_volume)))
        if hi_index <= lo_index or K[lo_index] <= 0:
            raise ValueError(f"{n} draws leave fewer than min_count = {min_count} where "
                             f"V < {max_volume:g}: draw more (or raise max_volume)")
        eps = np.geomspace(K[lo_index], K[hi_index], as_int("num_points", num_points, 3))
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim != 1 or eps.size < multiplicity + 1 or np.any(~np.isfinite(eps)) or np.any(eps <= 0):
        raise ValueError(f"eps must be at least {multiplicity + 1} finite tolerances > 0, got {eps!r}")
    vol, sd, idx = _volumes(K, cw, cw2, eps)
    if np.any(idx == 0):
        raise ValueError(f"no draw has K < {eps[idx == 0].min():g}: raise eps or draw more")
    exponent = _fit(eps, vol, sd, multiplicity)
    naive = _fit(eps, vol, sd, 1)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(as_int("num_bootstrap", num_bootstrap, 0)):
        pick = np.sort(rng.integers(0, n, n))  # sorted indices keep K sorted
        bw = w[pick]
        bv, bsd, bidx = _volumes(K[pick], *cumulants(K[pick], bw), eps)
        if np.all(bidx > 0):
            boot.append(_fit(eps, bv, bsd, multiplicity))
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan
    return VolumeExponent(exponent, se, multiplicity, naive, eps, np.log(vol), "monte_carlo")


def log_uniform_sampler(dim: int, *, prior: str = "box", scale: float = 1.0, exponents=None,
                        depth: float = 60.0, center: torch.Tensor | None = None):
    """An importance sampler of a product prior around ``center``: ``sample(n, g) -> (w, log ω)``.

    Each coordinate ``x_i = w_i − center_i`` gets a random sign and ``log|x_i|`` uniform on
    ``[log R − depth, log R]`` (proposal density ``1/(2 depth |x|)``), so every decade of ``|x|``
    gets the same share of draws; ``ω = Π_i prior_i(x_i) · 2 depth |x_i|``. Priors: ``"box"`` on
    ``[−scale, scale]`` with density ``∝ |x|^{h_i}`` (``exponents`` h, default 0; ``R = scale``),
    or ``"gaussian"`` ``N(0, scale²)`` (``R = 12·scale``; the mass beyond is below 1e-32).
    The prior mass left out, ``|x_i| < R e^{−depth}``, is at most ``sample.missed_mass`` =
    ``Σ_i e^{−depth (1 + h_i)}`` (box) or ``dim · 2·12 e^{−depth}/√(2π)`` (Gaussian: the density is
    at most ``1/(√(2π) scale)`` on an interval of width ``2 R e^{−depth}``); :func:`volume_exponent_mc`
    fits only where ``V̂`` is 100 times that.
    """
    dim = as_int("dim", dim, 1)
    as_choice("prior", prior, ("box", "gaussian"))
    scale = as_float("scale", scale, minimum=0, strict=True)
    depth = as_float("depth", depth, minimum=0, strict=True)
    h = torch.zeros(dim, dtype=torch.float64) if exponents is None else torch.as_tensor(
        exponents, dtype=torch.float64).reshape(-1)
    if h.numel() != dim or bool((h <= -1).any()):
        raise ValueError(f"exponents must be {dim} numbers > -1 (prior ∝ |x|^h)")
    if prior == "gaussian" and exponents is not None:
        raise ValueError("prior exponents go with the box prior")
    top = math.log(scale if prior == "box" else 12 * scale)
    c = torch.zeros(dim, dtype=torch.float64) if center is None else torch.as_tensor(center).double()

    def sample(n: int, g: torch.Generator):
        logx = top - depth * torch.rand(n, dim, generator=g, dtype=torch.float64)
        sign = torch.where(torch.rand(n, dim, generator=g) < 0.5, -1.0, 1.0).double()
        x = sign * torch.exp(logx)
        if prior == "box":
            log_prior = torch.log((h + 1) / 2) + h * logx - (h + 1) * math.log(scale)
        else:
            log_prior = -0.5 * (x / scale) ** 2 - math.log(scale * math.sqrt(2 * math.pi))
        log_w = (log_prior + math.log(2 * depth) + logx).sum(-1)
        return c + x, log_w

    if prior == "box":
        sample.missed_mass = float(torch.exp(-depth * (1 + h)).sum())  # type: ignore[attr-defined]
    else:
        sample.missed_mass = dim * 24 * math.exp(-depth) / math.sqrt(2 * math.pi)  # type: ignore[attr-defined]
    return sample


def volume_exponent_mc(potential: Callable[[torch.Tensor], torch.Tensor],
                       sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]], *,
                       num_samples: int, center_loss: float = 0.0, chunk: int = 1 << 18,
                       seed: int = 0, **fit_options) -> VolumeExponent:
    """Draw ``num_samples`` points (``sample(n, generator) -> (w (n, d), log_weights (n,))``, the
    log importance weights prior/proposal, zeros for prior draws; a ``sample.missed_mass``
    attribute sets ``min_volume`` to 100 times it), evaluate the batched
    ``potential`` in chunks, and :func:`fit_volume_exponent` on ``K = potential − center_loss``.
    All randomness from ``seed``."""
    num_samples = as_int("num_samples", num_samples, 1)
    g = torch.Generator().manual_seed(as_int("seed", seed, 0))
    losses, log_w = [], []
    with torch.no_grad():
        for start in range(0, num_samples, chunk):
            w, lw = sample(min(chunk, num_samples - start), g)
            losses.append(torch.as_tensor(potential(w)).double().reshape(-1).numpy())
            log_w.append(torch.as_tensor(lw).double().reshape(-1).numpy())
    K = np.concatenate(losses) - center_loss
    fit_options.setdefault("min_volume", 100 * getattr(sample, "missed_mass", 0.0))
    return fit_volume_exponent(K, log_weights=np.concatenate(log_w), seed=seed, **fit_options)


def volume_exponent_from_llcs(nbetas: Sequence[float], llcs: Sequence[float],
                              llc_mcses: Sequence[float] | None = None, *,
                              multiplicity: int = 1) -> VolumeExponent:
    """The exponent of ``Z(t)`` (hence of ``V(ε)``, module docstring) from λ̂ on a ladder of nβ.

    ``log Z(t_1) − log Z(t_k) = ∫_{log t_1}^{log t_k} λ̂(t) d log t`` by the trapezoid rule, and
    ``λ̂_V = [log Z(t_1) − log Z(t_K) + (m − 1)(log log t_K − log log t_1)] / log(t_K/t_1)``
    (the ``(log t)^{m−1}`` factor of ``Z`` removed; needs ``t_1 > 1`` when ``m > 1``). The standard
    error propagates the independent MCSEs through the trapezoid weights. ``log_volume`` holds
    ``log Z(t_k) − log Z(t_1)`` at ``eps = 1/t_k``.
    """
    t = np.asarray(nbetas, dtype=np.float64)
    lam = np.asarray(llcs, dtype=np.float64)
    multiplicity = as_int("multiplicity", multiplicity, 1)
    if t.ndim != 1 or t.size < 2 or lam.shape != t.shape:
        raise ValueError("need at least two nbetas and one llc per nbeta")
    if np.any(t <= 0) or np.any(np.diff(t) <= 0) or not np.all(np.isfinite(lam)):
        raise ValueError("nbetas must be increasing and > 0, and the llcs finite")
    if multiplicity > 1 and t[0] <= 1:
        raise ValueError("with multiplicity > 1 the (log t)^(m−1) correction needs nbetas > 1")
    x = np.log(t)
    dx = np.diff(x)
    weights = np.zeros_like(t)
    weights[:-1] += dx / 2
    weights[1:] += dx / 2
    span = x[-1] - x[0]
    log_z = -np.concatenate([[0.0], np.cumsum(dx * (lam[1:] + lam[:-1]) / 2)])
    naive = float(-log_z[-1] / span)
    exponent = naive
    if multiplicity > 1:
        exponent += (multiplicity - 1) * (math.log(x[-1]) - math.log(x[0])) / span
    se = math.nan
    if llc_mcses is not None:
        s = np.asarray(llc_mcses, dtype=np.float64)
        if s.shape != t.shape or np.any(s < 0):
            raise ValueError("llc_mcses must be ≥ 0, one per nbeta")
        se = float(np.sqrt(np.sum((weights * s) ** 2)) / span)
    return VolumeExponent(exponent, se, multiplicity, naive, 1 / t, log_z, "thermodynamic")


def volume_code_length(lam: float, eps: float, multiplicity: int = 1) -> float:
    """Nats to describe ``w`` to loss tolerance ε: ``−log V(ε) ≈ λ log(1/ε) − (m−1) log log(1/ε)``,
    the leading terms (Urdshals et al. arXiv 2510.12077, §3; the constant ``−log C`` is left out).
    """
    lam = as_float("lam", lam, minimum=0)
    eps = as_float("eps", eps, minimum=0, strict=True, maximum=1,
                   hint="the tolerance must be in (0, 1) for log(1/ε) > 0")
    multiplicity = as_int("multiplicity", multiplicity, 1)
    L = math.log(1 / eps)
    if multiplicity > 1 and L <= 1:
        raise ValueError("with multiplicity > 1 use eps < 1/e (log log(1/ε) must be defined and > 0)")
    return lam * L - (multiplicity - 1) * (math.log(L) if multiplicity > 1 else 0.0)
