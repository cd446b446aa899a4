"""Compression schemes with a strength parameter, the critical strength at a loss tolerance ε,
and the code length a compression implies (Urdshals, Lau, Hoogland, van Wingerden, Murfet,
arXiv 2510.12077, §4: compressibility is the strength at which the loss rises by ε).

A scheme maps the parameters of any ``nn.Module`` at ``w*`` and a strength to new parameters:

* ``"quantize"`` — uniform quantization, every floating parameter rounded to the grid ``Δ·Z``
  (strength: the step Δ; :func:`step_for_bits` converts a bit budget). Deterministic.
* ``"rank"`` — every weight matrix (a parameter with ≥ 2 dimensions, as ``shape[0] × rest``)
  truncated to its best rank-``r`` approximation (Eckart–Young, by SVD); strength: the rank kept
  (*smaller is stronger*). Deterministic; a model without weight matrices is refused.
* ``"noise"`` — Gaussian weight noise ``w* + σ z``, ``z ~ N(0, I)`` (strength σ); the loss rise is
  averaged over ``num_draws`` draws of ``z`` (the same draws at every σ: common random numbers).

:func:`critical_strength` scans strengths from weak to strong and returns where the loss rise
first exceeds ε; for ``"noise"`` with a bootstrap standard error over the draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from toymodels.checks import as_choice, as_float, as_int

__all__ = ["SCHEMES", "CriticalStrength", "compress", "critical_strength", "compression_code_length",
           "step_for_bits", "weight_matrices"]

SCHEMES = ("quantize", "rank", "noise")


def _float_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = {k: p.detach() for k, p in model.named_parameters() if p.is_floating_point()}
    if not params:
        raise ValueError("the model has no floating-point parameters to compress")
    return params


def weight_matrices(model: torch.nn.Module) -> list[str]:
    """Names of the parameters rank truncation acts on (≥ 2 dimensions); refuses a model that has none."""
    names = [k for k, p in _float_params(model).items() if p.dim() >= 2]
    if not names:
        shapes = {k: tuple(p.shape) for k, p in _float_params(model).items()}
        raise ValueError(f"rank truncation needs weight matrices (parameters with ≥ 2 dimensions); "
                         f"this model has only {shapes}: use 'quantize' or 'noise'")
    return names


def step_for_bits(model: torch.nn.Module, bits: int) -> float:
    """The uniform step that spends ``bits`` bits per weight on the largest parameter range:
    ``Δ = (max w − min w)/(2^bits − 1)`` over all floating parameters."""
    bits = as_int("bits", bits, 1)
    flat = torch.cat([p.reshape(-1) for p in _float_params(model).values()])  # detached
    return float((flat.max() - flat.min()) / (2**bits - 1))


def compress(model: torch.nn.Module, scheme: str, strength: float, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The compressed parameters ``{name: tensor}`` of ``model`` (the model is not changed)."""
    as_choice("scheme", scheme, SCHEMES)
    params = _float_params(model)
    if scheme == "rank":
        names = set(weight_matrices(model))
        rank = as_int("strength (the rank kept)", strength, 0)
        out = dict(params)
        for k in names:
            p = params[k]
            m = p.reshape(p.shape[0], -1)
            U, s, Vh = torch.linalg.svd(m, full_matrices=False)
            r = min(rank, s.numel())
            out[k] = ((U[:, :r] * s[:r]) @ Vh[:r]).reshape(p.shape)
        return out
    strength = as_float("strength", strength, minimum=0)
    if scheme == "quantize":
        if strength == 0:
            return dict(params)
        return {k: torch.round(p / strength) * strength for k, p in params.items()}
    if generator is None:
        raise ValueError("the 'noise' scheme draws random numbers: pass a torch.Generator")
    return {k: p + strength * torch.randn(p.shape, generator=generator, dtype=p.dtype)
            for k, p in params.items()}


