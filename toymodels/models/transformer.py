"""A small decoder-only transformer for in-context linear regression, in one file.

Architecture as in Hoogland et al. 2024 ("The developmental landscape of in-context learning",
arXiv 2402.02364, section 3 and appendix): a sequence of K pairs ``(x_k, y_k)`` becomes 2K - 1
tokens of width D + 1 interleaving x and y,

    x-token k: (0, x_k)        y-token k: (y_k, 0, …, 0)

(the last y-token is dropped: nothing is predicted from it). A linear embedding plus a learned
position embedding feed pre-LayerNorm blocks (causal multi-head attention, then an MLP), a final
LayerNorm and a linear read-out to one number; the prediction of ``y_k`` is read at x-token k, which
by causality sees ``x_1, y_1, …, x_{k-1}, y_{k-1}, x_k`` and nothing later. The paper's model is
d = 64, 2 layers, 4 heads, MLP width 64 (~50k parameters); the default here is smaller for CPU runs.

Layout follows nanoGPT's ``model.py``: a config dataclass, small modules, shape comments
``(B, T, C)`` = (batch, tokens, channels). Everything is written for one parameter set; many
models are trained at once by ``torch.func.vmap`` over stacked parameters (``toymodels.models.icl``).
Initialisation draws from a ``torch.Generator`` passed in; the global RNG is never touched
(modules are built on the meta device and filled from the generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ICLTransformerConfig", "ICLTransformer", "tokenize_icl"]


@dataclass(frozen=True)
class ICLTransformerConfig:
    """Sizes of the in-context regression transformer."""

    dim: int = 4
    """D, the dimension of the regression inputs x."""
    num_examples: int = 8
    """K, pairs per sequence (the context holds 2K - 1 tokens)."""
    d_model: int = 32
    """Width of the residual stream."""
    num_layers: int = 2
    """Number of transformer blocks."""
    num_heads: int = 4
    """Attention heads per block; must divide d_model."""
    d_mlp: int = 64
    """Hidden width of each block's MLP (Hoogland et al. use d_mlp = d_model = 64)."""
    position_init_std: float = 0.02
    """Standard deviation of the initial position embeddings (GPT-2's 0.02; PyTorch's nn.Embedding
    default of 1 lets the positions drown the tokens and delays in-context learning about 3x)."""

    def __post_init__(self) -> None:
        for name in ("dim", "num_examples", "d_model", "num_layers", "num_heads", "d_mlp"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ICLTransformerConfig.{name} must be a positive integer; got {value!r}")
        if not (self.position_init_std >= 0 and math.isfinite(self.position_init_std)):
            raise ValueError(f"position_init_std must be a finite number ≥ 0; got {self.position_init_std!r}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide d_model ({self.d_model}); "
                "change one of them"
            )

    @property
    def num_tokens(self) -> int:
        """Tokens per sequence: x_1, y_1, …, y_{K-1}, x_K."""
        return 2 * self.num_examples - 1

    @property
    def token_width(self) -> int:
        """Width of a raw token: one slot for y, D slots for x."""
        return self.dim + 1


def tokenize_icl(xs: Tensor, ys: Tensor) -> Tensor:
    """Interleave ``xs (..., K, D)`` and ``ys (..., K)`` into tokens ``(..., 2K - 1, D + 1)``.

    x-token k is ``(0, x_k)``, y-token k is ``(y_k, 0, …, 0)``; the final y-token is dropped.
    """
    if xs.ndim < 2 or ys.shape != xs.shape[:-1]:
        raise ValueError(
            f"xs must have shape (..., K, D) and ys (..., K) with the same leading shape; "
            f"got xs {tuple(xs.shape)} and ys {tuple(ys.shape)}"
        )
    *lead, k, d = xs.shape
    x_tokens = torch.cat([xs.new_zeros(*lead, k, 1), xs], dim=-1)  # (..., K, D+1)
    y_tokens = torch.cat([ys.unsqueeze(-1), ys.new_zeros(*lead, k, d)], dim=-1)  # (..., K, D+1)
    tokens = torch.stack([x_tokens, y_tokens], dim=-2).reshape(*lead, 2 * k, d + 1)
    return tokens[..., :-1, :]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ICLTransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, h: Tensor) -> Tensor:
        b, t, c = h.shape  # (B, T, C)
        q, k, v = self.qkv(h).split(c, dim=-1)  # each (B, T, C)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (z.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(c // self.num_heads)  # (B, nh, T, T)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        # Softmax written out: on CPU, torch's softmax kernel is about 4x slower than these few
        # vectorised ops when the attended axis is as short as here (T = 15), and it dominated the
        # training step. The row maximum is detached because softmax is shift-invariant, so its
        # gradient is exactly zero. (Written out rather than scaled_dot_product_attention so that
        # the same code runs under torch.func.vmap and in float64.)
        weights = (scores - scores.amax(dim=-1, keepdim=True).detach()).exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = weights @ v  # (B, nh, T, hs)
        out = out.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        return self.proj(out)


