"""Wang & Murfet (arXiv 2601.13548): patterning on balanced parentheses — reweight the training mixture along dh = J⁺dμ to choose whether a transformer learns the Nested or the Equal-Count algorithm.

Task (``theory.parentheses``, Li et al. arXiv 2507.06445): strings over ``(`` ``)`` of even length
up to ``max_length`` (length uniform over the even lengths, then uniform within the class); the base
training distribution is half balanced strings, half strings with an unequal count, where the
Nested rule (running count never negative, ending at 0) and the Equal-Count rule (ending at 0)
both score 100 %. Which one a network learned shows on the discriminating strings (equal count, a
negative prefix): Nested labels them unbalanced, Equal-Count balanced.

Steps.
1. Train ``num_seeds`` small transformers (``toymodels.models.parentheses``, one vmapped ensemble)
   on the base distribution; each seed's algorithm from its exact accuracies; its λ̂ at the end.
2. At an early checkpoint of every seed, one SGLD run (``toymodels.susceptibilities``, minibatch,
   the base training loss) records the observables and the probe sources, giving
   ``J = nβ χ`` with ``χ = −Cov(φ, ΔL_j)``, ``ΔL_j = L_{q_j} − L_q``. Observables:
   ``nested_agreement`` (mean probability of the Nested label on a fixed sample of discriminating
   strings: 1 for Nested, 0 for Equal-Count) and ``train_loss`` (the λ̂-related one:
   ``λ̂ = nβ (E L − L(w*))``, so ``nβ ∂E[L]`` is the first-order change of λ̂ at fixed ``w*``).
   Probes, each a source both algorithms label perfectly (so the patterned mixture still has two
   perfect solutions): ``deep`` (deeply nested balanced strings), ``open_heavy`` (more ``(``
   than ``)`` and no negative prefix: only the count can reject them), ``near_count_dip`` (a
   count off by 2 and a negative prefix: a dip detector rejects them, the count only by a small
   margin). The seeds' Jacobians are averaged (MCSE combined).
3. ``toymodels.minimum_norm_intervention`` gives the probe weights that move
   ``nested_agreement`` towards the algorithm the base seeds did *not* learn (target
   ``target_change``, the closest mixture in the simplex when it cannot be met).
4. Retrain the same seeds from the same initialisations on the patterned mixture; report the
   fraction of seeds per algorithm in both arms, λ̂ ± MCSE, the predicted first-order change
   ``J dh`` of the nested agreement and the measured change of the seeds' mean nested agreement at
   the end of training (a different quantity: SGD's end point, not the posterior at the
   checkpoint; its sign is what the prediction is for).

Run: ``python -m experiments.parentheses_patterning [--quick]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.common import ExperimentConfig, output_paths, run, uses_threads, write_json
from theory import parentheses as theory
from toymodels import estimate_llc, minimum_norm_intervention, susceptibilities
from toymodels.models.icl import ModelEnsemble
from toymodels.models.parentheses import (
    ParenthesesConfig,
    ParenthesesTransformer,
    StringTable,
    accuracies,
    classify_algorithm,
    ensemble_probabilities,
    train_ensemble,
    weighted_bce,
)


@dataclass
class Config(ExperimentConfig):
    """Settings of the parentheses patterning experiment (module docstring)."""

    seed: int = 0
    """seed of the minibatch and SGLD streams; the models' initial seeds are seed .. seed + num_seeds − 1."""
    num_seeds: int = 5
    max_length: int = 10
    """longest string; lengths are the even numbers 2 .. max_length, uniform."""
    d_model: int = 16
    num_layers: int = 2
    num_heads: int = 2
    d_mlp: int = 32
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    checkpoint_step: int = 200
    """the early checkpoint where the susceptibilities are estimated."""
    probes: tuple[str, ...] = ("deep", "open_heavy", "near_count_dip")
    """classes of theory.parentheses mixed into the base distribution."""
    observable_sample: int = 256
    """strings drawn once from each distribution to evaluate observables and ΔL at each draw."""
    target_change: float = 0.5
    """|dμ| asked of the nested agreement (towards the other algorithm)."""
    nbeta: float = 100.0
    localization: float = 100.0
    step_size: float = 1e-4
    num_chains: int = 4
    num_burnin_steps: int = 100
    num_draws: int = 100
    num_steps_bw_draws: int = 2
    sgld_batch_size: int = 256
    llc_draws: int = 100
    """draws per chain of the final λ̂ runs."""

    QUICK = dict(num_seeds=2, max_length=6, steps=60, checkpoint_step=20, num_burnin_steps=10,
                 num_draws=12, llc_draws=12, num_chains=2, observable_sample=32,
                 sgld_batch_size=32)


