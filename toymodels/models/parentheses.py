"""Balanced-parentheses (Dyck-1) classification: data from the exact distributions of
``theory.parentheses``, tokenisation, a small transformer classifying at the last position, and
ensemble training of many seeds as one vmapped computation.

Task (Li et al., arXiv 2507.06445; Wang & Murfet, arXiv 2601.13548): label a string over ``(``
``)`` balanced or not. On the training distribution (balanced strings and strings with an
unequal count) the *Nested* algorithm (running count never negative, ending at 0) and the
*Equal-Count* algorithm (ending at 0) are both perfect; they disagree on the discriminating
strings (equal count, a negative prefix), so the accuracy there says which one a network learned
(:func:`classify_algorithm`).

Data. A distribution is a ``{string: probability}`` mapping of ``theory.parentheses`` (exact
rationals). :class:`StringTable` holds the union of several distributions' supports, tokenised
once, and each distribution (or mixture of them) as a weight vector over the table, so training
on a reweighted mixture changes only a vector. Tokens: ``PAD = 0``, ``( = 1``, ``) = 2``,
``CLS = 3``; a string of length ``n`` is left-padded to ``max_length`` and followed by ``CLS``,
where the classifier reads its logit.

Model. :class:`ParenthesesTransformer`: one-hot tokens → linear embedding + learned positions →
the pre-LayerNorm causal blocks of :mod:`toymodels.models.transformer` → LayerNorm → one logit at
the ``CLS`` position. Trained with the binary cross-entropy. Initialisation draws from a
``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor, nn

from toymodels.models.icl import ModelEnsemble
from toymodels.models.transformer import ICLTransformerConfig, TransformerTrunk

__all__ = [
    "PAD", "OPEN", "CLOSE", "CLS", "VOCABULARY_SIZE",
    "tokenize", "StringTable", "ParenthesesConfig", "ParenthesesTransformer",
    "weighted_bce", "train_ensemble", "classify_algorithm", "TrainingResult",
]

PAD, OPEN, CLOSE, CLS = 0, 1, 2, 3
VOCABULARY_SIZE = 4


def tokenize(strings: Sequence[str], max_length: int) -> Tensor:
    """``(N, max_length + 1)`` long tokens: ``PAD…PAD s_1 … s_n CLS`` for each string."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    rows = []
    for s in strings:
        if not isinstance(s, str) or any(c not in "()" for c in s):
            raise ValueError(f"strings must be over '(' and ')', got {s!r}")
        if len(s) > max_length:
            raise ValueError(f"string {s!r} is longer than max_length = {max_length}; raise it")
        rows.append([PAD] * (max_length - len(s)) + [OPEN if c == "(" else CLOSE for c in s] + [CLS])
    if not rows:
        raise ValueError("tokenize needs at least one string")
    return torch.tensor(rows, dtype=torch.long)


