"""Elhage et al. 2022, "Toy models of superposition", the introduction's figure: 5 features in 2 hidden dimensions, from dense (two orthogonal features) to sparse (a pentagon) as the feature probability falls from 1 to 0.05.

Every (feature probability, seed) pair is one instance of toymodels.models.tms.ElhageTMS, all trained at
once as one tensor with AdamW (lr 1e-3, batch 1024, 10k steps; importance 0.9^i). A single seed
often stalls (e.g. at a square, one feature short), so several seeds run per probability and the
lowest-loss one is reported beside the spread over seeds. Reported per instance: the learned
columns W_i ∈ R², their norms, the number of represented features (norm > 0.5) and the
dimensions per feature D_i = ||W_i||² / Σ_j (Ŵ_i·W_j)² (1: own dimension; 1/2: an antipodal
pair; 2/5: a pentagon).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from toymodels.models.tms import ElhageTMS, dimensions_per_feature, train_elhage


@dataclass
class Config(ExperimentConfig):
    """Elhage et al.'s TMS at falling feature probability."""

    seed: int = 0
    """seed of initialisation and data"""

    num_features: int = 5
    """features n"""
    num_hidden: int = 2
    """hidden dimensions m"""
    importance_decay: float = 0.9
    """importance of feature i is decay^i"""
    p_max: float = 1.0
    """largest feature probability (dense)"""
    p_min: float = 0.05
    """smallest feature probability (sparse)"""
    num_probabilities: int = 7
    """feature probabilities, geometric from p_max to p_min"""
    num_seeds: int = 4
    """instances per feature probability"""
    steps: int = 10_000
    """AdamW steps"""
    batch_size: int = 1024
    """batch size"""
    lr: float = 1e-3
    """AdamW learning rate"""
    weight_decay: float = 0.01
    """AdamW weight decay (torch's default)"""
    represented_norm: float = 0.5
    """a feature with ||W_i|| above this is represented"""

    QUICK = dict(steps=200, batch_size=256, num_probabilities=3, num_seeds=2)


def plot(res: dict, W: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = res["probabilities"]
    best = res["best_instance"]
    n = W.shape[-1]
    fig, axes = plt.subplots(2, len(probs), figsize=(2.1 * len(probs), 4.6))
    colors = plt.cm.viridis(np.linspace(0, 0.9, n))
    for j, p in enumerate(probs):
        ax = axes[0, j]
        Wi = W[best[j]]
        for f in range(n):
            ax.plot([0, Wi[0, f]], [0, Wi[1, f]], color=colors[f], lw=1.5)
            ax.plot(Wi[0, f], Wi[1, f], "o", color=colors[f], ms=4)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"p = {p:.3g}", fontsize=9)
        ax2 = axes[1, j]
        ax2.bar(range(n), res["norms"][best[j]], color=colors)
        ax2.plot(range(n), res["dimensions_per_feature"][best[j]], "k_", ms=12, mew=2)
        ax2.set_ylim(0, 1.6)
        ax2.set_xticks(range(n))
        if j == 0:
            ax2.set_ylabel("‖W_i‖ (bars), D_i (black)")
    axes[0, 0].set_ylabel("columns W_i (lowest-loss seed)")
    fig.suptitle("5 features in 2 dimensions: dense → sparse (importance 0.9^i, darker = more important)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@uses_threads
def main(cfg: Config) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    gen = torch.Generator().manual_seed(cfg.seed)
    probs = np.geomspace(cfg.p_max, cfg.p_min, cfg.num_probabilities)
    per_instance = np.repeat(probs, cfg.num_seeds)  # instance = (probability, seed)
    importance = cfg.importance_decay ** torch.arange(cfg.num_features, dtype=torch.float32)
    model = ElhageTMS(cfg.num_features, cfg.num_hidden, torch.tensor(per_instance), importance,
                      generator=gen)
    history = train_elhage(model, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           weight_decay=cfg.weight_decay, generator=gen)
    with torch.no_grad():
        x = model.generate_batch(20_000, gen)
        final_loss = model.loss_per_instance(x).numpy()
        W = model.W.detach()
        norms = torch.linalg.vector_norm(W, dim=1).numpy()  # (I, n)
        dims = dimensions_per_feature(W).numpy()
        frob_dims = (cfg.num_hidden / (W * W).sum((1, 2))).numpy()  # m / ||W||_F²
    represented = (norms > cfg.represented_norm).sum(-1)
    best = []
    for j in range(len(probs)):
        idx = np.arange(j * cfg.num_seeds, (j + 1) * cfg.num_seeds)
        best.append(int(idx[np.argmin(final_loss[idx])]))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    print(f"{'p':>6s} {'represented (seeds)':>20s} {'best loss':>10s} {'norms of the best seed':>30s} "
          f"{'D_i of the best seed':>30s} {'m/‖W‖²':>7s}")
    for j, p in enumerate(probs):
        idx = range(j * cfg.num_seeds, (j + 1) * cfg.num_seeds)
        b = best[j]
        print(f"{p:6.3f} {str([int(represented[i]) for i in idx]):>20s} {final_loss[b]:10.4f} "
              f"{' '.join(f'{v:.2f}' for v in norms[b]):>30s} "
              f"{' '.join(f'{v:.2f}' for v in dims[b]):>30s} {frob_dims[b]:7.3f}")
    print(f"{len(per_instance)} instances × {cfg.steps} steps in {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    res = dict(
        config=asdict(cfg), probabilities=probs.tolist(), instance_probability=per_instance.tolist(),
        final_loss=final_loss.tolist(), norms=norms.tolist(), dimensions_per_feature=dims.tolist(),
        dimensions_frobenius=frob_dims.tolist(), represented=represented.tolist(),
        best_instance=best, best_represented=[int(represented[b]) for b in best],
        columns=W.numpy().tolist(), bias=model.b.detach().numpy().tolist(),
        loss_history=history, seconds=seconds, cpu_seconds=cpu_seconds,
    )
    paths = output_paths(cfg, "tms_superposition")
    write_json(paths.json, res)
    plot(res, W.numpy(), paths.figure)
    return res


if __name__ == "__main__":
    run(main, Config)