@dataclass
class CriticalStrength:
    """The critical strength of a scheme at tolerance ε.

    Attributes:
        scheme, eps: what was asked.
        strength: for ``quantize``/``noise`` the step/σ at which the loss rise reaches ε (between
            the last grid strength below ε and the first above, by bisection for ``quantize`` and
            log-log interpolation of the mean for ``noise``); for ``rank`` the smallest rank kept
            whose loss rise is ≤ ε (and every larger rank's too).
        strength_se: bootstrap standard error over the noise draws (0 for deterministic schemes).
        base_loss: ``L(w*)``.
        strengths, loss_rises: the scanned grid and the (mean) loss rise at each strength.
        code_length: :func:`compression_code_length` at the critical strength (nats).
    """

    scheme: str
    eps: float
    strength: float
    strength_se: float
    base_loss: float
    strengths: list
    loss_rises: list
    code_length: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _loss_of(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor]):
    """``evaluate(params) -> float``: the loss of a copy of ``model`` with ``params`` loaded."""
    work = copy.deepcopy(model)
    named = dict(work.named_parameters())

    def evaluate(params: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            for k, v in params.items():
                named[k].copy_(v)
            value = float(torch.as_tensor(loss_fn(work)).detach())
        return value

    return evaluate


def critical_strength(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                      scheme: str, *, eps: float, strengths: Sequence[float] | None = None,
                      num_draws: int = 64, num_bootstrap: int = 200, refine_steps: int = 30,
                      seed: int = 0) -> CriticalStrength:
    """The strength at which ``loss_fn(compressed model) − loss_fn(model)`` first exceeds ``eps``.

    Args:
        model: an ``nn.Module`` at ``w*``; it is not modified (a copy is evaluated).
        loss_fn: ``loss_fn(module) -> scalar``, the loss of a module (data bound inside).
        scheme: ``"quantize"``, ``"rank"`` or ``"noise"`` (module docstring).
        eps: the tolerance ε > 0 on the loss rise.
        strengths: the grid, weak to strong (default: 61 steps/σ geometric from 1e-6 to 10 for
            ``quantize`` and ``noise``, every rank from the largest down to 0 for ``rank``).
        num_draws: noise draws (common to all σ); num_bootstrap: resamplings for the SE.
        refine_steps: bisection steps between the bracketing grid points (``quantize``).
        seed: seeds the noise draws and the bootstrap.

    Raises ``ValueError`` for ε ≤ 0, a non-finite ``L(w*)``, ``"rank"`` on a model without weight
    matrices, and a tolerance that the weakest strength of the grid already exceeds (so no
    critical strength lies on the grid: start it weaker).
    """
    as_choice("scheme", scheme, SCHEMES)
    eps = as_float("eps", eps, minimum=0, strict=True, hint="the tolerance on the loss rise must be > 0")
    if scheme == "rank":
        names = weight_matrices(model)
    evaluate = _loss_of(model, loss_fn)
    params = _float_params(model)
    base = evaluate(params)
    if not math.isfinite(base):
        raise ValueError(f"the unperturbed model's loss is {base}: compressibility needs a finite L(w*)")
    if strengths is None:
        if scheme == "rank":
            top = max(min(params[k].shape[0], params[k][0].numel()) for k in names)
            strengths = list(range(top, -1, -1))
        else:
            strengths = list(np.geomspace(1e-6, 10.0, 61))
    strengths = [int(s) if scheme == "rank" else float(s) for s in strengths]
    if len(strengths) < 2:
        raise ValueError("strengths needs at least two values, weak to strong")
    g = torch.Generator().manual_seed(as_int("seed", seed, 0))
    if scheme == "noise":
        return _critical_noise(params, evaluate, base, eps, strengths, as_int("num_draws", num_draws, 2),
                               as_int("num_bootstrap", num_bootstrap, 0), g, model)
    rises = [evaluate(compress(model, scheme, s)) - base for s in strengths]
    if rises[0] > eps:
        raise ValueError(f"the weakest strength {strengths[0]:g} already raises the loss by "
                         f"{rises[0]:.3g} > eps = {eps:g}: start the grid weaker (or raise eps)")
    above = next((i for i, r in enumerate(rises) if r > eps), None)
    if above is None:
        crit = strengths[-1]
    elif scheme == "rank":
        crit = strengths[above - 1]
    else:
        lo, hi = strengths[above - 1], strengths[above]
        for _ in range(as_int("refine_steps", refine_steps, 0)):
            mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
            if evaluate(compress(model, scheme, mid)) - base > eps:
                hi = mid
            else:
                lo = mid
        crit = math.sqrt(lo * hi) if lo > 0 else hi
    return CriticalStrength(scheme, eps, float(crit), 0.0, base, strengths, rises,
                            compression_code_length(model, scheme, crit))


def _crossing(strengths: np.ndarray, rises: np.ndarray, eps: float) -> float:
    """First crossing of ``eps`` by the mean rise, log-log interpolated between grid points."""
    above = np.nonzero(rises > eps)[0]
    if above.size == 0:
        return float(strengths[-1])
    i = int(above[0])
    if i == 0:
        return float(strengths[0])
    r0, r1 = max(rises[i - 1], 1e-300), rises[i]
    s0, s1 = strengths[i - 1], strengths[i]
    frac = (math.log(eps) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return float(math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0))))


