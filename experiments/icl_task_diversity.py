"""Reproduces Raventós et al. 2023 (arXiv 2306.15063), Figures 2–3 (task diversity decides between dMMSE_M and ridge), and Carroll et al. 2025, Figures 1–2 (the transient ridge, joint trajectory PCA), at CPU scale.

One model per (pool size M, seed), all trained at once as a ``torch.func.vmap`` ensemble over
stacked parameters (``toymodels.models.icl.ModelEnsemble``). Pools are nested: ``T_M`` is the first M
tasks of one seeded sequence, so larger pools contain smaller ones. Every model sees its own data
stream; M = ∞ means a fresh task ``w ~ N(0, I_D)`` per sequence.

Measured at log-spaced checkpoints, for every model:
* the loss on its own pool's tasks (in distribution) and on fresh Gaussian tasks (OOD);
* its distance to dMMSE_M and to ridge, ``Δ(f, g) = E (f − g)² / D`` averaged over positions
  (Raventós et al.'s ΔPT/ΔOOD), on pool tasks and on fresh Gaussian tasks (for M = ∞, dMMSE_∞ is
  ridge);
* its predictions on fixed root sequences (fresh Gaussian tasks), stacked over all runs and
  checkpoints for the joint trajectory PCA (Carroll et al.), with ridge and dMMSE_M projected on the
  same components;
and at the end λ̂ of every final model on its own training distribution, with Hoogland et al.'s
sampler (ε = 3e-4, nβ = 66.7, γ = 6.67, loss = plain MSE; fewer chains and draws).

Transient ridge (Carroll et al.: for intermediate M the OOD loss first falls toward ridge's, then
rises toward dMMSE_M's). A checkpoint is *ridge-side* when the seed-mean OOD loss is below both
``D + σ²``, the OOD risk of the prior-mean predictor 0, and dMMSE_M's OOD loss (the exact predictor
on the same evaluation set): on fresh tasks the model then beats both the predictor that ignores
the context and the one that only recognises pool tasks, which only a predictor that regresses on
the context, as ridge does, can. The OOD minimum is the lowest seed-mean OOD loss among ridge-side
checkpoints; the rise is the final OOD loss minus that minimum, and its spread over seeds is the
standard deviation of the per-seed rises (each seed's final loss minus its own loss at that
checkpoint). A run shows the transient ridge when the minimum is not the last checkpoint and the
rise exceeds 3× the spread. A curve is called monotone when its largest move against its overall
direction is below ``monotone_tolerance`` of its range.

Changed from the papers to fit CPU minutes: D = 4, K = 8, σ² = 0.125 (Carroll: D = 8, K = 16;
Raventós: σ² = 0.25) so that memorisation and in-context learning both happen within a few
thousand steps; a d = 32, 2-layer model; pool sizes 1 to 64 and ∞ (for D = 4 the switch from
dMMSE_M to ridge happens between M = 8 and M = 64), 2 seeds each, 16,000 Adam steps at batch 32 with
a constant learning rate after warm-up (a decay would freeze the late specialisation that makes
the transient).
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
from theory.icl import ridge_mean_bayes_risk  # noqa: E402
from toymodels import estimate_llc  # noqa: E402
from toymodels.models.icl import (  # noqa: E402
    ModelEnsemble,
    dmmse_predictions,
    icl_mse,
    log_spaced_steps,
    nested_task_pool,
    ridge_predictions,
    sample_icl_batch,
    sample_tasks,
    warmup_cosine_lr,
)
from toymodels.models.transformer import ICLTransformer, ICLTransformerConfig, tokenize_icl  # noqa: E402

INFINITE = -1  # how M = ∞ is written on the command line and in the JSON


@dataclass
class Config(ExperimentConfig):
    """A sweep over the task-pool size M, several seeds each, trained as one vmapped ensemble."""

    seed: int = 0
    """Base seed: model e is initialised from seed·1000 + e; data, evaluation and the pool derive from it."""
    num_threads: int = 2
    """torch intra-op threads: 2 uses both cores (about 1.9x faster than 1 on an idle machine); use 1 on a machine shared with other jobs, where 2 threads contend."""

    pool_sizes: tuple[int, ...] = (1, 4, 8, 12, 16, 64, INFINITE)
    """Task-pool sizes M; -1 means M = ∞."""
    num_seeds: int = 2
    """Independent runs (initialisation and data stream) per pool size."""
    dim: int = 4
    """D, the task dimension."""
    num_examples: int = 8
    """K, pairs per sequence."""
    noise_variance: float = 0.125
    """σ², the label noise variance."""

    d_model: int = 32
    """Residual width."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    d_mlp: int = 64
    """MLP hidden width."""
    position_init_std: float = 0.02
    """Standard deviation of the initial position embeddings."""

    num_steps: int = 16000
    """Adam steps (shared by all runs)."""
    batch_size: int = 32
    """Sequences per step and model."""
    peak_lr: float = 3e-3
    """Peak learning rate (linear warm-up, then cosine decay to final_lr_fraction of it)."""
    warmup_steps: int = 300
    """Warm-up steps."""
    final_lr_fraction: float = 1.0
    """Learning rate at the end as a fraction of the peak (1 = constant after warm-up, so that late transitions are not frozen by the decay)."""
    num_checkpoints: int = 24
    """Log-spaced checkpoints."""
    eval_size: int = 1024
    """Sequences per evaluation set (pool tasks per M, and fresh Gaussian tasks)."""
    num_root_sequences: int = 128
    """Fixed Gaussian-task sequences whose predictions represent a checkpoint in the joint PCA."""

    llc_step_size: float = 3e-4
    """SGLD step size ε (Hoogland et al.)."""
    llc_nbeta: float = 66.7
    """nβ for the plain-MSE loss (Hoogland et al.)."""
    llc_localization: float = 6.67
    """Localisation γ (Hoogland et al.)."""
    llc_num_chains: int = 2
    """SGLD chains per final model."""
    llc_num_draws: int = 200
    """Draws per chain."""
    llc_batch_size: int = 64
    """SGLD minibatch size."""
    llc_data_size: int = 2048
    """Sequences (from the model's own training distribution) the LLC is measured on."""

    monotone_tolerance: float = 0.1
    """A curve is monotone if its largest move against its overall direction is below this fraction of its range."""

    QUICK = dict(pool_sizes=(1, 16, INFINITE), num_seeds=2, num_steps=40, warmup_steps=5,
                 num_checkpoints=4, eval_size=64, num_root_sequences=8, llc_num_draws=5,
                 llc_data_size=64)


