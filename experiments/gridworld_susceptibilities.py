"""Susceptibilities of a gridworld agent (after Elliott, Urdshals, Quarel, Murfet, arXiv 2605.08007): which parts of the policy network respond to which levels, over training, and does that predict what steering them does?

Setup. One 7×7 depth-first-search maze shared by all levels; ``num_levels`` training levels of the
cheese-in-the-corner mixture (cheese in the top-left free cell with probability ``1 − α``, elsewhere
with ``α``; random starts); discount γ = 0.9; an MLP policy (one hidden ReLU layer) on the one-hot
observation, trained by Adam on the exact regret ``R(w)`` (batched Bellman system), with the flat
parameters kept at ``checkpoints`` (training steps).

Components. The hidden units are split into ``num_groups`` groups of consecutive units; component
``g`` is the incoming weights and biases of its units and their outgoing weights (the columns of the
output layer). A *component-restricted* susceptibility samples the posterior over that component
alone, the rest of the weights fixed at the checkpoint ``w*`` (``restrict_to=`` its mask; Baker et al.
arXiv 2504.18274 §3), with the observable the regret ``φ = R`` itself.

Data directions. Three groups of training levels ``b``: the cheese in the corner, the cheese
elsewhere ("away"), and far starts (the start at least the median shortest-path distance from the
cheese; these overlap the other two). Reweighting the training mixture towards group ``b`` is the
perturbation ``L_h = R + h ΔL_b`` with ``ΔL_b = R_b − R`` (``R_b`` the mean regret over the group),
and ``χ[g, b] = −Cov(φ, ΔL_b)`` over the restricted posterior, ``∂_h E[φ] = nβ χ``
(:func:`toymodels.susceptibilities`). The corner and away groups partition the levels, so with
``p`` the corner fraction ``ΔL_away = −(p/(1−p)) ΔL_corner`` and their columns are tied
(``χ[g, away] − χ[g, corner] = −χ[g, corner]/(1−p)``); far starts are the independent direction.
One sampling run per component and checkpoint gives one row
of the response matrix with its Monte-Carlo standard errors; the LLC of the restricted posterior
comes from the same draws.

Behaviour. On ``num_heldout`` held-out levels (new starts and cheeses, same maze) with the cheese
away from the corner: the regret, and the corner preference
``B = mean_levels[V^π_corner(s₀) − V^π_cheese(s₀)]`` — the discounted probability of reaching the
corner cell (the policy still sees the real cheese) minus that of reaching the cheese, both exact.

Steering check, at the last checkpoint. The susceptibilities predict how strongly each component
carries the corner-versus-cheese distinction: ``|χ[g, away] − χ[g, corner]|`` (the differential
response of the regret to moving data between the two groups, restricted to ``g``). The test:
ablate each group (zero its output columns, i.e. its activations) and, separately, amplify it
(×``amplify``), and measure ``ΔB`` on the held-out levels. Reported: the Spearman correlation over
groups between the predicted differential response and ``|ΔB|`` under ablation, and whether the
group predicted first is the one whose ablation moves ``B`` most; the correlation is also given
over the *active* groups only (those whose ablation changes the held-out regret at all: groups of
dead ReLU units tie at zero on both axes), and against amplification; and the coarser prediction,
which groups are inert (``|χ|`` below 1% of the largest), beside the groups whose ablation changes
nothing. Nothing here is tuned to make the
prediction come true; the numbers are what they are.

Outputs: ``results/gridworld_susceptibilities.json`` (the response matrix per checkpoint with
MCSE, the behaviour per checkpoint, the steering table and its verdict) and
``figures/gridworld_susceptibilities.png``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels import susceptibilities
from toymodels.models.gridworld import (
    Levels,
    MLPPolicy,
    dfs_maze,
    load_flat_parameters,
    policy_probabilities,
    policy_values,
    regret,
    regret_potential,
    sample_levels,
    train_exact,
)
from toymodels.objectives import FlatModule

DIRECTIONS = ("corner", "away", "far")


@dataclass
class Config(ExperimentConfig):
    """Component susceptibilities of a gridworld policy to reweighting groups of levels; a steering check."""

    seed: int = 0
    """seeds the maze, the levels, the policy's initialisation, the held-out levels and the sampler"""
    size: int = 7
    """height = width of the maze (odd)"""
    num_levels: int = 64
    """training levels"""
    num_heldout: int = 64
    """held-out levels drawn for the behaviour (those with the cheese away from the corner are used)"""
    alpha: float = 0.25
    """probability that the cheese is not in the corner"""
    gamma: float = 0.9
    """discount"""
    hidden: int = 16
    """hidden width of the MLP policy"""
    num_groups: int = 8
    """the hidden units are split into this many components"""
    learning_rate: float = 0.003
    """Adam's step on the exact regret"""
    checkpoints: tuple[int, ...] = (30, 100, 300, 1000, 2000)
    """training steps at which the policy is analysed (the last is the end of training)"""
    num_samples: int = 10_000
    """nominal n; nβ = n / log n"""
    localization: float = 100.0
    """γ of the localizing Gaussian"""
    step_size: float = 1e-4
    """SGLD ε (as in gridworld_stagewise)"""
    num_chains: int = 4
    """chains per component and checkpoint"""
    num_burnin_steps: int = 150
    """SGLD burn-in steps per chain"""
    num_draws: int = 350
    """SGLD draws per chain after burn-in"""
    amplify: float = 2.0
    """the steering factor on a group's activations (besides ablation, factor 0)"""

    QUICK = dict(size=5, num_levels=16, num_heldout=16, hidden=4, num_groups=2, checkpoints=(5, 20),
                 num_chains=2, num_burnin_steps=10, num_draws=20)