class StringTable:
    """The strings of several distributions, tokenised once, with labels and weight vectors.

    ``distributions``: ``{name: {string: probability}}`` (``theory.parentheses``). ``weights(name)``
    is that distribution as a float64 vector over ``strings``; ``mixture({name: weight})`` a
    mixture of them (weights ≥ 0 summing to 1). ``labels`` are the balanced labels (float).
    """

    def __init__(self, distributions: Mapping[str, Mapping[str, Fraction]], max_length: int) -> None:
        if not isinstance(distributions, Mapping) or not distributions:
            raise ValueError("distributions must be a non-empty {name: {string: probability}} mapping")
        strings = sorted({s for dist in distributions.values() for s in dist}, key=lambda s: (len(s), s))
        self.strings = strings
        self.index = {s: i for i, s in enumerate(strings)}
        self.max_length = max_length
        self.tokens = tokenize(strings, max_length)
        heights = torch.cumsum(torch.where(self.tokens == OPEN, 1, 0) - torch.where(self.tokens == CLOSE, 1, 0), 1)
        final, lowest = heights[:, -1], heights.min(1).values
        self.labels = ((final == 0) & (lowest >= 0)).to(torch.float64)
        self.equal_count = (final == 0).to(torch.float64)
        self._weights: dict[str, Tensor] = {}
        for name, dist in distributions.items():
            w = torch.zeros(len(strings), dtype=torch.float64)
            for s, p in dist.items():
                w[self.index[s]] = float(p)
            if abs(float(w.sum()) - 1.0) > 1e-12 or bool((w < 0).any()):
                raise ValueError(f"distribution {name!r} must have probabilities ≥ 0 summing to 1")
            self._weights[name] = w

    @property
    def names(self) -> list[str]:
        return list(self._weights)

    def weights(self, name: str) -> Tensor:
        if name not in self._weights:
            raise ValueError(f"no distribution {name!r}; the table holds {self.names}")
        return self._weights[name]

    def mixture(self, weights: Mapping[str, float]) -> Tensor:
        """``Σ_name weights[name] · weights(name)`` (the weights ≥ 0 and summing to 1)."""
        values = {k: float(v) for k, v in weights.items()}
        if not values or any(v < -1e-12 for v in values.values()) or abs(sum(values.values()) - 1) > 1e-9:
            raise ValueError(f"mixture weights must be ≥ 0 and sum to 1, got {values}")
        return sum(max(v, 0.0) * self.weights(k) for k, v in values.items())

    def support(self, name: str) -> Tensor:
        """Indices of the strings with positive weight in distribution ``name``."""
        return self.weights(name).nonzero().flatten()


@dataclass(frozen=True)
class ParenthesesConfig:
    """Sizes of the parentheses classifier."""

    max_length: int = 12
    """Longest string; sequences are max_length + 1 tokens (CLS at the end)."""
    d_model: int = 16
    num_layers: int = 2
    num_heads: int = 2
    d_mlp: int = 32
    position_init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("max_length", "d_model", "num_layers", "num_heads", "d_mlp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ParenthesesConfig.{name} must be a positive integer; got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")

    def block_config(self) -> ICLTransformerConfig:
        """The transformer blocks' sizes in the config type of :mod:`toymodels.models.transformer`."""
        return ICLTransformerConfig(d_model=self.d_model, num_layers=self.num_layers,
                                    num_heads=self.num_heads, d_mlp=self.d_mlp,
                                    position_init_std=self.position_init_std)