def transient_ridge(ood: np.ndarray, threshold: float):
    """The transient-ridge test of the module docstring on OOD loss curves ``ood`` (seeds × checkpoints).

    Returns ``(t_min, rise, spread, ridge_side, transient)``: the index of the lowest seed-mean
    loss among checkpoints below ``threshold`` (None if there is none), the rise of the seed mean
    from there to the last checkpoint, the standard deviation over seeds of the per-seed rises
    (NaN with one seed: a single run cannot show a rise beyond its spread), the ridge-side mask,
    and whether the minimum is interior and the rise exceeds 3× the spread.
    """
    ood = np.asarray(ood, dtype=float)
    mean_curve = ood.mean(axis=0)
    ridge_side = mean_curve < threshold
    if not ridge_side.any():
        return None, float("nan"), float("nan"), ridge_side, False
    t_min = int(np.flatnonzero(ridge_side)[np.argmin(mean_curve[ridge_side])])
    rise = float(mean_curve[-1] - mean_curve[t_min])
    spread = float((ood[:, -1] - ood[:, t_min]).std(ddof=1)) if ood.shape[0] > 1 else float("nan")
    transient = bool(t_min < ood.shape[1] - 1 and rise > 3 * spread)
    return t_min, rise, spread, ridge_side, transient


