"""The batched runs of a calibration and what is read from them: one run over a grid of
``(ε, (nβ, γ))`` points (:func:`grid_run`), a row of numbers per point (:func:`group_row`), the
stability scan that finds ``ε_max`` (:func:`stability_scan`), and which points are stable
(:func:`stable`) or enter the bias fit (:func:`usable`)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from toymodels.estimators.calibration.bias import fit_step_size_bias
from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.estimators.escape import fraction_below_init, noise_tolerance
from toymodels.estimators.llc_result import llc_draws
from toymodels.sampling import SGLDHyperparameters, run_chains

__all__ = ["stability_scan", "grid_run", "group_row", "fit_rows", "usable", "stable", "tile",
           "check_starts", "MIN_GRID_ESS", "MAX_GRID_RHAT_RELAXED"]


def stability_scan(objective, settings, starts, table, initial_step_size, scan_chains, scan_steps,
                   sampler, sampler_options, common) -> dict:
    """``ε_max`` per setting: the largest step of a ``ε₀·4^k`` grid at which it and every smaller
    step are stable (moving the grid up or down, at most 4 times, until one is found)."""
    eps_max = {}
    pending = list(settings)
    centre = {s: initial_step_size for s in settings}
    for _ in range(4):
        if not pending:
            break
        points = [(centre[s] * 4.0 ** k, s) for s in pending for k in range(-4, 5)]
        trace = grid_run(objective, points, scan_chains, scan_steps // 2, scan_steps // 2, 1,
                         sampler, sampler_options, common,
                         chain_init=tile(starts, len(points) * scan_chains))
        kept_group = np.repeat(np.arange(len(points)), scan_chains)[trace.kept_chains]
        still = []
        for s in pending:
            rows = [group_row(trace, kept_group == g, s[0], s[1], e, "scan", trace.full_batch,
                              requested=scan_chains)
                    for g, (e, s2) in enumerate(points) if s2 == s]
            table.extend(rows)
            good = []
            for r in sorted(rows, key=lambda r: r["step_size"]):
                if not stable(r, objective.dim):
                    break
                good.append(r["step_size"])
            if not good:
                centre[s] = centre[s] / 4.0 ** 9  # everything diverged: look lower
                still.append(s)
            elif max(good) >= max(r["step_size"] for r in rows):
                centre[s] = centre[s] * 4.0 ** 8  # even the largest was fine: look higher
                eps_max[s] = max(good)
                still.append(s)
            else:
                eps_max[s] = max(good)
        pending = still
    for s in settings:
        if s not in eps_max:
            raise ValueError(f"no stable step size found for nbeta={s[0]}, localization={s[1]} "
                             f"between {initial_step_size * 4.0 ** -40:.2g} and "
                             f"{initial_step_size * 4.0 ** 4:.2g}: every chain diverged or "
                             "(full batch) a Metropolis test would reject most SGLD moves; check "
                             "that the loss is finite and smooth near w*")
    return eps_max


def check_starts(chain_init, objective) -> torch.Tensor | None:
    """``chain_init`` as a finite ``(k, d)`` tensor of starting points (``None`` stays ``None``)."""
    if chain_init is None:
        return None
    starts = torch.as_tensor(chain_init, dtype=objective.center.dtype, device=objective.center.device)
    d = objective.center.numel()
    if starts.dim() != 2 or starts.shape[1] != d or starts.shape[0] < 1:
        raise ValueError(f"chain_init must have shape (k, d) with d = {d} (k starting points, used "
                         f"in turn), got {tuple(starts.shape)}")
    if not torch.isfinite(starts).all():
        raise ValueError("chain_init contains non-finite values")
    return starts


def tile(starts: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``n`` starting points taken from the rows of ``starts`` in turn (None: every chain at w*)."""
    if starts is None:
        return None
    return starts[torch.arange(n, device=starts.device) % starts.shape[0]].clone()


