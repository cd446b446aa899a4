"""A network's loss and gradient, compiled: :class:`CompiledLossAndGrad`.

The same vmapped loss of :class:`~toymodels.objectives.module.ModuleObjective` and its gradient,
traced once to a graph of aten operations and compiled by TorchInductor into fused C++ loops, run
over the chains in cache-sized chunks. It is the same function of the same inputs (agreement with
the eager path is checked on the first call); only the floating-point summation order differs.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch.func import vmap

from toymodels.objectives.fx_passes import sink_transposes, split_merged_views

if TYPE_CHECKING:  # annotations only: the module of ModuleObjective imports this one
    from toymodels.objectives.module import ModuleObjective

__all__ = ["CompiledLossAndGrad", "bmm_for_small_or_shared", "bmm_samples_innermost",
           "samples_innermost"]


class CompiledLossAndGrad:
    """``(params, inputs, targets) -> (losses, gradients)`` of a :class:`ModuleObjective`, compiled.

    The function compiled is exactly the eager one, ``losses = vmap(loss_one)(params)`` and
    ``gradients = ∇_params Σ_c losses_c`` (``torch.func.grad``), for a fixed number of chains
    ``chunk``. It is traced once with ``make_fx`` to aten operations, rewritten (exactly: only the
    floating-point summation order changes) and handed to TorchInductor, which fuses the
    elementwise work, reductions and the loss into a few C++ loops.

    Why rewrite: ``vmap`` turns every layer into ``bmm`` calls whose inner dimensions are the layer
    widths, and a BLAS ``bmm`` is slow when these are tiny (measured: a (1000, 1000, 4) ×
    (1000, 4, 3) ``bmm`` runs at under 2 GFLOP/s). Two layouts of the intermediates are used:

    * ``layout="samples"`` (full batch, narrow data): every activation is stored with the *sample*
      axis innermost in memory (the data are copied once to that layout), so the compiler's loops
      vectorise along the samples instead of along a layer width of 3 or 4. The data products
      ``X Wᵀ`` and ``Xᵀ G`` become one ``mm`` over all chains, small contractions become broadcast
      products and sums written in that layout, and weight gradients (a long contraction over the
      samples into a tiny matrix) become reductions. Two graph rewrites keep the layout through
      the rest of the network and the loss: ``vmap``'s loss rules flatten ``(n, k)`` outputs to
      ``(n·k,)``, which would force the narrow axis innermost again, and
      :func:`~toymodels.objectives.fx_passes.split_merged_views` undoes those flattenings;
      :func:`~toymodels.objectives.fx_passes.sink_transposes` moves the transposes past the elementwise work
      (bias, activation, loss) so that its results are stored with the samples innermost too.
      Measured by ``experiments/bench_layouts.py``: 2.5–8× fewer CPU seconds than ``"features"``
      for networks of 18–1,200 parameters with at most 6 numbers per sample (a cross-entropy
      classifier among them), 1.3–1.4× at 20–64 numbers per sample.
    * ``layout="features"`` (used for minibatches and wide data, where it is as fast): the natural
      layout; ``bmm`` over a contraction of at most :data:`SMALL_CONTRACTION` is a broadcast
      product and a sum, and a ``bmm`` with one operand shared by all chains (the data, which
      ``vmap`` expands with batch stride 0) is one ``mm`` over the chains stacked side by side.

    Chains are processed in chunks of ``chunk`` so that one chunk's activations fit in cache
    (about :data:`CHUNK_BYTES` for the largest per-chain intermediate; measured 1.5–2× faster than
    one call over 1000 chains); the last chunk is padded with copies of the first chain and the
    padding dropped.
    """

    SMALL_CONTRACTION = 16
    CHUNK_BYTES = 2 * 2**20
    # data with at most this many numbers per sample use layout="samples" (see choose_layout)
    NARROW_DATA = 64

    def __init__(self, objective: ModuleObjective, num_chains: int, dtype: torch.dtype,
                 device: torch.device, layout: str | None = None):
        self.objective = objective
        self.num_chains = num_chains
        self.batched_data = objective.batch_size is not None
        self.layout = self.choose_layout(objective) if layout is None else layout
        if self.layout not in ("samples", "features"):
            raise ValueError(f"layout must be 'samples' or 'features', got {self.layout!r}")
        if self.layout == "samples" and self.batched_data:
            raise ValueError("layout='samples' needs full-batch data (batch_size=None)")
        # the data as the compiled graph reads them (copied once to the sample-innermost layout)
        self.inputs = samples_innermost(objective.inputs) if self.layout == "samples" else objective.inputs
        self.targets = samples_innermost(objective.targets) if self.layout == "samples" else objective.targets
        data_dim = 0 if self.batched_data else None
        batched = vmap(_LossOne(objective), in_dims=(0, data_dim, data_dim))

        def loss_and_grad(params, inputs, targets):
            def total(p):
                losses = batched(p, inputs, targets)
                return losses.sum(), losses

            grad, losses = torch.func.grad(total, has_aux=True)(params)
            return losses, grad

        def example(chains: int):
            params = objective.center.to(device=device, dtype=dtype).expand(chains, -1).contiguous()
            if not self.batched_data:
                return params, self.inputs, self.targets
            idx = torch.zeros(chains, objective.batch_size, dtype=torch.long,
                              device=objective.inputs.device)
            return params, objective.inputs[idx], objective.targets[idx]

        with warnings.catch_warnings():
            # importing and running the compiler warns about deprecations that are not ours
            warnings.simplefilter("ignore")
            from torch._inductor import config as inductor_config
            from torch._inductor.compile_fx import compile_fx
            from torch._inductor.decomposition import select_decomp_table
            from torch._subclasses.fake_tensor import FakeTensorMode
            from torch.fx.experimental.proxy_tensor import make_fx
            from torch.fx.experimental.symbolic_shapes import ShapeEnv

            # a 2-chain probe measures the largest per-chain activation to size the chunks
            probe_chains = min(num_chains, 2)
            probe = make_fx(loss_and_grad)(*example(probe_chains))
            per_chain = _largest_per_chain_bytes(probe, probe_chains)
            target = max(1, min(num_chains, self.CHUNK_BYTES // max(per_chain, 1)))
            self.num_chunks = math.ceil(num_chains / target)
            self.chunk = math.ceil(num_chains / self.num_chunks)
            table = dict(select_decomp_table())
            table[torch.ops.aten.bmm.default] = (
                bmm_samples_innermost if self.layout == "samples" else bmm_for_small_or_shared)
            inputs = example(self.chunk)
            graph = make_fx(loss_and_grad, decomposition_table=table)(*inputs)
            if self.layout == "samples":
                if split_merged_views(graph):
                    graph = make_fx(graph)(*inputs)  # fresh shapes and strides for the next pass
                if sink_transposes(graph):
                    graph = make_fx(graph)(*inputs)
            # one compile thread: no pool of compiler subprocesses on a small machine
            # example inputs as fake tensors with a (static) shape environment: with real ones
            # TorchInductor bypasses its on-disk FX graph cache ("No shape env") and generates and
            # compiles the C++ anew in every process; with these a repeated compilation of the same
            # graph, in a later process too, is a cache hit (measured on the toy of
            # experiments/bench_llc.py: 2.9 s against 4.6 s, the imports included)
            fake_mode = FakeTensorMode(shape_env=ShapeEnv())
            fakes = [fake_mode.from_tensor(t, static_shapes=True) for t in inputs]
            with inductor_config.patch(compile_threads=1):
                self._fn = compile_fx(graph, fakes)

    @classmethod
    def choose_layout(cls, objective: ModuleObjective) -> str:
        """``"samples"`` for full-batch data of at most :data:`NARROW_DATA` numbers per sample.

        Narrow data mean narrow first and last layers, where vectorising along a width is hopeless
        and vectorising along the samples is what helps; wide data vectorise well as they are.
        The rule depends only on shapes, so a seed reproduces a run whatever the machine's load.
        """
        if objective.batch_size is not None:
            return "features"
        per_sample = max(t[0].numel() for t in (objective.inputs, objective.targets))
        return "samples" if per_sample <= cls.NARROW_DATA else "features"

    def __call__(self, params: torch.Tensor, inputs: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None):
        """Losses and gradients; ``inputs, targets`` are each chain's minibatch, or ``None`` for
        the full batch (the copy made for the compiled graph's layout)."""
        if not self.batched_data:
            inputs, targets = self.inputs, self.targets
        num_chains = params.shape[0]
        params = params.detach().contiguous()
        losses = params.new_empty(num_chains)
        grads = params.new_empty(params.shape)
        with torch.no_grad():
            for start in range(0, num_chains, self.chunk):
                stop = min(start + self.chunk, num_chains)
                p, x, y = params[start:stop], inputs, targets
                if self.batched_data:
                    x, y = inputs[start:stop], targets[start:stop]
                pad = self.chunk - (stop - start)
                if pad:
                    p = torch.cat([p, params[:1].expand(pad, -1)])
                    if self.batched_data:
                        x = torch.cat([x, inputs[:1].expand(pad, *inputs.shape[1:])])
                        y = torch.cat([y, targets[:1].expand(pad, *targets.shape[1:])])
                chunk_losses, chunk_grads = self._fn(p, x, y)[:2]
                losses[start:stop] = chunk_losses[: stop - start]
                grads[start:stop] = chunk_grads[: stop - start]
        return losses, grads

    def check_against_eager(self, params: torch.Tensor) -> str:
        """Compare with the eager path on the first chunk; ``""`` if they agree, else why not."""
        objective = self.objective
        p = params[: self.chunk].detach().contiguous()
        if self.batched_data:
            # a private generator: the check must not consume the sampler's random numbers
            generator = torch.Generator(device=objective.inputs.device).manual_seed(0)
            x, y = objective._minibatch(p.shape[0], generator)
        else:
            x, y = objective.inputs, objective.targets
        with torch.enable_grad():
            q = p.clone().requires_grad_(True)
            eager_losses = (objective._mini(q, x, y) if self.batched_data
                            else objective._full(q, x, y))
            (eager_grads,) = torch.autograd.grad(eager_losses.sum(), q)
        losses, grads = self(p, x, y)
        rtol = 1e-3 if p.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
        for name, got, want in (("losses", losses, eager_losses.detach()), ("gradients", grads, eager_grads)):
            finite = torch.isfinite(want)
            if not torch.equal(finite, torch.isfinite(got)):
                return f"compiled {name} are non-finite where the eager ones are not"
            if finite.any():
                scale = want[finite].abs().max()
                err = (got[finite] - want[finite]).abs().max()
                if err > rtol * scale + torch.finfo(want.dtype).tiny:
                    return f"compiled {name} differ from eager by {float(err):.3g} (scale {float(scale):.3g})"
        return ""


class _LossOne:
    """The loss of one chain, ``(w, x, y) -> scalar``, as in :class:`ModuleObjective`."""

    def __init__(self, objective: ModuleObjective):
        self.objective = objective

    def __call__(self, w, x, y):
        o = self.objective
        return o.loss_fn(o.flat(w, x), y).reshape(())


def bmm_for_small_or_shared(a: torch.Tensor, b: torch.Tensor):
    """``bmm(a, b)`` rewritten for the compiler where BLAS is slow (see CompiledLossAndGrad)."""
    batch, m, k = a.shape
    n = b.shape[2]
    if k <= CompiledLossAndGrad.SMALL_CONTRACTION:
        return (a.unsqueeze(-1) * b.unsqueeze(1)).sum(2)
    if batch > 1 and a.stride(0) == 0:  # one a for all chains: a (m, k) @ [b_1 … b_B] (k, B·n)
        return torch.mm(a[0], b.transpose(0, 1).reshape(k, batch * n)).view(m, batch, n).transpose(0, 1)
    if batch > 1 and b.stride(0) == 0:  # [a_1; …; a_B] (B·m, k) @ b (k, n)
        return torch.mm(a.reshape(batch * m, k), b[0]).view(batch, m, n)
    return NotImplemented


def bmm_samples_innermost(a: torch.Tensor, b: torch.Tensor):
    """``bmm(a, b)`` written so that results keep the sample axis innermost (layout="samples").

    Which axis is the samples' is read from the shapes: the larger free dimension of a product
    with a small contraction, the contraction of a product into a small matrix.
    """
    batch, m, k = a.shape
    n = b.shape[2]
    small = CompiledLossAndGrad.SMALL_CONTRACTION
    if batch > 1 and a.stride(0) == 0:
        # one a for all chains (the data): (a b_c)ᵀ = b_cᵀ aᵀ, one mm over the chains stacked
        # row-wise, whose (chains·n, m) result has m (the samples in X Wᵀ) innermost
        stacked = b.transpose(1, 2).reshape(batch * n, k)
        return torch.mm(stacked, a[0].t()).view(batch, n, m).transpose(1, 2)
    if batch > 1 and b.stride(0) == 0:
        return bmm_for_small_or_shared(a, b)  # one mm, as in the natural layout
    if k <= small and m >= n:
        # computed as (b_cᵀ a_cᵀ) so that m, the larger (sample) axis, is innermost in memory
        out_t = (b.transpose(1, 2).unsqueeze(-1) * a.transpose(1, 2).unsqueeze(1)).sum(2)
        return out_t.transpose(1, 2)
    if k <= small or (m <= small and n <= small):
        # a small contraction, or a long one (over the samples) into a small matrix: a reduction
        return (a.unsqueeze(-1) * b.unsqueeze(1)).sum(2)
    return NotImplemented


def samples_innermost(data: torch.Tensor) -> torch.Tensor:
    """The same tensor, stored with the sample axis (0) innermost: stride 1 along axis 0."""
    if data.dim() < 2:
        return data.contiguous()
    return data.movedim(0, -1).contiguous().movedim(-1, 0)


def _largest_per_chain_bytes(graph: torch.fx.GraphModule, chains: int) -> int:
    """Bytes of the largest intermediate with a leading chain dimension, per chain."""
    largest = 0
    for node in graph.graph.nodes:
        value = node.meta.get("val")
        if node.op == "call_function" and isinstance(value, torch.Tensor) and value.dim() > 0 \
                and value.shape[0] == chains:
            largest = max(largest, value.numel() * value.element_size() // chains)
    return largest