def _label(m: int | None) -> str:
    return "∞" if m is None else str(m)


def _distance(f: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """Raventós et al.'s ``E (f − g)² / D`` over sequences and positions; leading axis kept."""
    return (f - g).square().mean(dim=(-2, -1)) / dim


def _against_direction(curve: np.ndarray) -> float:
    """Largest move of ``curve`` against its overall direction, as a fraction of its range."""
    span = curve.max() - curve.min()
    if span == 0:
        return 0.0
    if curve[-1] >= curve[0]:  # rising overall: largest drop below a running maximum
        worst = np.max(np.maximum.accumulate(curve) - curve)
    else:  # falling overall: largest rise above a running minimum
        worst = np.max(curve - np.minimum.accumulate(curve))
    return float(worst / span)


@uses_threads
def main(cfg: Config) -> dict:
    start_time = time.perf_counter()

    # Derived quantities and seeding.
    pool_sizes: list[int | None] = [None if m == INFINITE else int(m) for m in cfg.pool_sizes]
    if any(m is not None and m < 1 for m in pool_sizes):
        raise ValueError(f"pool_sizes must be positive integers or {INFINITE} for M = ∞; got {cfg.pool_sizes}")
    members = [(m, s) for m in pool_sizes for s in range(cfg.num_seeds)]  # member e ↔ (M, seed index)
    member_sizes = [m for m, _ in members]
    finite = [m for m in pool_sizes if m is not None]
    pool = nested_task_pool(max(finite) if finite else 1, cfg.dim, seed=cfg.seed)
    model_config = ICLTransformerConfig(
        dim=cfg.dim, num_examples=cfg.num_examples, d_model=cfg.d_model, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, d_mlp=cfg.d_mlp, position_init_std=cfg.position_init_std,
    )

    def make_model(generator: torch.Generator) -> ICLTransformer:
        return ICLTransformer(model_config, generator)

    ensemble = ModelEnsemble(make_model, [cfg.seed * 1000 + e for e in range(len(members))])
    num_members = len(members)
    data_generator = torch.Generator().manual_seed(10_000 + cfg.seed)
    s2, dim, k = cfg.noise_variance, cfg.dim, cfg.num_examples

    # Evaluation sets: fresh Gaussian tasks (shared by every model) and pool tasks (one set per M).
    eval_generator = torch.Generator().manual_seed(20_000 + cfg.seed)
    gaussian = sample_icl_batch(
        sample_tasks([None], cfg.eval_size, eval_generator, dim=dim)[0], k, s2, eval_generator
    )
    in_pool = {
        m: sample_icl_batch(sample_tasks([m], cfg.eval_size, eval_generator, dim=dim, task_pool=pool)[0], k, s2, eval_generator)
        for m in pool_sizes
    }
    gaussian_tokens = tokenize_icl(gaussian.xs, gaussian.ys).expand(num_members, -1, -1, -1)
    pool_tokens = torch.stack([tokenize_icl(in_pool[m].xs, in_pool[m].ys) for m in member_sizes])
    pool_ys = torch.stack([in_pool[m].ys for m in member_sizes])

    def reference(m: int | None, batch) -> torch.Tensor:  # dMMSE_M, which is ridge for M = ∞
        if m is None:
            return ridge_predictions(batch.xs, batch.ys, s2)
        return dmmse_predictions(batch.xs, batch.ys, pool[:m], s2)

    ridge_gaussian = ridge_predictions(gaussian.xs, gaussian.ys, s2)
    dmmse_gaussian = {m: reference(m, gaussian) for m in pool_sizes}
    ridge_pool = {m: ridge_predictions(in_pool[m].xs, in_pool[m].ys, s2) for m in pool_sizes}
    dmmse_pool = {m: reference(m, in_pool[m]) for m in pool_sizes}
    reference_losses = {
        _label(m): dict(
            dmmse_gaussian=icl_mse(dmmse_gaussian[m], gaussian.ys).item(),
            ridge_gaussian=icl_mse(ridge_gaussian, gaussian.ys).item(),
            dmmse_pool=icl_mse(dmmse_pool[m], in_pool[m].ys).item(),
            ridge_pool=icl_mse(ridge_pool[m], in_pool[m].ys).item(),
        )
        for m in pool_sizes
    }
    dmmse_gaussian_e = torch.stack([dmmse_gaussian[m] for m in member_sizes])
    ridge_pool_e = torch.stack([ridge_pool[m] for m in member_sizes])
    dmmse_pool_e = torch.stack([dmmse_pool[m] for m in member_sizes])
    roots = slice(0, cfg.num_root_sequences)

    checkpoints = set(log_spaced_steps(cfg.num_steps, cfg.num_checkpoints))
    optimiser = torch.optim.Adam(ensemble.params.values(), lr=cfg.peak_lr)
    records, root_predictions = [], []
    train_seconds = eval_seconds = 0.0
    for step in range(cfg.num_steps + 1):
        if step in checkpoints:
            t0 = time.perf_counter()
            with torch.no_grad():
                f_gauss = ensemble(gaussian_tokens)  # (E, B, K)
                f_pool = ensemble(pool_tokens)
            records.append(
                dict(
                    step=step,
                    loss_gaussian=(f_gauss - gaussian.ys).square().mean(dim=(1, 2)).tolist(),
                    loss_pool=(f_pool - pool_ys).square().mean(dim=(1, 2)).tolist(),
                    dist_ridge_gaussian=_distance(f_gauss, ridge_gaussian, dim).tolist(),
                    dist_dmmse_gaussian=_distance(f_gauss, dmmse_gaussian_e, dim).tolist(),
                    dist_ridge_pool=_distance(f_pool, ridge_pool_e, dim).tolist(),
                    dist_dmmse_pool=_distance(f_pool, dmmse_pool_e, dim).tolist(),
                )
            )
            root_predictions.append(f_gauss[:, roots].reshape(num_members, -1).clone())
            ood = " ".join(f"{v:.2f}" for v in records[-1]["loss_gaussian"])
            print(f"  step {step:>6} ({time.perf_counter() - start_time:.0f} s) OOD loss per model: {ood}", flush=True)
            eval_seconds += time.perf_counter() - t0
        if step == cfg.num_steps:
            break
        t0 = time.perf_counter()
        for group in optimiser.param_groups:
            group["lr"] = warmup_cosine_lr(
                step, peak_lr=cfg.peak_lr, num_steps=cfg.num_steps, warmup_steps=cfg.warmup_steps,
                final_fraction=cfg.final_lr_fraction,
            )
        tasks = sample_tasks(member_sizes, cfg.batch_size, data_generator, dim=dim, task_pool=pool)
        batch = sample_icl_batch(tasks, k, s2, data_generator)  # (E, B, K, ·)
        predictions = ensemble(tokenize_icl(batch.xs, batch.ys))
        # Sum of the members' mean losses: each member's gradient is its own loss's gradient.
        loss = (predictions - batch.ys).square().mean(dim=(1, 2)).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        train_seconds += time.perf_counter() - t0
    train_loop_seconds = train_seconds + eval_seconds

    # λ̂ of every final model on data from its own training distribution.
    t0 = time.perf_counter()
    llc_generator = torch.Generator().manual_seed(30_000 + cfg.seed)
    llc_data = {
        m: sample_icl_batch(sample_tasks([m], cfg.llc_data_size, llc_generator, dim=dim, task_pool=pool)[0], k, s2, llc_generator)
        for m in pool_sizes
    }
    llcs = []
    for e, (m, _) in enumerate(members):
        data = llc_data[m]
        result = estimate_llc(
            ensemble.member(e), data=(tokenize_icl(data.xs, data.ys), data.ys), loss_fn=icl_mse,
            nbeta=cfg.llc_nbeta, step_size=cfg.llc_step_size, localization=cfg.llc_localization,
            num_chains=cfg.llc_num_chains, num_draws=cfg.llc_num_draws, batch_size=cfg.llc_batch_size,
            seed=cfg.seed * 1000 + e, progress=False, on_divergence="drop",
        )
        llcs.append(dict(llc_mean=result.llc_mean, llc_mcse=result.mcse, llc_per_chain=[float(v) for v in result.llc_per_chain]))
    llc_seconds = time.perf_counter() - t0

    # Joint trajectory PCA (Carroll et al.): rows = (checkpoint, member), columns = root predictions.
    trajectory = torch.stack(root_predictions, dim=1).double()  # (E, C, B_root·K)
    flat = trajectory.reshape(-1, trajectory.shape[-1])
    centre = flat.mean(dim=0)
    _, singular, v_t = torch.linalg.svd(flat - centre, full_matrices=False)
    components = v_t[:2]  # (2, B_root·K)
    explained = (singular[:2].square() / singular.square().sum()).tolist()
    projected = ((trajectory - centre) @ components.T).numpy()  # (E, C, 2)
    ridge_point = ((ridge_gaussian[roots].reshape(-1).double() - centre) @ components.T).numpy()
    dmmse_points = {
        m: ((dmmse_gaussian[m][roots].reshape(-1).double() - centre) @ components.T).numpy() for m in pool_sizes
    }
    lo, hi = projected.reshape(-1, 2).min(axis=0), projected.reshape(-1, 2).max(axis=0)

    def relative(point: np.ndarray) -> list[float]:  # position within the checkpoints' range, per PC
        return ((point - lo) / (hi - lo)).tolist()

    opposite_ends = {}
    for m in finite:
        r, d = relative(ridge_point), relative(dmmse_points[m])
        opposite_ends[_label(m)] = [
            bool(min(r[j], d[j]) <= 0.25 and max(r[j], d[j]) >= 0.75) for j in range(2)
        ]

    # Per-M summaries over seeds.
    steps = np.array([r["step"] for r in records])
    zero_to_ridge = (ridge_gaussian.square().mean() / dim).item()  # Δ(0, ridge) on Gaussian tasks
    summaries = {}
    for m in pool_sizes:
        idx = [e for e, (mm, _) in enumerate(members) if mm == m]
        ood = np.array([[r["loss_gaussian"][e] for r in records] for e in idx])  # (seeds, C)
        mean_curve = ood.mean(axis=0)
        references = reference_losses[_label(m)]
        # Below the zero predictor's OOD risk D + σ² and below dMMSE_M's: only a predictor that
        # regresses on the context gets there (for M ≤ 8 dMMSE_M is worse than 0 on fresh tasks).
        threshold = min(references["dmmse_gaussian"], dim + s2)
        if m is None:  # dMMSE_∞ is ridge: there is nothing to be transient toward
            threshold = -math.inf
        t_min, rise, spread, ridge_side, transient = transient_ridge(ood, threshold)
        final = {key: float(np.mean([records[-1][key][e] for e in idx])) for key in records[-1] if key != "step"}
        summaries[_label(m)] = dict(
            final=final,
            ood_curve_mean=mean_curve.tolist(),
            ridge_side_steps=steps[ridge_side].tolist(),
            ood_min_step=int(steps[t_min]) if t_min is not None else None,
            ood_rise_after_min=rise,
            ood_rise_spread_over_seeds=spread,
            transient=transient,
            ood_against_direction=_against_direction(mean_curve),
            monotone=_against_direction(mean_curve) < cfg.monotone_tolerance,
            nearer="dMMSE_M" if final["dist_dmmse_gaussian"] < final["dist_ridge_gaussian"] else "ridge",
            llc_mean=float(np.mean([llcs[e]["llc_mean"] for e in idx])),
            llc_per_seed=[llcs[e]["llc_mean"] for e in idx],
            pca_relative_ridge=relative(ridge_point),
            pca_relative_dmmse=relative(dmmse_points[m]),
        )
    labels = [_label(m) for m in pool_sizes]
    intermediate = labels[1:-1]
    # "Near": the nearer of dMMSE_M and ridge on fresh Gaussian tasks, where the two differ most; for
    # M = ∞ (dMMSE_∞ = ridge) the comparison is with dMMSE of the largest finite pool in the sweep.
    infinite_near_ridge = None
    if None in pool_sizes and finite:
        with torch.no_grad():
            final_gaussian = ensemble(gaussian_tokens)
        infinite_members = [e for e, (mm, _) in enumerate(members) if mm is None]
        to_largest_pool = float(np.mean([
            _distance(final_gaussian[e], dmmse_gaussian[max(finite)], dim).item() for e in infinite_members
        ]))
        infinite_near_ridge = bool(summaries["∞"]["final"]["dist_ridge_gaussian"] < to_largest_pool)
    finite_labels = [_label(m) for m in sorted(finite)]
    targets = dict(
        smallest_m_near_dmmse=bool(finite_labels) and summaries[finite_labels[0]]["nearer"] == "dMMSE_M",
        largest_finite_m_near_ridge=bool(finite_labels) and summaries[finite_labels[-1]]["nearer"] == "ridge",
        infinite_m_near_ridge=infinite_near_ridge,
        transient_ridge_at=[lab for lab in intermediate if summaries[lab]["transient"]],
        extremes_monotone=bool(summaries[labels[0]]["monotone"] and summaries[labels[-1]]["monotone"]),
        pca_opposite_ends_at=[lab for lab, flags in opposite_ends.items() if any(flags)],
    )
    wall_seconds = time.perf_counter() - start_time

    print(f"ICL task diversity: D={dim} K={k} σ²={s2}, {num_members} models "
          f"({len(pool_sizes)} pool sizes × {cfg.num_seeds} seeds) in one vmapped ensemble, {cfg.num_steps} steps")
    print(f"{'M':>6} {'Δ dMMSE pool':>12} {'Δ ridge pool':>12} {'Δ dMMSE gauss':>13} {'Δ ridge gauss':>13} "
          f"{'OOD min@':>8} {'rise':>6} {'±seeds':>6} {'λ̂':>7}")
    for lab in labels:
        s = summaries[lab]
        f = s["final"]
        print(f"{lab:>6} {f['dist_dmmse_pool']:12.4f} {f['dist_ridge_pool']:12.4f} {f['dist_dmmse_gaussian']:13.4f} "
              f"{f['dist_ridge_gaussian']:13.4f} {str(s['ood_min_step']):>8} {s['ood_rise_after_min']:6.3f} "
              f"{s['ood_rise_spread_over_seeds']:6.3f} {s['llc_mean']:7.1f}")
    print(f"PCA explained variance of PC1, PC2: {explained[0]:.2f}, {explained[1]:.2f}; "
          f"ridge and dMMSE_M at opposite ends for M in {targets['pca_opposite_ends_at']}")
    print(f"targets: {targets}")
    print(f"wall time {wall_seconds:.0f} s (training loop {train_loop_seconds:.0f} s of which evaluation "
          f"{eval_seconds:.0f} s; LLC {llc_seconds:.0f} s)")

    result = dict(
        experiment="icl_task_diversity",
        papers="Raventós et al. 2023 (arXiv 2306.15063) Figs 2-3; Carroll et al. 2025 Figs 1-2",
        config=asdict(cfg),
        pool_sizes=labels,
        members=[dict(pool_size=_label(m), seed_index=s) for m, s in members],
        steps=steps.tolist(),
        checkpoints=records,
        reference_losses=reference_losses,
        distance_zero_to_ridge_gaussian=zero_to_ridge,
        ridge_mean_bayes_risk=ridge_mean_bayes_risk(k, dim, s2),
        llc=llcs,
        pca=dict(
            explained_variance_ratio=explained,
            ridge=ridge_point.tolist(),
            dmmse={_label(m): p.tolist() for m, p in dmmse_points.items()},
            opposite_ends=opposite_ends,
        ),
        summaries=summaries,
        targets=targets,
        wall_seconds=wall_seconds,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        llc_seconds=llc_seconds,
    )
    paths = output_paths(cfg, "icl_task_diversity")
    write_json(paths.json, result)
    _plot(cfg, pool_sizes, members, records, steps, summaries, reference_losses, projected, ridge_point,
          dmmse_points, explained, paths.figure)
    return result


def _plot(cfg, pool_sizes, members, records, steps, summaries, reference_losses, projected, ridge_point,
          dmmse_points, explained, path: Path) -> None:
    labels = [_label(m) for m in pool_sizes]
    x = np.arange(len(labels))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(pool_sizes)))
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))

    ax = axes[0]
    for key, name, style in [("dist_dmmse_pool", "Δ(model, dMMSE_M), pool tasks", "o-"),
                             ("dist_ridge_pool", "Δ(model, ridge), pool tasks", "s-"),
                             ("dist_dmmse_gaussian", "Δ(model, dMMSE_M), Gaussian tasks", "o--"),
                             ("dist_ridge_gaussian", "Δ(model, ridge), Gaussian tasks", "s--")]:
        ax.plot(x, [summaries[lab]["final"][key] for lab in labels], style, label=name)
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_xlabel("task pool size M")
    ax.set_ylabel("E (f − g)² / D (final models, mean over seeds)")
    ax.legend(fontsize=7)

    ax = axes[1]
    plot_steps = np.maximum(steps, 1)
    for i, m in enumerate(pool_sizes):
        idx = [e for e, (mm, _) in enumerate(members) if mm == m]
        curves = np.array([[r["loss_gaussian"][e] for r in records] for e in idx])
        ax.plot(plot_steps, curves.mean(axis=0), color=colours[i], label=f"M = {labels[i]}")
        ax.fill_between(plot_steps, curves.min(axis=0), curves.max(axis=0), color=colours[i], alpha=0.2)
    ax.axhline(reference_losses[labels[0]]["ridge_gaussian"], color="k", ls=":", label="ridge")
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("OOD loss (fresh Gaussian tasks)")
    ax.set_ylim(top=min(ax.get_ylim()[1], 2.5 * reference_losses[labels[0]]["ridge_gaussian"] + 3))
    ax.legend(fontsize=7)

    ax = axes[2]
    for e, (m, _) in enumerate(members):
        i = pool_sizes.index(m)
        ax.plot(projected[e, :, 0], projected[e, :, 1], "-", color=colours[i], alpha=0.6, lw=1)
        ax.plot(projected[e, -1, 0], projected[e, -1, 1], "o", color=colours[i], ms=4)
    ax.plot(*ridge_point, "k*", ms=14, label="ridge")
    for i, m in enumerate(pool_sizes):
        if m is not None:
            ax.plot(*dmmse_points[m], "X", color=colours[i], ms=10, mec="k", label=f"dMMSE_{labels[i]}")
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}%)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}%)")
    ax.set_title("joint trajectory PCA", fontsize=9)
    ax.legend(fontsize=6, ncol=2)

    ax = axes[3]
    for i, lab in enumerate(labels):
        vals = summaries[lab]["llc_per_seed"]
        ax.plot([i] * len(vals), vals, "o", color=colours[i], alpha=0.6)
        ax.plot(i, np.mean(vals), "_", color="k", ms=20)
    ax.set_xticks(x, labels)
    ax.set_xlabel("task pool size M")
    ax.set_ylabel("λ̂ of the final model (own pool)")
    fig.suptitle(f"Task diversity (D = {cfg.dim}, K = {cfg.num_examples}, σ² = {cfg.noise_variance}): "
                 "dMMSE_M vs ridge, transient ridge, joint PCA, λ̂")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
