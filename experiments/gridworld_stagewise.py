"""Opposing staircases in a gridworld (Elliott, Urdshals, Quarel, Farrugia-Roberts, Murfet, arXiv 2601.07524): while gradient descent on the exact regret lowers it in steps, does λ̂ of the regret rise in steps, also on the corner-cheese levels alone?

Setup. For each seed: one 7×7 depth-first-search maze (shared by all levels of the seed, so that
"go to the corner" is one policy of the mouse's cell), ``num_levels`` training levels of the
cheese-in-the-corner mixture (the cheese in the top-left free cell with probability ``1 − α``,
elsewhere with ``α``; random starts), discount γ = 0.9. The policy is a small MLP on the one-hot
observation (walls, mouse, cheese), initialised at ``init_scale`` times PyTorch's default (near
the uniform policy); it is trained by full-batch SGD (or Adam) on the *exact* regret
(``V*(s₀) − V^π(s₀)`` by the batched Bellman system, averaged over levels), recording the regret
and the flat parameters every ``record_every`` steps. For reference the figure marks the regret of
the policy that always walks to the corner (the proxy policy: zero regret on corner-cheese levels).

What was tried before these defaults (seeds 0 and 1, not tuned per seed): Adam at lr 0.003
from the default initialisation, with one maze per level or one maze per seed, lowers the regret
smoothly to a single final plateau (often below the corner policy's regret); SGD at lr 1 is
unstable; SGD at lr 0.3 from a 0.1× initialisation showed an early plateau, a drop, and a plateau
near the corner policy's regret, with occasional spikes, hence lr 0.2 here. Longer runs (seeds
0–2, 20,000 steps; SGD at lr 0.2 or 0.5, Adam at lr 0.001 with 64 hidden units, α = 0.1 or 0.25)
never showed a third, cheese-going stage after a corner plateau: the regret settles at or a little
below the corner policy's (0.083 against 0.101, 0.045 against 0.071), or in a worse trap (0.300,
0.208), and stays there for the rest of the run; once (seed 1, α = 0.1, lr 0.5) it fell past the
corner policy's regret (0.028) to 0.007 in one drop, with no plateau at the corner. Once the
softmax saturates on the corner-going actions, the gradient that the few away-cheese levels
contribute is exponentially small: for gradient descent the corner plateau is where training ends.

Sampled gradients. For the first ``reinforce_seeds`` seeds the same initial policy is also trained
by REINFORCE with a mean baseline on ``reinforce_episodes`` sampled rollouts per step (the same
optimizer, step and length), and its exact regret is recorded and searched for plateaus by the
same rule: the stages should not be an artefact of exact gradients.

Plateaus. On the recorded curve a checkpoint is *flat* when ``|log R|`` changes by less than
``plateau_tolerance`` over the next ``plateau_window`` records; a plateau is a maximal run of at
least ``min_plateau_records`` flat checkpoints, and two plateaus whose regrets differ by less than
``min_drop`` (relative) are merged (so that consecutive plateaus are separated by a drop). The
detection is the same for every seed and is not tuned per seed.

The LLC on each plateau, at its middle checkpoint ``w``: ``toymodels.estimate_llc`` of the
potential ``R(w)`` (:func:`toymodels.models.gridworld.regret_potential`) with SGLD at one fixed
step size, localization γ_loc and ``nβ = n/log n`` for a nominal ``n = num_samples``, the same for
every checkpoint and seed; and the *subset* λ̂ with the same sampler on the regret restricted to the
corner-cheese levels (``levels[levels.cheese_in_corner]``), where the corner-going and the
cheese-going policies have equal regret. A staircase, per seed: at least two plateaus, and λ̂
higher after each drop by more than 3 combined MCSE (``Δλ̂ > 3·√(mcse₁² + mcse₂²)``).

Outputs: ``results/gridworld_stagewise.json`` (``{"seeds": [{"seed", "stages": [{"regret", "llc",
"llc_mcse", "subset_llc", "subset_llc_mcse"}, ...]}, ...]}`` plus curves, settings and the
verdicts), a printed table, and a figure (regret and λ̂ over training per seed with the plateaus
shaded; the policy of the first seed at each plateau drawn as arrows on its maze).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels import estimate_llc
from toymodels.models.gridworld import (
    MOVES,
    Levels,
    MLPPolicy,
    dfs_maze,
    flat_parameters,
    load_flat_parameters,
    optimal_policy,
    regret,
    regret_potential,
    sample_levels,
    train_exact,
    train_reinforce,
)


@dataclass
class Config(ExperimentConfig):
    """Gradient descent on the exact gridworld regret; λ̂ (all levels and corner-cheese levels) on its plateaus."""

    seed: int = 0
    """first seed: seed s + k (k < num_seeds) draws the maze, the levels, the initial policy and the sampler"""
    num_seeds: int = 5
    """how many seeds (independent mazes, level sets and initialisations)"""
    size: int = 7
    """height = width of the maze (odd)"""
    num_levels: int = 48
    """training levels per seed"""
    alpha: float = 0.25
    """probability that the cheese is not in the corner"""
    gamma: float = 0.9
    """discount"""
    hidden: tuple[int, ...] = (16,)
    """hidden widths of the MLP policy"""
    init_scale: float = 0.1
    """the MLP's default initial parameters are multiplied by this (a small initialisation starts
    training near the uniform policy, a saddle)"""
    optimizer: str = "sgd"
    """'sgd' or 'adam' (full batch, on the exact regret)"""
    learning_rate: float = 0.2
    """step of the optimizer"""
    steps: int = 6000
    """training steps"""
    record_every: int = 20
    """record the regret and the parameters every this many steps"""
    plateau_window: int = 5
    """records over which flatness is measured"""
    plateau_tolerance: float = 0.03
    """a checkpoint is flat when |Δ log R| over the window is below this"""
    min_plateau_records: int = 5
    """a plateau has at least this many flat checkpoints"""
    min_drop: float = 0.1
    """consecutive plateaus are separated by a relative drop of the regret of at least this"""
    num_samples: int = 10_000
    """nominal n; nβ = n / log n for every λ̂"""
    localization: float = 100.0
    """γ of the localizing Gaussian"""
    step_size: float = 1e-4
    """SGLD ε (fixed for all checkpoints; chosen on one probe of seed 0, where 1e-5, 1e-4 and 1e-3
    agreed at the final plateau)"""
    num_chains: int = 4
    """chains per λ̂"""
    num_burnin_steps: int = 200
    """SGLD burn-in steps per chain"""
    num_draws: int = 300
    """SGLD draws per chain after burn-in"""
    reinforce_seeds: int = 1
    """for the first this many seeds, the same initial policy is also trained by REINFORCE with a
    mean baseline on sampled rollouts (same optimizer, step and number of steps), to show whether
    the plateaus survive noisy policy gradients"""
    reinforce_episodes: int = 128
    """rollouts per REINFORCE step"""

    QUICK = dict(num_seeds=1, size=5, num_levels=12, hidden=(8,), steps=120, record_every=10,
                 plateau_window=2, min_plateau_records=2, num_chains=2, num_burnin_steps=20,
                 num_draws=30, reinforce_seeds=1, reinforce_episodes=16)


def corner_policy_regret(levels: Levels, gamma: float) -> float:
    """Regret of the policy that walks to the corner by a shortest path (the proxy policy)."""
    to_corner = Levels(levels.walls, levels.start, levels.corner)
    return float(regret(levels, optimal_policy(to_corner), gamma))


def find_plateaus(regrets: np.ndarray, window: int, tolerance: float, min_records: int,
                  min_drop: float) -> list[tuple[int, int]]:
    """``[(first, last)]`` record indices of the plateaus of ``regrets`` (module docstring)."""
    logr = np.log(np.maximum(regrets, 1e-300))
    n = len(logr)
    flat = np.zeros(n, dtype=bool)
    for k in range(n):
        j = min(n - 1, k + window)
        if j - k >= 1 and abs(logr[j] - logr[k]) < tolerance:
            flat[k] = True
    if n >= 2 and flat[n - 2]:
        flat[n - 1] = True  # the last record closes the run it ends
    runs, start = [], None
    for k, f in enumerate(np.append(flat, False)):
        if f and start is None:
            start = k
        elif not f and start is not None:
            if k - start >= min_records:
                runs.append((start, k - 1))
            start = None
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged:
            p_first, p_last = merged[-1]
            before = regrets[(p_first + p_last) // 2]
            after = regrets[(first + last) // 2]
            if before - after < min_drop * before:
                merged[-1] = (p_first, last)
                continue
        merged.append((first, last))
    return merged


def _llc(levels: Levels, policy: torch.nn.Module, w: torch.Tensor, cfg: Config, nbeta: float,
         seed: int) -> tuple[float, float, float]:
    load_flat_parameters(policy, w)
    pot = regret_potential(levels, policy, cfg.gamma)
    res = estimate_llc(pot, init=pot.init, nbeta=nbeta, step_size=cfg.step_size,
                       localization=cfg.localization, num_chains=cfg.num_chains,
                       num_burnin_steps=cfg.num_burnin_steps, num_draws=cfg.num_draws, seed=seed,
                       on_divergence="drop", progress=False)
    below = float(np.mean(res.fraction_below_init)) if res.fraction_below_init is not None else float("nan")
    return float(res.llc_mean), float(res.mcse), below


def _rises(stages: list[dict], key: str) -> list[bool]:
    out = []
    for a, b in zip(stages, stages[1:]):
        combined = math.hypot(a[key + "_mcse"], b[key + "_mcse"])
        out.append(bool(b[key] - a[key] > 3 * combined))
    return out


def run_seed(cfg: Config, seed: int, nbeta: float) -> dict:
    g = torch.Generator().manual_seed(seed)
    maze = dfs_maze(cfg.size, cfg.size, g)
    levels = sample_levels(cfg.num_levels, g, alpha=cfg.alpha, height=cfg.size, width=cfg.size,
                           maze=maze)
    subset = levels[levels.cheese_in_corner]
    policy = MLPPolicy(cfg.size, cfg.size, hidden=cfg.hidden, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(cfg.init_scale)
    initial = flat_parameters(policy)
    trained = train_exact(policy, levels, cfg.gamma, steps=cfg.steps, lr=cfg.learning_rate,
                          optimizer=cfg.optimizer, record_every=cfg.record_every)
    reinforce = None
    if seed - cfg.seed < cfg.reinforce_seeds:
        sampled = MLPPolicy(cfg.size, cfg.size, hidden=cfg.hidden, dtype=torch.float64)
        load_flat_parameters(sampled, initial)
        run_rl = train_reinforce(sampled, levels, cfg.gamma, torch.Generator().manual_seed(seed + 7919),
                                 steps=cfg.steps, lr=cfg.learning_rate, optimizer=cfg.optimizer,
                                 num_episodes=cfg.reinforce_episodes, baseline="mean",
                                 record_every=cfg.record_every)
        rl_regrets = np.asarray(run_rl.regrets)
        rl_plateaus = find_plateaus(rl_regrets, cfg.plateau_window, cfg.plateau_tolerance,
                                    cfg.min_plateau_records, cfg.min_drop)
        reinforce = dict(steps=list(run_rl.steps), regrets=rl_regrets.tolist(),
                         plateau_regrets=[float(rl_regrets[(a + b) // 2]) for a, b in rl_plateaus],
                         plateau_steps=[[int(run_rl.steps[a]), int(run_rl.steps[b])] for a, b in rl_plateaus])
        print(f"seed {seed}  REINFORCE: {len(rl_plateaus)} plateau(s) at regret "
              + ", ".join(f"{r:.4f}" for r in reinforce["plateau_regrets"]), flush=True)
    regrets = np.asarray(trained.regrets)
    plateaus = find_plateaus(regrets, cfg.plateau_window, cfg.plateau_tolerance,
                             cfg.min_plateau_records, cfg.min_drop)
    stages = []
    for i, (first, last) in enumerate(plateaus):
        mid = (first + last) // 2
        w = trained.checkpoints[mid]
        llc, mcse, below = _llc(levels, policy, w, cfg, nbeta, seed * 100 + i)
        s_llc, s_mcse, s_below = _llc(subset, policy, w, cfg, nbeta, seed * 100 + 50 + i)
        load_flat_parameters(policy, w)
        sub_regret = float(regret_potential(subset, policy, cfg.gamma)(w))
        stages.append(dict(regret=float(regrets[mid]), llc=llc, llc_mcse=mcse, subset_llc=s_llc,
                           subset_llc_mcse=s_mcse, subset_regret=sub_regret,
                           step=int(trained.steps[mid]), first_step=int(trained.steps[first]),
                           last_step=int(trained.steps[last]), fraction_below_init=below,
                           subset_fraction_below_init=s_below))
        print(f"seed {seed}  plateau {i}  steps {trained.steps[first]}–{trained.steps[last]}  "
              f"regret {regrets[mid]:.4f}  λ̂ {llc:8.2f} ± {mcse:.2f}  "
              f"subset λ̂ {s_llc:8.2f} ± {s_mcse:.2f}", flush=True)
    rises, subset_rises = _rises(stages, "llc"), _rises(stages, "subset_llc")
    # the policy at each plateau on one level with the cheese away from the corner (for the figure)
    away = torch.nonzero(~levels.cheese_in_corner)[:, 0]
    show = levels[[int(away[0])]] if away.numel() else levels[[0]]
    arrows = []
    for st in stages:
        k = trained.steps.index(st["step"])
        load_flat_parameters(policy, trained.checkpoints[k])
        p = regret_potential(show, policy, cfg.gamma).probabilities(trained.checkpoints[k])[0]
        arrows.append(p.tolist())
    return dict(seed=seed, stages=stages, num_plateaus=len(stages),
                llc_rises=rises, subset_llc_rises=subset_rises,
                staircase=bool(len(stages) >= 2 and all(rises)),
                # the same, counting only plateaus whose λ̂ is positive by > 3 MCSE (a negative λ̂
                # means the chains found lower regret: the plateau is a saddle, not a minimum)
                staircase_positive_llc=bool(len(stages) >= 2 and all(rises) and all(
                    t["llc"] > 3 * t["llc_mcse"] for t in stages)),
                subset_staircase=bool(len(stages) >= 2 and all(subset_rises)),
                steps=list(trained.steps), regrets=regrets.tolist(),
                corner_policy_regret=corner_policy_regret(levels, cfg.gamma),
                num_corner_levels=len(subset), num_levels=len(levels),
                reinforce=reinforce,
                maze=show.walls[0].int().tolist(), shown_cheese=int(show.cheese[0]),
                shown_corner=int(show.corner[0]), policy_at_plateaus=arrows)


@uses_threads
def main(cfg: Config) -> dict:
    start = time.perf_counter()
    nbeta = cfg.num_samples / math.log(cfg.num_samples)
    seeds = [run_seed(cfg, cfg.seed + k, nbeta) for k in range(cfg.num_seeds)]
    multi = sum(s["num_plateaus"] >= 2 for s in seeds)
    stair = sum(s["staircase"] for s in seeds)
    sub_stair = sum(s["subset_staircase"] for s in seeds)
    positive = sum(s["staircase_positive_llc"] for s in seeds)
    saddles = sum(t["llc"] < 0 for s in seeds for t in s["stages"])
    summary = (f"{multi}/{len(seeds)} seeds with ≥ 2 plateaus; λ̂ rose after every drop by > 3 "
               f"combined MCSE in {stair}/{len(seeds)} seeds (subset λ̂: {sub_stair}/{len(seeds)}); "
               f"{saddles} plateau(s) with λ̂ < 0 (saddles: the chains descend), and with every "
               f"plateau's λ̂ > 3 MCSE {positive}/{len(seeds)} staircases remain")
    report = dict(config=asdict(cfg), nbeta=nbeta, seeds=seeds,
                  seeds_with_two_or_more_plateaus=multi, seeds_with_llc_staircase=stair,
                  seeds_with_subset_llc_staircase=sub_stair,
                  seeds_with_staircase_of_positive_llc=positive, plateaus_with_negative_llc=saddles,
                  summary=summary,
                  seconds=time.perf_counter() - start)
    print(summary, flush=True)
    paths = output_paths(cfg, "gridworld_stagewise")
    write_json(paths.json, report)
    _plot(report, paths.figure)
    return report


def _plot(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = report["seeds"]
    first = seeds[0]
    n_arrows = max(1, len(first["stages"]))
    cols = max(len(seeds), n_arrows)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 7.6), squeeze=False)
    for j, s in enumerate(seeds):
        ax = axes[0, j]
        steps = np.asarray(s["steps"]) + 1
        ax.plot(steps, s["regrets"], color="C0", lw=1.5, label="regret, exact gradient")
        if s.get("reinforce"):
            ax.plot(np.asarray(s["reinforce"]["steps"]) + 1, s["reinforce"]["regrets"], color="C1",
                    lw=1, alpha=0.8, label="regret, REINFORCE (sampled)")
        ax.axhline(s["corner_policy_regret"], color="C0", ls=":", lw=1, label="corner policy")
        for st in s["stages"]:
            ax.axvspan(st["first_step"] + 1, st["last_step"] + 1, color="0.85", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        if j == 0:
            ax.set_ylabel("exact regret", color="C0")
        ax2 = ax.twinx()
        st = s["stages"]
        if st:
            x = [t["step"] + 1 for t in st]
            ax2.errorbar(x, [t["llc"] for t in st], yerr=[2 * t["llc_mcse"] for t in st], fmt="o-",
                         color="C3", capsize=3, label="λ̂ (all levels)")
            ax2.errorbar(x, [t["subset_llc"] for t in st], yerr=[2 * t["subset_llc_mcse"] for t in st],
                         fmt="s--", mfc="none", color="C2", capsize=3, label="λ̂ (corner-cheese levels)")
        if j == len(seeds) - 1:
            ax2.set_ylabel("λ̂ on the plateau (±2 MCSE)")
        verdict = "staircase" if s["staircase"] else "no staircase"
        ax.set_title(f"seed {s['seed']}: {s['num_plateaus']} plateau(s), {verdict}", fontsize=9)
        if j == 0:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    for j in range(len(seeds), cols):
        axes[0, j].axis("off")
    walls = np.asarray(first["maze"], dtype=bool)
    H, W = walls.shape
    for j in range(cols):
        ax = axes[1, j]
        if j >= len(first["stages"]):
            ax.axis("off")
            continue
        st = first["stages"][j]
        probs = np.asarray(first["policy_at_plateaus"][j])
        ax.imshow(walls, cmap="Greys", vmin=0, vmax=1.3)
        for cell in range(H * W):
            r, c = divmod(cell, W)
            if walls[r, c] or cell == first["shown_cheese"]:
                continue
            for a, (dr, dc) in enumerate(MOVES):
                p = probs[cell, a]
                if p > 0.05:
                    ax.arrow(c, r, 0.4 * p * dc, 0.4 * p * dr, head_width=0.12 * p + 0.03,
                             length_includes_head=True, color="C0", alpha=min(1.0, 0.3 + p))
        cr, cc = divmod(first["shown_cheese"], W)
        ax.plot(cc, cr, "o", color="gold", ms=10, mec="k")
        kr, kc = divmod(first["shown_corner"], W)
        ax.plot(kc, kr, "s", mfc="none", mec="C3", ms=12)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"seed {first['seed']}, plateau {j} (step {st['step']}): π(a|s), "
                     f"regret {st['regret']:.3f}", fontsize=8)
    fig.suptitle(f"Gridworld: regret and λ̂ on its plateaus (nβ = {report['nbeta']:.0f}); "
                 f"cheese ●, corner □ — {report['summary']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