OBSERVABLES = ("nested_agreement", "train_loss")


def _distributions(cfg: Config) -> dict:
    lengths = list(range(2, cfg.max_length + 1, 2))
    dists = {"train": theory.train_distribution(lengths),
             "discriminating": theory.discriminating_distribution(lengths)}
    for name in cfg.probes:
        usable = [n for n in lengths if theory.count_strings(n, name) > 0]
        if not usable:
            raise ValueError(f"probe {name!r} has no string of length ≤ {cfg.max_length}")
        dists[name] = theory.class_distribution(usable, name)
    return dists


def _fixed_sample(table: StringTable, name: str, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(table.weights(name), size, replacement=True, generator=generator)


def _make_functions(model, table: StringTable, samples: dict[str, torch.Tensor]):
    """The observables and the probe losses as functions of the model's flat parameter vector.

    One forward pass over all fixed samples per call; ``L_q`` is the base training loss on its
    sample, ``ΔL_j = L_{q_j} − L_q`` (mixture shift towards probe j).
    """
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    order = list(samples)
    index = torch.cat([samples[k] for k in order])
    splits = [len(samples[k]) for k in order]
    tokens, labels = table.tokens[index], table.labels[index].float()

    def per_string(w):
        params = {n: t.reshape(s) for n, t, s in zip(names, torch.split(w, sizes), shapes)}
        logits = functional_call(model, params, (tokens,))
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return dict(zip(order, torch.split(logits, splits))), dict(zip(order, torch.split(bce, splits)))

    def observables(w):
        logits, bce = per_string(w)
        nested = torch.sigmoid(-logits["discriminating"]).mean()  # P(label 0) = Nested's answer
        return torch.stack([nested, bce["train"].mean()])

    def perturbations(w):
        _, bce = per_string(w)
        base = bce["train"].mean()
        return torch.stack([bce[k].mean() - base for k in order if k not in ("train", "discriminating")])

    return observables, perturbations


def _posterior_data(table: StringTable, weights: torch.Tensor):
    """Tokens and (label, N·p) targets of the strings with positive weight: ``weighted_bce`` of them
    is the exact expected cross-entropy of the distribution."""
    idx = weights.nonzero().flatten()
    targets = torch.stack([table.labels[idx], weights[idx] * len(idx)], 1).float()
    return table.tokens[idx], targets


def _sgld(cfg: Config, num_draws: int, seed: int) -> dict:
    return dict(nbeta=cfg.nbeta, localization=cfg.localization, step_size=cfg.step_size,
                num_chains=cfg.num_chains, num_burnin_steps=cfg.num_burnin_steps,
                num_draws=num_draws, num_steps_bw_draws=cfg.num_steps_bw_draws,
                batch_size=cfg.sgld_batch_size, seed=seed, progress=False)


def _evaluate(ensemble, table, arm_seeds, data, cfg, seed_offset):
    probs = ensemble_probabilities(ensemble, table.tokens)
    train_acc = accuracies(probs, table, "train")
    disc_acc = accuracies(probs, table, "discriminating")
    disc_w = table.weights("discriminating").float()
    agreement = ((1 - probs) * disc_w).sum(1)  # exact mean nested agreement
    rows = []
    for e, s in enumerate(arm_seeds):
        model = ensemble.member(e)
        llc = estimate_llc(model, data=data, loss_fn=weighted_bce,
                           **_sgld(cfg, cfg.llc_draws, cfg.seed + seed_offset + e))
        rows.append(dict(seed=int(s), algorithm=classify_algorithm(float(train_acc[e]), float(disc_acc[e])),
                         train_accuracy=float(train_acc[e]), discriminating_accuracy=float(disc_acc[e]),
                         nested_agreement=float(agreement[e]), llc=float(llc.llc_mean),
                         llc_mcse=float(llc.mcse)))
    return rows


@uses_threads
def main(cfg: Config) -> dict:
    start = time.perf_counter()
    dists = _distributions(cfg)
    table = StringTable(dists, cfg.max_length)
    probe_names = list(cfg.probes)
    model_cfg = ParenthesesConfig(max_length=cfg.max_length, d_model=cfg.d_model,
                                  num_layers=cfg.num_layers, num_heads=cfg.num_heads, d_mlp=cfg.d_mlp)
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    generator = torch.Generator().manual_seed(cfg.seed)
    train_data = _posterior_data(table, table.weights("train"))

    def make(g):
        return ParenthesesTransformer(model_cfg, g)

    # 1. the base arm
    base = ModelEnsemble(make, seeds)
    base_run = train_ensemble(base, table, table.weights("train"), steps=cfg.steps,
                              batch_size=cfg.batch_size, lr=cfg.lr, generator=generator,
                              checkpoint_steps=(cfg.checkpoint_step,))
    base_rows = _evaluate(base, table, seeds, train_data, cfg, 1000)
    seconds_base = time.perf_counter() - start

    # 2. susceptibilities at the early checkpoint of every seed
    sample_gen = torch.Generator().manual_seed(cfg.seed + 7)
    samples = {name: _fixed_sample(table, name, cfg.observable_sample, sample_gen)
               for name in ["train", "discriminating", *probe_names]}
    jacobians, mcses, checkpoint_agreement = [], [], []
    snapshot = base_run.checkpoints[cfg.checkpoint_step]
    for e, s in enumerate(seeds):
        model = base.member(e, snapshot)
        observables, perturbations = _make_functions(model, table, samples)
        result = susceptibilities(model, data=train_data, loss_fn=weighted_bce,
                                  observables={"phi": observables}, perturbations={"dL": perturbations},
                                  keep_draws=False, **_sgld(cfg, cfg.num_draws, cfg.seed + 100 + e))
        jacobians.append(result.jacobian)
        mcses.append(result.jacobian_mcse)
        with torch.no_grad():
            checkpoint_agreement.append(float(observables(torch.cat(
                [p.detach().reshape(-1) for p in model.parameters()]))[0]))
    J = np.mean(jacobians, axis=0)
    J_mcse = np.sqrt(np.sum(np.square(mcses), axis=0)) / len(seeds)
    seconds_chi = time.perf_counter() - start - seconds_base

    # 3. the patterned mixture: move the nested agreement towards the other algorithm
    counts = {a: sum(r["algorithm"] == a for r in base_rows) for a in ("nested", "equal_count", "other")}
    toward = "equal_count" if counts["nested"] >= counts["equal_count"] else "nested"
    sign = -1.0 if toward == "equal_count" else 1.0
    row = OBSERVABLES.index("nested_agreement")
    step = minimum_norm_intervention(J[row:row + 1], [sign * cfg.target_change], strict=False)
    h = step.weights
    mixture = {"train": max(0.0, 1.0 - float(h.sum()))}
    mixture.update({name: float(w) for name, w in zip(probe_names, h)})
    patterned_weights = table.mixture(mixture)
    predicted_all = J @ step.dh
    predicted_mcse = np.sqrt(np.square(J_mcse) @ np.square(step.dh))

    # 4. the patterned arm: the same seeds and initialisations
    t0 = time.perf_counter()
    patterned = ModelEnsemble(make, seeds)
    train_ensemble(patterned, table, patterned_weights, steps=cfg.steps, batch_size=cfg.batch_size,
                   lr=cfg.lr, generator=torch.Generator().manual_seed(cfg.seed + 1))
    patterned_rows = _evaluate(patterned, table, seeds, train_data, cfg, 2000)
    seconds_patterned = time.perf_counter() - t0

    def fraction(rows, a):
        return sum(r["algorithm"] == a for r in rows) / len(rows)

    measured = float(np.mean([r["nested_agreement"] for r in patterned_rows])
                     - np.mean([r["nested_agreement"] for r in base_rows]))
    switched = sum(b["algorithm"] != p["algorithm"] and p["algorithm"] == toward
                   for b, p in zip(base_rows, patterned_rows))
    out = {
        "base": [{k: r[k] for k in ("seed", "algorithm", "train_accuracy", "discriminating_accuracy",
                                    "llc", "llc_mcse")} for r in base_rows],
        "patterned": [{k: r[k] for k in ("seed", "algorithm", "train_accuracy",
                                         "discriminating_accuracy", "llc", "llc_mcse")}
                      for r in patterned_rows],
        "predicted_change": float(predicted_all[row]),
        "measured_change": measured,
        "predicted_change_mcse": float(predicted_mcse[row]),
        "predicted_sign_matches": bool(np.sign(predicted_all[row]) == np.sign(measured)),
        "toward": toward,
        "seeds_switched_toward_target": int(switched),
        "fraction": {arm: {a: fraction(rows, a) for a in ("nested", "equal_count", "other")}
                     for arm, rows in (("base", base_rows), ("patterned", patterned_rows))},
        "nested_agreement": {"base": [r["nested_agreement"] for r in base_rows],
                             "patterned": [r["nested_agreement"] for r in patterned_rows],
                             "checkpoint": checkpoint_agreement},
        "observables": list(OBSERVABLES),
        "probes": probe_names,
        "jacobian": J.tolist(),
        "jacobian_mcse": J_mcse.tolist(),
        "jacobian_per_seed": [j.tolist() for j in jacobians],
        "predicted_change_all_observables": predicted_all.tolist(),
        "intervention": step.to_dict(),
        "mixture": mixture,
        "seconds": {"base_arm": seconds_base, "susceptibilities": seconds_chi,
                    "patterned_arm": seconds_patterned, "total": time.perf_counter() - start},
        "config": asdict(cfg),
    }
    _print(out)
    paths = output_paths(cfg, "parentheses_patterning")
    write_json(paths.json, out)
    _figure(out, paths.figure)
    return out


def _print(out: dict) -> None:
    print(f"{'arm':<10}{'seed':>5} {'algorithm':<12}{'train acc':>10}{'disc acc':>10}{'λ̂ ± MCSE':>18}")
    for arm in ("base", "patterned"):
        for r in out[arm]:
            print(f"{arm:<10}{r['seed']:>5} {r['algorithm']:<12}{r['train_accuracy']:>10.4f}"
                  f"{r['discriminating_accuracy']:>10.4f}{r['llc']:>11.2f} ± {r['llc_mcse']:<5.2f}")
    J, E = np.asarray(out["jacobian"]), np.asarray(out["jacobian_mcse"])
    print("J = nβχ at the checkpoint (rows " + ", ".join(out["observables"]) + "):")
    for name, j, e in zip(out["observables"], J, E):
        print(f"  {name:<18}" + "  ".join(f"{p}: {a:+.4f} ± {b:.4f}" for p, a, b in zip(out["probes"], j, e)))
    print(f"patterned mixture {out['mixture']} (towards {out['toward']})")
    print(f"nested agreement: predicted first-order change {out['predicted_change']:+.3f} ± "
          f"{out['predicted_change_mcse']:.3f}, measured {out['measured_change']:+.3f}; fractions "
          f"{out['fraction']}; {out['seconds']['total']:.0f} s")


def _figure(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for k, arm in enumerate(("base", "patterned")):
        acc = [r["discriminating_accuracy"] for r in out[arm]]
        ax.scatter(np.full(len(acc), k) + np.linspace(-0.1, 0.1, len(acc)), acc, s=40, label=arm)
    ax.axhline(0.5, color="0.7", lw=1)
    ax.set_xticks([0, 1], ["base", "patterned"])
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("accuracy on discriminating strings\n(1 = Nested, 0 = Equal-Count)")
    ax.set_title(f"which algorithm: fractions {out['fraction']['base']['nested']:.1f} → "
                 f"{out['fraction']['patterned']['nested']:.1f} nested", fontsize=9)

    ax = axes[1]
    J, E = np.asarray(out["jacobian"]), np.asarray(out["jacobian_mcse"])
    x = np.arange(len(out["probes"]))
    for a, name in enumerate(out["observables"]):
        ax.bar(x + 0.35 * (a - 0.5), J[a], 0.35, yerr=E[a], label=name, capsize=3)
    ax.set_xticks(x, out["probes"])
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=8)
    ax.set_title("J = nβχ at the early checkpoint (± MCSE)", fontsize=9)

    ax = axes[2]
    names = list(out["mixture"])
    ax.bar(names, [out["mixture"][n] for n in names])
    ax.set_ylim(0, 1)
    ax.set_title(f"patterned mixture; Δ nested agreement predicted {out['predicted_change']:+.2f}, "
                 f"measured {out['measured_change']:+.2f}", fontsize=9)
    for lab in ax.get_xticklabels():
        lab.set_rotation(20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config)