def component_masks(policy: MLPPolicy, num_groups: int) -> list[torch.Tensor]:
    """``(d,)`` boolean masks, one per group of consecutive hidden units: their incoming weights
    and biases and their outgoing weights, in the flat layout of :class:`FlatModule`."""
    first, last = policy.net[0], policy.net[-1]
    hidden = first.out_features
    if len(policy.net) != 3:
        raise ValueError("component masks are defined for an MLP policy with one hidden layer")
    if not 1 <= num_groups <= hidden or hidden % num_groups:
        raise ValueError(f"num_groups must divide the hidden width {hidden}, got {num_groups}")
    flat = FlatModule(policy)
    size = hidden // num_groups
    masks = []
    for g in range(num_groups):
        units = slice(g * size, (g + 1) * size)
        parts = {name: torch.zeros(shape, dtype=torch.bool) for name, shape in zip(flat.names, flat.shapes)}
        parts["net.0.weight"][units, :] = True
        parts["net.0.bias"][units] = True
        parts["net.2.weight"][:, units] = True
        masks.append(torch.cat([parts[name].reshape(-1) for name in flat.names]))
    assert first is policy.net[0] and last is policy.net[2]
    return masks


def direction_groups(levels: Levels) -> dict[str, torch.Tensor]:
    """Boolean ``(L,)`` membership of each data direction's level group."""
    rows = torch.arange(len(levels))
    start_distance = levels.distances[rows, levels.start]
    far = start_distance >= start_distance.median()
    return {"corner": levels.cheese_in_corner, "away": ~levels.cheese_in_corner, "far": far}


def corner_preference(policy: torch.nn.Module, levels: Levels, gamma: float) -> float:
    """``mean[V^π_corner(s₀) − V^π_cheese(s₀)]``: the policy (seeing the real cheese) evaluated with
    the corner as the goal, minus with the cheese as the goal (module docstring)."""
    with torch.no_grad():
        probs = policy_probabilities(policy, levels).to(torch.float64)
        rows = torch.arange(len(levels))
        to_cheese = policy_values(levels, probs, gamma)[rows, levels.start]
        corner_goal = Levels(levels.walls, levels.start, levels.corner)
        to_corner = policy_values(corner_goal, probs, gamma)[rows, levels.start]
    return float((to_corner - to_cheese).mean())


def behaviour(policy: torch.nn.Module, heldout: Levels, gamma: float) -> dict:
    with torch.no_grad():
        r = float(regret(heldout, policy_probabilities(policy, heldout), gamma))
    return dict(heldout_regret=r, corner_preference=corner_preference(policy, heldout, gamma))


def scaled_group(policy: MLPPolicy, group: int, num_groups: int, factor: float) -> MLPPolicy:
    """A copy of ``policy`` with the activations of hidden group ``group`` multiplied by ``factor``
    (its output columns scaled: the same map, since the output layer is linear)."""
    import copy

    out = copy.deepcopy(policy)
    size = out.net[0].out_features // num_groups
    with torch.no_grad():
        out.net[2].weight[:, group * size:(group + 1) * size] *= factor
    return out