def grid_run(objective, points, chains, burnin, draws, bw, sampler, sampler_options, common,
             chain_init=None, seed_offset=0):
    """One batched run: ``chains`` chains for each ``(ε, (nβ, γ))`` point."""
    eps = torch.tensor([e for e, _ in points], dtype=torch.float64).repeat_interleave(chains)
    nb = torch.tensor([s[0] for _, s in points], dtype=torch.float64).repeat_interleave(chains)
    ga = torch.tensor([s[1] for _, s in points], dtype=torch.float64).repeat_interleave(chains)
    hyper = SGLDHyperparameters(points[0][0], points[0][1][0], points[0][1][1])
    options = dict(sampler_options or {})
    if sampler == "rmsprop_sgld" and burnin == 0:
        options.setdefault("adapt", "always")
    common = dict(common)
    common["seed"] = common["seed"] + 7919 * seed_offset  # a continued run draws fresh noise
    return run_chains(objective, hyper=hyper, num_chains=len(eps), num_draws=max(draws, 4),
                      num_burnin_steps=burnin, num_steps_bw_draws=bw, sampler=sampler,
                      sampler_options=options, on_divergence="drop", chain_init=chain_init,
                      chain_hyper={"step_size": eps, "nbeta": nb, "localization": ga}, **common)


def fit_rows(rows: list[dict]) -> dict:
    """:func:`fit_step_size_bias` over the grid points that are :func:`usable`."""
    points = [r for r in rows if usable(r)]
    return fit_step_size_bias([r["step_size"] for r in points], [r["llc_mean"] for r in points],
                              [r["mcse"] for r in points])


#: a grid point whose chains mix slowly still enters the fit if its chains started relaxed and
#: its ESS (which counts the spread between chains, so its MCSE stays honest) is at least this
MIN_GRID_ESS = 50
#: ... and its split R-hat at most this: beyond it the chains sit where they started
MAX_GRID_RHAT_RELAXED = 1.3


def usable(row: dict) -> bool:
    """A bias-grid point enters the fit: ≥ 2 chains, none ever diverged, and mixed — split
    R-hat ≤ 1.1, or, for chains that started from relaxed positions (the automatic grid),
    R-hat ≤ 1.3 with an ESS of at least 50.

    Why the second clause: the grid's small steps mix slowly (their autocorrelation time grows
    as 1/ε), and excluding them left the fit with the large, biased steps only — on a tanh MLP
    a single usable point at +25 % bias was chosen. Chains that start relaxed are near the
    stationary law, so their mean is not held back by the start, and arviz's multi-chain ESS
    turns their slow mixing into a larger MCSE, which the weighted fit respects.
    """
    if row["kept_chains"] < 2 or row["diverged_chains"] != 0:
        return False
    if row["rhat"] <= 1.1:
        return True
    return (bool(row.get("started_relaxed")) and row["rhat"] <= MAX_GRID_RHAT_RELAXED
            and row["ess"] >= MIN_GRID_ESS)


def stable(row: dict, dim: int | None = None) -> bool:
    """A scan point is stable: no chain diverged, and either (full batch) SGLD's moves would pass
    a Metropolis test at least half the time, or (a minibatch loss, where no such test exists)
    λ̂ is at most ``dim``, the number of parameters.

    The minibatch clause: the learning coefficient never exceeds ``d/2`` (Watanabe 2009,
    *Algebraic Geometry and Statistical Learning Theory*; a regular model has exactly ``d/2``),
    so a step at which λ̂ exceeds ``d`` is biased by more than 100 % and cannot be chosen.
    Without it, a minibatch network whose gradients are bounded (saturating units, γ = 0:
    nothing ever diverges) had its scan grow ε by 4⁸ after 4⁸: on a tanh classifier of 227
    parameters the calibration chose ε = 4.5·10⁹ and returned λ̂ ≈ 4·10¹⁴. A full-batch scan
    keeps the Metropolis test alone: on ``K = w²`` (d = 1) SGLD is stable up to ``εκ = 4`` with a
    bias that grows without bound there, and cutting those points at ``λ̂ > d`` moved the bias
    grid a factor 4 lower and fitted λ₀ 4 % worse.
    """
    if row["diverged_chains"] > 0 or row["kept_chains"] == 0 or not math.isfinite(row["llc_mean"]):
        return False
    if dim is not None and not row.get("full_batch") and row["llc_mean"] > dim:
        return False
    acc = row["mala_acceptance"]
    if row.get("full_batch") and row.get("records_acceptance"):
        # full batch: the MALA acceptance of SGLD's moves is always measurable, so a NaN means
        # its terms overflowed — a chain running away, not yet non-finite — and counts as unstable
        return math.isfinite(acc) and acc >= 0.5
    return not (math.isfinite(acc) and acc < 0.5)