class ParenthesesTransformer(TransformerTrunk):
    """``tokens (B, max_length + 1) -> logits (B,)``, read at the last (``CLS``) position.

    The suite's transformer body (:class:`~toymodels.models.transformer.TransformerTrunk`: its
    initialisation, drawn from ``generator``, ``None``: seed 0) on one-hot tokens.
    """

    def __init__(self, config: ParenthesesConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(config.block_config(), VOCABULARY_SIZE, config.max_length + 1, generator)
        self.sizes = config

    def forward(self, tokens: Tensor) -> Tensor:
        max_length = self.sizes.max_length
        if tokens.shape[-1] != max_length + 1:
            raise ValueError(f"tokens must have {max_length + 1} positions (tokenize with "
                             f"max_length={max_length}); got shape {tuple(tokens.shape)}")
        vocab = torch.arange(VOCABULARY_SIZE, device=tokens.device)
        one_hot = (tokens.unsqueeze(-1) == vocab).to(self.embed.weight.dtype)  # (B, T, V), vmappable
        h = self.residual_stream(one_hot)
        return self.unembed(self.ln_final(h[..., -1, :])).squeeze(-1)  # (B,)


def weighted_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """``mean_i r_i · BCE(logit_i, y_i)`` with ``targets[:, 0] = y`` and ``targets[:, 1] = r``.

    With ``r_i = N p_i`` over a table of ``N`` strings of probabilities ``p_i`` this is the exact
    expected cross-entropy ``Σ_i p_i BCE_i`` of the distribution (and an unbiased minibatch
    estimate of it), so a network with these targets is a ``ModuleObjective`` whose loss is the
    population loss of the distribution.
    """
    if targets.ndim != 2 or targets.shape[-1] != 2 or targets.shape[0] != logits.shape[-1]:
        raise ValueError(f"targets must be (N, 2) = (label, weight) for {logits.shape[-1]} logits, "
                         f"got {tuple(targets.shape)}")
    per = nn.functional.binary_cross_entropy_with_logits(logits, targets[:, 0], reduction="none")
    return (targets[:, 1] * per).mean()


def classify_algorithm(train_accuracy: float, discriminating_accuracy: float, *,
                       threshold: float = 0.9) -> str:
    """``"nested"`` if the model fits the training distribution (accuracy ≥ ``threshold``) and
    labels ≥ ``threshold`` of the discriminating strings unbalanced, ``"equal_count"`` if it labels
    ≥ ``threshold`` of them balanced, ``"other"`` otherwise."""
    if train_accuracy >= threshold and discriminating_accuracy >= threshold:
        return "nested"
    if train_accuracy >= threshold and discriminating_accuracy <= 1 - threshold:
        return "equal_count"
    return "other"


@dataclass
class TrainingResult:
    """Per-member numbers after training: exact accuracies (weighted by each distribution's
    probabilities), the loss history and checkpoints (stacked parameters by step)."""

    ensemble: ModelEnsemble
    losses: Tensor  # (steps, members)
    checkpoints: dict[int, dict[str, Tensor]]


def train_ensemble(
    ensemble: ModelEnsemble,
    table: StringTable,
    weights: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    checkpoint_steps: Sequence[int] = (),
    weight_decay: float = 0.0,
) -> TrainingResult:
    """Adam on the binary cross-entropy; member ``e`` draws its minibatches from ``weights[e]``.

    ``weights`` is ``(members, N)`` or ``(N,)`` (shared): the probability of each string of the
    table. Each step draws ``batch_size`` strings per member with replacement (``torch.multinomial``
    from ``generator``). One Adam on the stacked parameters, stepped on the sum of the members'
    losses, is exactly independent Adam runs (see :class:`~toymodels.models.icl.ModelEnsemble`).
    ``checkpoint_steps`` lists steps (0 = before training) whose parameters are kept.
    """
    members = ensemble.num_members
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.ndim == 1:
        weights = weights.expand(members, -1)
    if weights.shape != (members, len(table.strings)):
        raise ValueError(f"weights must be (N,) or ({members}, N) with N = {len(table.strings)}, "
                         f"got {tuple(weights.shape)}")
    if bool((weights < 0).any()) or bool(((weights.sum(1) - 1).abs() > 1e-9).any()):
        raise ValueError("each member's weights must be ≥ 0 and sum to 1")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    optimizer = torch.optim.AdamW(list(ensemble.params.values()), lr=lr, weight_decay=weight_decay)
    labels = table.labels.to(torch.float32)
    checkpoints = {0: ensemble.snapshot()} if 0 in checkpoint_steps else {}
    losses = torch.zeros(steps, members)
    for step in range(1, steps + 1):
        index = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        logits = ensemble(table.tokens[index])  # (E, B)
        per = nn.functional.binary_cross_entropy_with_logits(logits, labels[index], reduction="none")
        loss = per.mean(1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        losses[step - 1] = loss.detach()
        if step in checkpoint_steps:
            checkpoints[step] = ensemble.snapshot()
    return TrainingResult(ensemble=ensemble, losses=losses, checkpoints=checkpoints)


@torch.no_grad()
def ensemble_probabilities(ensemble: ModelEnsemble, tokens: Tensor, chunk: int = 4096) -> Tensor:
    """``sigmoid(logits)`` of every member on ``tokens (N, T)``: ``(members, N)``."""
    out = []
    for start in range(0, tokens.shape[0], chunk):
        part = tokens[start:start + chunk]
        out.append(torch.sigmoid(ensemble(part.expand(ensemble.num_members, -1, -1))))
    return torch.cat(out, dim=1)


def accuracies(probabilities: Tensor, table: StringTable, name: str) -> Tensor:
    """Exact accuracy of each member on distribution ``name``: ``Σ_s p(s) 1{(prob > ½) = label}``."""
    w = table.weights(name)
    correct = (probabilities > 0.5).to(torch.float64) == table.labels
    return (correct.to(torch.float64) * w).sum(-1).clamp(0.0, 1.0)  # float64: no 1 + 1e-7


__all__ += ["ensemble_probabilities", "accuracies"]