def response_rows(cfg: Config, levels: Levels, policy: MLPPolicy, w: torch.Tensor,
                  masks: list[torch.Tensor], nbeta: float, seed: int) -> list[dict]:
    """One restricted susceptibility run per component at the checkpoint ``w``."""
    load_flat_parameters(policy, w)
    potential = regret_potential(levels, policy, cfg.gamma)
    groups = direction_groups(levels)
    # rows of level weights: each group's mean regret minus the mean over all levels, so that one
    # Bellman solve per draw gives every ΔL_b = R_b − R
    weights = torch.stack([groups[b].double() / groups[b].sum() for b in DIRECTIONS])
    weights = weights - potential.weights[None, :]

    def shifts(w: torch.Tensor) -> torch.Tensor:
        return (potential.level_regrets(w) @ weights.T).to(w.dtype)

    rows = []
    for g, mask in enumerate(masks):
        result = susceptibilities(
            potential, init=potential.init, nbeta=nbeta, localization=cfg.localization,
            step_size=cfg.step_size, num_chains=cfg.num_chains,
            num_burnin_steps=cfg.num_burnin_steps, num_draws=cfg.num_draws, seed=seed + g,
            restrict_to=mask, observables={"regret": potential}, perturbations={"shift": shifts},
            on_divergence="drop", progress=False)
        chi = {b: result.entry("regret", f"shift[{j}]") for j, b in enumerate(DIRECTIONS)}
        rows.append(dict(component=g, llc=float(result.llc.llc_mean), llc_mcse=float(result.llc.mcse),
                         chi={b: chi[b][0] for b in DIRECTIONS},
                         chi_mcse={b: chi[b][1] for b in DIRECTIONS}))
    return rows


def steering(cfg: Config, policy: MLPPolicy, heldout: Levels, rows: list[dict]) -> dict:
    """Predicted differential response per group against the measured change of behaviour."""
    base = behaviour(policy, heldout, cfg.gamma)
    table = []
    for row in rows:
        g = row["component"]
        predicted = row["chi"]["away"] - row["chi"]["corner"]
        predicted_mcse = math.hypot(row["chi_mcse"]["away"], row["chi_mcse"]["corner"])
        ablated = behaviour(scaled_group(policy, g, cfg.num_groups, 0.0), heldout, cfg.gamma)
        amplified = behaviour(scaled_group(policy, g, cfg.num_groups, cfg.amplify), heldout, cfg.gamma)
        table.append(dict(
            component=g, predicted=predicted, predicted_mcse=predicted_mcse,
            ablated_change=ablated["corner_preference"] - base["corner_preference"],
            amplified_change=amplified["corner_preference"] - base["corner_preference"],
            ablated_regret_change=ablated["heldout_regret"] - base["heldout_regret"]))
    pred = np.abs([t["predicted"] for t in table])
    measured = np.abs([t["ablated_change"] for t in table])
    amplified = np.abs([t["amplified_change"] for t in table])
    # groups whose ablation changes the held-out regret at all (dead ReLU groups do not; they tie at
    # zero on both axes and would inflate a correlation over all groups)
    active = np.abs([t["ablated_regret_change"] for t in table]) > 1e-9
    top_predicted, top_measured = int(np.argmax(pred)), int(np.argmax(measured))
    # the coarser prediction: groups whose |χ| is below 1% of the largest are inert
    predicted_inert = [int(g) for g in np.nonzero(pred < 0.01 * pred.max())[0]] if pred.max() > 0 else []
    measured_inert = [int(g) for g in np.nonzero(~active)[0]]
    return dict(baseline=base, table=table, spearman=_spearman(pred, measured),
                predicted_inert=predicted_inert, measured_inert=measured_inert,
                spearman_active=_spearman(pred[active], measured[active]),
                spearman_active_amplified=_spearman(pred[active], amplified[active]),
                num_active=int(active.sum()), top_predicted=top_predicted,
                top_measured=top_measured, top_agrees=top_predicted == top_measured,
                # the rank of the predicted group among the measured effects (0 = largest)
                rank_of_top_predicted=int(np.argsort(-measured).tolist().index(top_predicted)))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@uses_threads