def _critical_noise(params, evaluate, base, eps, strengths, num_draws, num_bootstrap, g, model):
    draws = [{k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
             for _ in range(num_draws)]
    rises = np.array([[evaluate({k: p + s * z[k] for k, p in params.items()}) - base
                       for s in strengths] for z in draws])  # (draws, strengths)
    mean = rises.mean(0)
    if mean[0] > eps:
        raise ValueError(f"the weakest strength {strengths[0]:g} already raises the loss by "
                         f"{mean[0]:.3g} > eps = {eps:g} on average: start the grid weaker")
    s = np.asarray(strengths)
    crit = _crossing(s, mean, eps)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    boot = [_crossing(s, rises[rng.integers(0, num_draws, num_draws)].mean(0), eps)
            for _ in range(num_bootstrap)]
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan
    return CriticalStrength("noise", eps, crit, se, base, list(strengths), mean.tolist(),
                            compression_code_length(model, "noise", crit))


def compression_code_length(model: torch.nn.Module, scheme: str, strength: float, *,
                            bits_per_number: int = 32) -> float:
    """Nats to write down the model compressed at ``strength`` (a convention, stated per scheme):

    * ``quantize`` (step Δ): each parameter tensor's values take ``1 + ⌈range/Δ⌉`` levels:
      ``Σ_tensors numel · log(1 + ⌈range/Δ⌉)``;
    * ``noise`` (σ): as quantization with the step ``σ√12`` whose uniform rounding error has
      variance σ² (describing ``w`` to within Gaussian noise of scale σ);
    * ``rank`` (r): the rank-``r`` factors of each ``a × b`` matrix, ``r(a + b − r)`` numbers (the
      dimension of the rank-``r`` matrices), and the other parameters, each at ``bits_per_number``
      bits.
    """
    as_choice("scheme", scheme, SCHEMES)
    params = _float_params(model)
    if scheme == "rank":
        names = set(weight_matrices(model))
        r = as_int("strength (the rank kept)", strength, 0)
        count = 0
        for k, p in params.items():
            if k in names:
                a, b = p.shape[0], p[0].numel()
                rr = min(r, a, b)
                count += rr * (a + b - rr)
            else:
                count += p.numel()
        return float(count * bits_per_number * math.log(2))
    strength = as_float("strength", strength, minimum=0, strict=True)
    step = strength * math.sqrt(12) if scheme == "noise" else strength
    total = 0.0
    for p in params.values():
        span = float(p.max() - p.min())
        total += p.numel() * math.log(1 + math.ceil(span / step))
    return total
