"""Chen et al. 2023 (arXiv:2310.06301), the SGD trajectories of the TMS (c = 6): plateaus at the exact k-gon losses, and the LLC rising at each drop.

Many SGD runs (n = 1000 samples each, batch 20, lr 0.005, from a 4-gon plus N(0, 0.01²) noise)
are trained as one tensor (toymodels.models.tms.sgd_trajectories). The population loss along each run is
the exact closed form (toymodels.models.tms.population_loss), drawn against the exact k^{σ+}-gon levels
of theory.tms.known_plateau_losses. Each recorded point is classified by its k-gon type; a run of
one class for at least `min_plateau_epochs` is a plateau, whose median loss is compared with the
exact level of that class. Along a few runs λ̂ is estimated every `llc_every` epochs with the
paper's full-batch SGLD (ε = 1e-3, γ = 1, 500 steps, nβ = n/log n on the run's own training set),
all checkpoints of all selected runs in one vectorised sampler (toymodels.models.tms.llc_at_points), in
float32 (rounding L ≈ 0.07 to float32 moves nβ(L − L*) by ~1e-6 at nβ ≈ 145).

The starting 4-gon: columns 0..3 at the unit square (l = 1, b = 0), the two extra columns at
W = 0, b = 0, then noise on every parameter; the noise's sign decides whether an extra column's
bias starts positive (it then grows to 1/(2c): the 4⁺ and 4⁺⁺ plateaus) or negative (flat: it
stays dead).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory.tms import flatten_params, kgon_critical_point, known_plateau_losses
from toymodels import llc_at_points
from toymodels.models.tms import (
    empirical_loss,
    empirical_loss_gradient,
    kgon_labels,
    population_loss,
    sample_inputs,
    sgd_trajectories,
)


@dataclass
class Config(ExperimentConfig):
    """SGD plateaus of the TMS from a 4-gon."""

    seed: int = 0
    """seed of data, noise, shuffling and SGLD"""

    c: int = 6
    """number of features"""
    num_trajectories: int = 48
    """independent SGD runs, trained as one tensor (each with its own data set)"""
    num_samples: int = 1000
    """training-set size n of each run"""
    batch_size: int = 20
    """minibatch size"""
    lr: float = 0.005
    """SGD learning rate"""
    num_epochs: int = 3000
    """epochs (the paper ran 4500; most drops happen before epoch 2000)"""
    init_noise: float = 0.01
    """standard deviation of the Gaussian noise added to the starting 4-gon"""
    record_every: int = 10
    """epochs between recorded parameters"""
    min_plateau_epochs: int = 200
    """a class held this long is a plateau"""
    llc_trajectories: int = 4
    """runs along which λ̂ is estimated (the earliest to reach the 5-gon family)"""
    llc_every: int = 150
    """epochs between λ̂ checkpoints"""
    llc_num_chains: int = 4
    """SGLD chains per checkpoint"""
    llc_step_size: float = 1e-3
    """SGLD ε (paper)"""
    llc_localization: float = 1.0
    """SGLD γ (paper)"""
    llc_num_steps: int = 500
    """SGLD steps per chain (paper; all recorded)"""

    QUICK = dict(num_trajectories=6, num_samples=200, num_epochs=40, llc_num_chains=2,
                 min_plateau_epochs=20, llc_every=20, llc_trajectories=2, llc_num_steps=50)


def plateaus(labels: np.ndarray, losses: np.ndarray, min_len: int, skip: int) -> list[tuple[str, int, int, float]]:
    """Runs of one class of length ≥ ``min_len`` records: ``(label, start, end, median loss)``.

    The first and last ``skip`` records of each run are left out of its median (the loss is
    still settling right after a drop, and already leaving before the next one).
    """
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if i - start >= min_len:
                seg = losses[start + skip: i - skip]
                out.append((str(labels[start]), start, i, float(np.median(seg))))
            start = i
    return out


def plot(res: dict, losses: np.ndarray, epochs: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in range(losses.shape[1]):
        ax.plot(epochs, losses[:, r], lw=0.6, alpha=0.6)
    for name, level in res["levels"].items():
        if 0.045 < level < 0.115:
            ax.axhline(level, color="k", ls="--", lw=0.6)
            ax.text(epochs[-1] * 1.01, level, f" {name}", va="center", fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_ylabel("exact population loss")
    ax.set_ylim(0.045, 0.115)
    ax.set_title(f"{losses.shape[1]} SGD runs; dashed: exact k-gon levels")
    for j, tr in enumerate(res["llc"]["trajectories"]):
        llc = np.array(res["llc"]["llc_mean"][j])
        ep = np.array(res["llc"]["epochs"])
        ax2.errorbar(ep, llc, yerr=2 * np.array(res["llc"]["mcse"][j]), fmt="o-", ms=3,
                     color=f"C{j}", label=f"run {tr}: λ̂ (±2 MCSE)", capsize=1, lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("λ̂ (paper's SGLD settings)")
    twin = ax2.twinx()
    for j, tr in enumerate(res["llc"]["trajectories"]):
        twin.plot(epochs, losses[:, tr], color=f"C{j}", lw=0.8, ls=":")
    twin.set_ylabel("population loss (dotted)")
    ax2.legend(fontsize=7, loc="center right")
    ax2.set_title("λ̂ rises at each drop of the loss")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@uses_threads
def main(cfg: Config) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    gen = torch.Generator().manual_seed(cfg.seed)
    R, c = cfg.num_trajectories, cfg.c
    data = sample_inputs(c, cfg.num_samples, shape=(R,), generator=gen)
    W, b = kgon_critical_point(4, c, 0)
    b[4:] = 0.0  # the extra columns start at W = 0, b = 0 (see the module docstring)
    w4 = torch.tensor(flatten_params(W, b))
    init = w4 + cfg.init_noise * torch.randn(R, 3 * c, generator=gen, dtype=torch.float64)
    records = sgd_trajectories(init, data, lr=cfg.lr, batch_size=cfg.batch_size,
                               num_epochs=cfg.num_epochs, record_every=cfg.record_every,
                               generator=gen)  # (T, R, 3c)
    sgd_seconds = time.perf_counter() - start
    epochs = np.arange(records.shape[0]) * cfg.record_every
    losses = population_loss(records).numpy()  # (T, R), exact closed form
    labels = kgon_labels(records)  # (T, R)
    levels = {k: float(v) for k, v in known_plateau_losses(c).items()}

    # plateaus: their medians against the exact levels
    min_len = max(2, cfg.min_plateau_epochs // cfg.record_every)
    skip = max(1, min_len // 4)
    segs = []
    for r in range(R):
        for lab, s0, s1, level in plateaus(labels[:, r], losses[:, r], min_len, skip):
            exact = levels.get(lab, math.nan)
            segs.append(dict(trajectory=r, label=lab, start_epoch=int(epochs[s0]),
                             end_epoch=int(epochs[s1 - 1]), median_loss=level, exact=exact,
                             deviation=level - exact))
    by_label: dict[str, list[float]] = {}
    for s in segs:
        by_label.setdefault(s["label"], []).append(s["deviation"])
    final = Counter(labels[-1].tolist())
    final_dev = {lab: float(np.max(np.abs(losses[-1][labels[-1] == lab] - levels.get(lab, math.nan))))
                 for lab in final}

    # λ̂ along the runs that reach the 5-gon family first (else the lowest final losses)
    first5 = [int(np.argmax([lab.startswith("5") or lab.startswith("6") for lab in labels[:, r]]))
              if any(lab.startswith(("5", "6")) for lab in labels[:, r]) else 10**9 for r in range(R)]
    order = sorted(range(R), key=lambda r: (first5[r], losses[-1, r]))
    chosen = order[: cfg.llc_trajectories]
    step = max(1, cfg.llc_every // cfg.record_every)
    ck = np.arange(0, records.shape[0], step)
    # float32 here: its rounding moves nβ(L − L*) by ~nβ·L·6e-8 ≈ 1e-6, and it saves a third
    centers = records[ck][:, chosen].float()  # (K, S, d)
    K, S = centers.shape[:2]
    x = data[chosen].float()  # (S, n, c)
    xs = x.unsqueeze(0).expand(K, S, -1, -1).reshape(K * S, 1, cfg.num_samples, c)

    def loss_fn(w):  # (K·S, chains, d) -> (K·S, chains): each checkpoint on its run's data
        return empirical_loss(w, xs)

    def loss_and_grad_fn(w):
        return empirical_loss_gradient(w, xs)

    nbeta = cfg.num_samples / math.log(cfg.num_samples)
    llc = llc_at_points(loss_fn, centers.reshape(K * S, -1), nbeta=nbeta,
                        step_size=cfg.llc_step_size, localization=cfg.llc_localization,
                        num_chains=cfg.llc_num_chains, num_draws=cfg.llc_num_steps,
                        seed=cfg.seed, loss_and_grad_fn=loss_and_grad_fn)
    llc_mean = llc.llc_mean.reshape(K, S).T
    llc_mcse = llc.mcse.reshape(K, S).T
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    print(f"{R} runs × {cfg.num_epochs} epochs: SGD {sgd_seconds:.0f} s; total {seconds:.0f} s wall, "
          f"{cpu_seconds:.0f} s CPU")
    print(f"{'plateau':8s} {'exact level':>12s} {'segments':>9s} {'max |median − exact|':>21s} {'runs ending here':>17s}")
    for lab in sorted(set(by_label) | set(final), key=lambda s: -levels.get(s, 0)):
        devs = by_label.get(lab, [])
        md = f"{max(abs(d) for d in devs):.2e}" if devs else "-"
        print(f"{lab:8s} {levels.get(lab, math.nan):12.6f} {len(devs):9d} {md:>21s} {final.get(lab, 0):17d}")
    worst = max((abs(s["deviation"]) for s in segs if math.isfinite(s["deviation"])), default=math.nan)
    print(f"worst plateau deviation from its exact level: {worst:.2e}")
    for j, r in enumerate(chosen):
        seq = " ".join(f"{v:.1f}" for v in llc_mean[j][:: max(1, len(ck) // 10)])
        print(f"λ̂ along run {r} (final {labels[-1, r]}): {seq}")

    res = dict(
        config=asdict(cfg), levels=levels, final_counts=dict(final),
        final_max_deviation=final_dev, plateau_segments=segs, worst_plateau_deviation=worst,
        epochs=epochs.tolist(), population_loss=losses.T.tolist(),
        llc=dict(trajectories=chosen, epochs=epochs[ck].tolist(), llc_mean=llc_mean.tolist(),
                 mcse=llc_mcse.tolist(), labels=[labels[ck, r].tolist() for r in chosen],
                 nbeta=nbeta, escaped=llc.escaped.reshape(K, S, -1).sum(-1).T.tolist(),
                 seconds=llc.seconds),
        sgd_seconds=sgd_seconds, seconds=seconds, cpu_seconds=cpu_seconds,
    )
    paths = output_paths(cfg, "tms_sgd_plateaus")
    write_json(paths.json, res)
    plot(res, losses, epochs, paths.figure)
    return res


if __name__ == "__main__":
    run(main, Config)