class MLP(nn.Module):
    def __init__(self, config: ICLTransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_mlp)
        self.proj = nn.Linear(config.d_mlp, config.d_model)

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(torch.nn.functional.gelu(self.fc(h)))


class Block(nn.Module):
    def __init__(self, config: ICLTransformerConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attn(self.ln_attn(h))
        return h + self.mlp(self.ln_mlp(h))


class TransformerTrunk(nn.Module):
    """The shared body of the suite's small transformers: a linear embedding of ``token_width``
    features, learned positions, pre-LayerNorm blocks, a final LayerNorm and a scalar read-out
    (``embed``, ``position``, ``blocks``, ``ln_final``, ``unembed``); subclasses say which
    positions they read.

    ``generator`` drives the initialisation (PyTorch's default scheme: Linear weights and
    biases ``U(-1/√fan_in, 1/√fan_in)``, LayerNorm ``(1, 0)``; position embeddings
    ``N(0, position_init_std²)``); ``None`` means a fresh generator seeded with 0, so two models
    built alike are equal.
    """

    def __init__(self, config: ICLTransformerConfig, token_width: int, num_positions: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        with torch.device("meta"):  # build without drawing from the global RNG
            self.embed = nn.Linear(token_width, config.d_model)
            self.position = nn.Parameter(torch.empty(num_positions, config.d_model))
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
            self.ln_final = nn.LayerNorm(config.d_model)
            self.unembed = nn.Linear(config.d_model, 1)
        self.to_empty(device="cpu")
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every parameter from ``generator`` (see the class docstring)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.position.normal_(0.0, self.config.position_init_std, generator=generator)

    def residual_stream(self, features: Tensor) -> Tensor:
        """``(B, T, token_width) -> (B, T, d_model)``: embedding plus positions, then the blocks."""
        h = self.embed(features) + self.position  # (B, T, C)
        for block in self.blocks:
            h = block(h)  # (B, T, C)
        return h


class ICLTransformer(TransformerTrunk):
    """``tokens (B, 2K-1, D+1) -> predictions (B, K)`` of every ``y_k`` from its prefix
    (initialisation: :class:`TransformerTrunk`)."""

    def __init__(self, config: ICLTransformerConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(config, config.token_width, config.num_tokens, generator)

    def forward(self, tokens: Tensor) -> Tensor:
        cfg = self.config
        if tokens.shape[-2:] != (cfg.num_tokens, cfg.token_width):
            raise ValueError(
                f"tokens must have shape (B, {cfg.num_tokens}, {cfg.token_width}) for D = {cfg.dim}, "
                f"K = {cfg.num_examples}; got {tuple(tokens.shape)} (build them with tokenize_icl)"
            )
        h = self.residual_stream(tokens)
        out = self.unembed(self.ln_final(h)).squeeze(-1)  # (B, T)
        return out[..., 0::2]  # predictions at the x-tokens: (B, K)