def group_row(trace, sel, nbeta, gamma, eps, stage, full_batch, requested=None) -> dict:
    """The numbers of one grid point (the chains ``sel`` of ``trace``): λ̂, MCSE, R-hat, ESS,
    acceptance, drift-to-noise ratio, fraction below ``L(w*)``."""
    # The stability scan deliberately tries step sizes far too large: chains there can reach huge
    # but finite values whose squares overflow. Those rows come out non-finite and count as
    # unstable (:func:`stable`); numpy's overflow warnings about them are expected, not news.
    with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _group_row_unchecked(trace, sel, nbeta, gamma, eps, stage, full_batch, requested)


def _group_row_unchecked(trace, sel, nbeta, gamma, eps, stage, full_batch, requested=None) -> dict:
    kept = int(sel.sum())
    row = dict(stage=stage, step_size=float(eps), nbeta=float(nbeta), localization=float(gamma),
               kept_chains=kept, diverged_chains=(requested - kept) if requested else 0,
               llc_mean=float("nan"), mcse=float("nan"), rhat=float("nan"), ess=float("nan"),
               mala_acceptance=float("nan"), fraction_below_init=float("nan"),
               drift_noise_ratio2=float("nan"),
               localization_to_gradient=float("nan"), used_in_fit=False,
               full_batch=bool(full_batch))
    if kept == 0:
        return row
    llc = llc_draws(nbeta, trace.loss[sel], trace.init_loss)
    diag = chain_diagnostics(llc) if kept > 1 else {"mcse": float("nan"), "rhat": float("nan"),
                                                    "ess": float("nan")}
    row.update(llc_mean=float(llc.mean()), mcse=diag["mcse"], rhat=diag["rhat"], ess=diag["ess"],
               sd=float(llc.std()),
               fraction_below_init=float(_fraction_below(trace, sel).mean()))
    noise2 = float((trace.noise_norm[sel] ** 2).mean())
    # drift-to-noise ratio squared: the Gaussian step-size bias x/(1 − x) (toymodels.estimators.diagnose)
    drift2 = float((trace.drift_norm[sel] ** 2).mean())
    row["drift_noise_ratio2"] = drift2 / noise2 if noise2 > 0 else float("nan")
    acc = trace.records.get("acceptance")
    row["records_acceptance"] = acc is not None  # SGLD and MALA do, SGNHT and pSGLD do not
    if acc is not None:
        a = acc[sel]
        a = a[np.isfinite(a)]
        if a.size:
            row["mala_acceptance"] = float(a.mean())
    g = trace.records.get("grad_term_norm")
    lterm = trace.records.get("localization_term_norm")
    if g is not None and lterm is not None:
        gm = float(g[sel].mean())
        row["localization_to_gradient"] = float(lterm[sel].mean()) / gm if gm > 0 else float("inf")
    return row


def _fraction_below(trace, sel) -> np.ndarray:
    """:func:`fraction_below_init` of the chains ``sel`` (the escape rule's noise tolerance included)."""
    def rows(value):
        return value if np.ndim(value) == 0 else np.asarray(value)[sel]
    return fraction_below_init(trace.loss[sel], rows(trace.init_loss), rows(noise_tolerance(trace)))