def main(cfg: Config) -> dict:
    start = time.perf_counter()
    checkpoints = sorted(set(int(c) for c in cfg.checkpoints))
    if not checkpoints or checkpoints[0] < 0:
        raise ValueError(f"checkpoints must be nonnegative training steps, got {cfg.checkpoints}")
    g = torch.Generator().manual_seed(cfg.seed)
    maze = dfs_maze(cfg.size, cfg.size, g)
    levels = sample_levels(cfg.num_levels, g, alpha=cfg.alpha, height=cfg.size, width=cfg.size, maze=maze)
    heldout_all = sample_levels(cfg.num_heldout, g, alpha=1.0, height=cfg.size, width=cfg.size, maze=maze)
    heldout = heldout_all[~heldout_all.cheese_in_corner]
    policy = MLPPolicy(cfg.size, cfg.size, hidden=(cfg.hidden,), generator=g, dtype=torch.float64)
    masks = component_masks(policy, cfg.num_groups)
    trained = train_exact(policy, levels, cfg.gamma, steps=checkpoints[-1], lr=cfg.learning_rate,
                          optimizer="adam", record_every=1)
    nbeta = cfg.num_samples / math.log(cfg.num_samples)
    records = []
    for k, step in enumerate(checkpoints):
        w = trained.checkpoints[trained.steps.index(step)]
        rows = response_rows(cfg, levels, policy, w, masks, nbeta, seed=cfg.seed * 1000 + 10 * k)
        load_flat_parameters(policy, w)
        groups = direction_groups(levels)
        with torch.no_grad():
            probs = policy_probabilities(policy, levels)
            group_regret = {b: float(regret(levels, probs, cfg.gamma, weights=m.double()))
                            for b, m in groups.items()}
        records.append(dict(step=step, regret=trained.regrets[trained.steps.index(step)],
                            group_regret=group_regret, **behaviour(policy, heldout, cfg.gamma),
                            components=rows))
        print(f"step {step:5d}  regret {records[-1]['regret']:.4f}  corner pref "
              f"{records[-1]['corner_preference']:+.3f}  " + "  ".join(
                  f"g{r['component']}: χ_away−χ_corner {r['chi']['away'] - r['chi']['corner']:+.2e}"
                  for r in rows[:4]) + ("  …" if len(rows) > 4 else ""), flush=True)
    load_flat_parameters(policy, trained.checkpoints[-1])
    steer = steering(cfg, policy, heldout, records[-1]["components"])
    summary = (f"steering at step {checkpoints[-1]}: Spearman(|χ_away − χ_corner|, |ΔB| under "
               f"ablation) = {steer['spearman']:+.2f} over {cfg.num_groups} groups, "
               f"{steer['spearman_active']:+.2f} over the {steer['num_active']} active ones "
               f"({steer['spearman_active_amplified']:+.2f} for ×{cfg.amplify:g}); the group "
               f"predicted first ranks {steer['rank_of_top_predicted'] + 1} of {cfg.num_groups} "
               f"by measured effect; inert groups predicted {steer['predicted_inert']}, "
               f"measured {steer['measured_inert']}")
    print(summary, flush=True)
    report = dict(config=asdict(cfg), nbeta=nbeta, directions=list(DIRECTIONS),
                  num_heldout_away=len(heldout), training=dict(steps=trained.steps[::10],
                                                               regrets=trained.regrets[::10]),
                  checkpoints=records, steering=steer, summary=summary,
                  seconds=time.perf_counter() - start)
    paths = output_paths(cfg, "gridworld_susceptibilities")
    write_json(paths.json, report)
    _plot(report, paths.figure)
    return report


def _plot(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, steer = report["checkpoints"], report["steering"]
    groups = len(records[0]["components"])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    ax = axes[0]
    ax.plot(np.asarray(report["training"]["steps"]) + 1, report["training"]["regrets"], color="C0",
            label="training regret")
    for r in records:
        ax.axvline(r["step"] + 1, color="0.8", lw=0.8)
    ax.plot([r["step"] + 1 for r in records], [r["heldout_regret"] for r in records], "o", color="C1",
            label="held-out regret (cheese away)")
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("regret")
    ax2 = ax.twinx()
    ax2.plot([r["step"] + 1 for r in records], [r["corner_preference"] for r in records], "s--",
             color="C3", label="corner preference B")
    ax2.set_ylabel("B (held-out)", color="C3")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("behaviour over training", fontsize=9)
    x = [r["step"] + 1 for r in records]
    for j, b in enumerate(("away", "corner")):
        ax = axes[1 + j]
        for g in range(groups):
            y = [r["components"][g]["chi"][b] * report["nbeta"] for r in records]
            e = [2 * r["components"][g]["chi_mcse"][b] * report["nbeta"] for r in records]
            ax.errorbar(x, y, yerr=e, marker="o", ms=3, capsize=2, lw=1, label=f"group {g}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"nβ χ[group, {b}] (±2 MCSE)")
        ax.set_title(f"response of the regret to more '{b}' levels, per component", fontsize=9)
        if j == 0:
            ax.legend(fontsize=6, ncol=2)
    ax = axes[3]
    table = steer["table"]
    pred = np.abs([t["predicted"] for t in table]) * report["nbeta"]
    meas = np.abs([t["ablated_change"] for t in table])
    ax.scatter(pred, meas, color="C2")
    for t, p, m in zip(table, pred, meas):
        ax.annotate(str(t["component"]), (p, m), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("predicted: nβ |χ[g, away] − χ[g, corner]|")
    ax.set_ylabel("measured: |ΔB| when group g is ablated")
    ax.set_title(f"steering check: Spearman {steer['spearman']:+.2f}, top predicted ranks "
                 f"{steer['rank_of_top_predicted'] + 1}/{groups}", fontsize=9)
    fig.suptitle("Gridworld susceptibilities: " + report["summary"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
