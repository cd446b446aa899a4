"""A network with data as a function of one flat parameter vector: :class:`ModuleObjective`.

The module becomes a function of a flat vector through ``torch.func.functional_call``, and the data
stay tensors (minibatches are gathered by index, never collated by a DataLoader in the inner loop).
Its loss and gradient can also be *compiled* (:class:`~toymodels.objectives.compiled.CompiledLossAndGrad`).
Here too: the contracts the sampler relies on (:func:`check_module_contracts`), the mask of named
parameters (:func:`parameter_mask`) and the concatenation of a DataLoader (:func:`data_from_loader`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch.func import functional_call, vmap

from toymodels.objectives.base import Objective, check_precision
from toymodels.objectives.compiled import CompiledLossAndGrad

__all__ = ["FlatModule", "ModuleObjective", "check_module_contracts", "parameter_mask", "data_from_loader",
           "AUTO_COMPILE_AFTER_SECONDS", "LOOP_WORK_THRESHOLD", "LOOP_MAX_CHAINS", "free_memory_bytes"]

# "auto" compiles once the eager calls amount to this much estimated work: with compilation
# taking a few seconds (tens on a loaded machine with a cold cache), a run that stops sooner
# never pays for it, and a longer one spends at most a fraction of its time compiling.
AUTO_COMPILE_AFTER_SECONDS = 15.0

#: "auto" compiles networks of at most this many parameters: the compiled kernels fix what is slow
#: for narrow layers (batched matrix products over widths of a few units, see
#: :class:`CompiledLossAndGrad`); a wide network's matrix products are already BLAS-bound, and
#: compiling it costs more than it saves (measured: an MNIST-shaped MLP of 10⁵ parameters took
#: 28 s compiled against 16–19 s eager for 8 chains × 500 draws)
AUTO_COMPILE_MAX_PARAMETERS = 2**14

#: ``chain_strategy="auto"`` runs the chains as a loop of plain autograd passes (one per chain)
#: when each chain's step is at least this much work — parameters × samples per step — and there
#: are at most :data:`LOOP_MAX_CHAINS` chains. Below it, one vmapped pass over the chains saves the
#: per-call overhead; above it, vmap's batched weights cost more than they save. Measured by
#: ``experiments/bench_scale.py`` (one thread, 4 and 8 chains × 200 draws): an MLP of 9,550
#: parameters at batch 256 (2.4·10⁶) ran 1.2–1.5× faster vmapped; a transformer of 1.1·10⁵ at
#: batch 64 (7.1·10⁶) 1.2× faster looped; an MLP of 1.07·10⁶ at batch 256, 1.2–1.3× faster
#: looped; at 10⁵ parameters and batch 256 the two were within 5 %.
LOOP_WORK_THRESHOLD = 2**22
LOOP_MAX_CHAINS = 64
CHAIN_STRATEGIES = ("auto", "vmap", "loop")
#: the share of the free memory (device memory on a GPU, available RAM on a CPU) a run may plan to use
MEMORY_FRACTION = 0.8
#: the eager vmapped pass takes the chains in chunks whose largest per-chain intermediate tensor
#: is at most this many bytes in all (on a CPU). Bigger fresh allocations fall out of the cache
#: and, above glibc's mmap threshold (at most 32 MiB), are mapped and page-faulted anew at every
#: step. Measured (one thread, a loss and gradient pass, no chunk against this rule): the
#: 24-parameter toy, 1000 chains on 1000 samples, 27 → 18 ms (4 chunks); a 4→32→4 tanh network,
#: 1000 chains, 362 → 154 ms; 200 chains on 10,000 samples 58 → 43 ms; 4000 chains on 200
#: samples 20 → 17 ms; 2 and 8 MiB were as good or worse in each case (each vmapped call costs
#: about 0.5 ms of overhead). The numbers do not depend on the chunking: a chain's gradient is
#: its own loss's.
EAGER_CHUNK_BYTES = 2**22


class FlatModule:
    """A network as a function of one flat vector of its trainable parameters: ``(w, x) -> model_w(x)``.

    The flat layout is the sampler's: the trainable parameters in ``named_parameters()`` order,
    each flattened; frozen parameters and buffers are taken as they are. The forward pass is
    ``torch.func.functional_call``, so it can be ``vmap``-ed over chains and differentiated in
    ``w``. Every path that evaluates a network at a flat vector (the objective, its compiled
    kernel, the susceptibilities' observables) goes through this one adapter.
    """

    def __init__(self, model: torch.nn.Module):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters to sample")
        self.model = model
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dtype = named[0][1].dtype
        self.frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}

    def center(self) -> torch.Tensor:
        """The model's current parameters as one flat vector ``(d,)`` (a copy)."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.names]).clone()

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split one flat vector ``(d,)`` into the module's named parameter tensors (views)."""
        out, start = {}, 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels):
            out[name] = w[start : start + numel].view(shape)
            start += numel
        return out

    def __call__(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (self.unflatten(w), self.frozen, self.buffers), (x,))

    def split(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The parameter tensors of ``w`` (``(d,)``, or ``(C, d)`` giving ``(C, *shape)`` each), as views.

        Gradients are taken with respect to these pieces, made leaves, and concatenated once:
        a gradient with respect to the flat vector itself would go back through each view as a
        zero-filled copy of the whole vector (one ``(C, d)`` pass per parameter tensor).
        """
        lead, out, start = w.shape[:-1], [], 0
        for shape, numel in zip(self.shapes, self.numels):
            out.append(w[..., start: start + numel].reshape(*lead, *shape))
            start += numel
        return out

    def call_split(self, parts: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The forward pass at the parameter tensors ``parts`` (in :attr:`names` order)."""
        return functional_call(self.model, (dict(zip(self.names, parts)), self.frozen, self.buffers), (x,))


class ModuleObjective(Objective):
    """A network at ``w*`` with data, as a function of one flat parameter vector.

    Args:
        model: the network; its current parameters are ``w*``. It is not modified.
        inputs: ``(n, ...)`` tensor of inputs, passed as ``model(inputs)``.
        targets: ``(n, ...)`` tensor of targets.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the batch-mean loss.
        batch_size: ``None`` for full-batch gradients; otherwise each chain draws its own
            minibatch of this size, uniformly with replacement, at every step.
        compile: whether :meth:`loss_and_grad` may switch to a compiled graph
            (:class:`CompiledLossAndGrad`). ``None`` (default) reads the environment variable
            ``TOYMODELS_COMPILE`` (``"0"`` never, ``"1"`` from the first call, unset or ``"auto"``
            automatically); ``"auto"`` compiles a network of at most
            :data:`AUTO_COMPILE_MAX_PARAMETERS` parameters on a CPU at the start of a run whose
            estimated eager time is at least :data:`AUTO_COMPILE_AFTER_SECONDS`
            (:meth:`prepare_run`), or once the eager calls so far (a calibration's short runs)
            amount to that much — estimates that count chains × samples × parameters, not a
            clock, so a seed reproduces a run — and short runs never pay the few seconds of
            compilation; ``True`` compiles at the first call;
            ``False`` never. Any failure to trace or compile, or a result that disagrees with the
            eager path, falls back to the eager path for good; ``compile_status`` says which
            path is in use and why.
        chain_strategy: how the eager path runs many chains: ``"vmap"`` (one vectorised pass
            over all chains, ``torch.func.vmap``), ``"loop"`` (a loop of plain autograd passes,
            one per chain, on views of the flat parameters: the cost of a hand-written per-chain
            loop), or ``"auto"`` (default): the loop when each chain's step is at least
            :data:`LOOP_WORK_THRESHOLD` parameter·samples and there are at most
            :data:`LOOP_MAX_CHAINS` chains, vmap otherwise. The rule reads shapes only, so a seed
            reproduces a run; both strategies compute the same losses and gradients from the
            same minibatches (the summation order of the matrix products may differ).
            ``chain_strategy_for(C)`` says which is used. Compilation applies to ``"vmap"`` only.
        memory_limit: bytes a run may plan to use for the chains' activations, state and traces
            (default: :data:`MEMORY_FRACTION` of the free device memory, or of the available RAM).
            Before sampling, :meth:`memory_plan` measures one chain's saved activations and
            splits the vmapped chains into chunks that fit, or refuses with the numbers.

    The eager path: ``vmap(functional_call)`` over the chains, then one reverse pass through the
    sum of the chains' losses. The compiled path computes the same ``(losses, gradients)``
    (see :class:`CompiledLossAndGrad`): for the 24-parameter network of
    ``experiments/bench_llc.py`` at 1000 chains, 9.3 against 67 CPU µs per chain-step. It is
    compiled with the samples innermost in memory when the data are narrow, and with the natural
    layout if that fails (``compile_status`` says which).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch_size: int | None = None,
        *,
        compile: bool | str | None = None,  # noqa: A002 - the word users look for
        chain_strategy: str = "auto",
        memory_limit: int | None = None,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets) -> scalar")
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("data must be (inputs, targets) tensors or a DataLoader yielding them")
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same length, got {inputs.shape[0]} inputs and "
                f"{targets.shape[0]} targets"
            )
        n = inputs.shape[0]
        if n == 0:
            raise ValueError("data is empty: give at least one (input, target) pair")
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
            if batch_size >= n:
                batch_size = None  # a minibatch as large as the data is the full batch
        self.flat = FlatModule(model)
        check_precision(self.flat.dtype, "the model's parameters")
        self.names, self.shapes, self.numels = self.flat.names, self.flat.shapes, self.flat.numels
        self.frozen, self.buffers = self.flat.frozen, self.flat.buffers
        self.center = self.flat.center()
        self.model = model
        self.inputs = inputs
        self.targets = targets
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.num_samples = n

        def loss_one(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(self.flat(w, x), y).reshape(())

        def loss_split(parts: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(self.flat.call_split(parts, x), y).reshape(())

        self._full = vmap(loss_one, in_dims=(0, None, None))
        self._mini = vmap(loss_one, in_dims=(0, 0, 0))
        self._loss_split = loss_split
        self._full_split = vmap(loss_split, in_dims=(0, None, None))
        self._mini_split = vmap(loss_split, in_dims=(0, 0, 0))
        check_module_contracts(model, inputs, targets, loss_fn)
        if chain_strategy not in CHAIN_STRATEGIES:
            raise ValueError(f"chain_strategy must be one of {CHAIN_STRATEGIES}, got {chain_strategy!r}")
        self.chain_strategy = chain_strategy
        if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, int)
                                         or memory_limit <= 0):
            raise ValueError(f"memory_limit must be a positive number of bytes or None, got {memory_limit!r}")
        self.memory_limit = memory_limit
        self.chunk_chains: int | None = None  # set by memory_plan: vmapped chains per pass
        self._activation_bytes: int | None = None
        self._largest_activation_bytes = 0  # the largest single saved tensor of one chain
        self.compile_mode = _compile_mode(compile)
        self.compile_status = "eager" if self.compile_mode != "never" else "eager (compile off)"
        self.compile_seconds = 0.0
        self._compiled: dict[tuple, CompiledLossAndGrad | None] = {}
        self._eager_work_seconds = 0.0  # estimated, for the "auto" policy
        self._compile_failed = False

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split one flat vector ``(d,)`` into the module's named parameter tensors (views)."""
        return self.flat.unflatten(w)

    def _minibatch(self, num_chains: int, generator: torch.Generator | None):
        """Each chain's minibatch ``(num_chains, b, ...)``, drawn uniformly with replacement."""
        idx = torch.randint(
            self.num_samples, (num_chains, self.batch_size), generator=generator,
            device=self.inputs.device,
        )
        return self.inputs[idx], self.targets[idx]

    def batched_loss(self, params, generator=None):
        if self.batch_size is None:
            return self._full(params, self.inputs, self.targets)
        return self._mini(params, *self._minibatch(params.shape[0], generator))

    def chain_strategy_for(self, num_chains: int) -> str:
        """``"vmap"`` or ``"loop"``: how ``num_chains`` chains are evaluated (see ``chain_strategy``)."""
        if self.chain_strategy != "auto":
            return self.chain_strategy
        work = self.dim * (self.batch_size or self.num_samples)
        return "loop" if num_chains <= LOOP_MAX_CHAINS and work >= LOOP_WORK_THRESHOLD else "vmap"

    #: :meth:`loss_and_grad` can write the gradients into a given buffer (``out``)
    writes_grad_into = True

    def loss_and_grad(self, params, generator, out: torch.Tensor | None = None):
        """Losses ``(num_chains,)`` and gradients ``(num_chains, d)``: vmapped (eager or
        compiled; eager in chunks of :meth:`eager_chunk` chains, which memory and the cache
        decide) or looped.

        Every path draws the minibatch indices from ``generator`` in the same way, once for all
        chains, so a seed gives the same minibatches whichever path runs. ``out``: a contiguous
        ``(num_chains, d)`` buffer the eager paths write the gradients into (the sampler's reused
        one: a fresh 34 MB gradient a step page-faults; see
        :class:`~toymodels.sampling.integrator.Scratch`); the compiled path returns its own.
        """
        num_chains = params.shape[0]
        if self.chain_strategy_for(num_chains) == "loop":
            return self._looped(params, generator, out)
        compiled = self._compiled_for(params)
        if compiled is None:
            out = self._vmapped(params, generator, out)
            self._eager_work_seconds += _estimated_eager_seconds(
                num_chains, self.batch_size or self.num_samples, self.dim)
            return out
        if self.batch_size is None:
            return compiled(params)
        return compiled(params, *self._minibatch(num_chains, generator))

    def _vmapped(self, params, generator, out=None):
        """One reverse pass through the sum of the vmapped losses, per chunk of chains; the
        gradients are taken per parameter tensor (:meth:`FlatModule.split`) and concatenated."""
        num_chains = params.shape[0]
        chunk = self.eager_chunk(num_chains)
        batch = None if self.batch_size is None else self._minibatch(num_chains, generator)
        losses = params.new_empty(num_chains)
        grads = torch.empty_like(params) if out is None else out
        with torch.enable_grad():
            for start in range(0, num_chains, chunk):
                stop = min(start + chunk, num_chains)
                leaves = [v.detach().requires_grad_(True) for v in self.flat.split(params[start:stop])]
                if batch is None:
                    value = self._full_split(leaves, self.inputs, self.targets)
                else:
                    value = self._mini_split(leaves, batch[0][start:stop], batch[1][start:stop])
                parts = torch.autograd.grad(value.sum(), leaves)
                torch.cat([g.reshape(stop - start, -1) for g in parts], dim=1, out=grads[start:stop])
                losses[start:stop] = value.detach()
        return losses, grads

    def eager_chunk(self, num_chains: int) -> int:
        """Chains per eager vmapped pass: all of them, unless memory (:attr:`chunk_chains`, set by
        :meth:`memory_plan`) or the cache rule asks for fewer — on a CPU, at most
        :data:`EAGER_CHUNK_BYTES` for the largest intermediate, in chunks of equal size."""
        chunk = num_chains if self.chunk_chains is None else min(num_chains, self.chunk_chains)
        if self.center.device.type == "cpu":
            self.activation_bytes()
            largest = max(self._largest_activation_bytes, 1)
            chunk = min(chunk, max(1, EAGER_CHUNK_BYTES // largest))
        passes = math.ceil(num_chains / chunk)
        return math.ceil(num_chains / passes)

    def _looped(self, params, generator, out=None):
        """One plain forward and backward per chain, with respect to the pieces of its row of
        ``params`` (:meth:`FlatModule.split`), written into the flat gradient once."""
        num_chains = params.shape[0]
        batch = None if self.batch_size is None else self._minibatch(num_chains, generator)
        losses = params.new_empty(num_chains)
        grads = torch.empty_like(params) if out is None else out
        with torch.enable_grad():
            for c in range(num_chains):
                leaves = [v.detach().requires_grad_(True) for v in self.flat.split(params[c])]
                x, y = (self.inputs, self.targets) if batch is None else (batch[0][c], batch[1][c])
                value = self._loss_split(leaves, x, y)
                parts = torch.autograd.grad(value, leaves)
                torch.cat([g.reshape(-1) for g in parts], out=grads[c])
                losses[c] = value.detach()
        return losses, grads

    def activation_bytes(self) -> int:
        """Bytes autograd saves for one chain's forward pass on one step's samples (measured once).

        One forward at ``w*`` on ``batch_size`` samples (or the data) with a
        ``saved_tensors_hooks`` that adds up the tensors kept for the backward pass (each storage
        once): what a chain's gradient holds in memory, model and loss included.
        """
        if self._activation_bytes is None:
            seen, total, largest = set(), 0, [0]

            def pack(t: torch.Tensor):
                nonlocal total
                key = (t.untyped_storage().data_ptr(), t.device)
                if key not in seen:
                    seen.add(key)
                    total += t.untyped_storage().nbytes()
                    if key[0] not in data:
                        largest[0] = max(largest[0], t.untyped_storage().nbytes())
                return t

            b = self.batch_size or self.num_samples
            w = self.center.detach().requires_grad_(True)
            # copies, as a step's gathered minibatch is (a view would count all the data); the
            # data are not an intermediate of the pass (gathered for all chains before it, or
            # shared by all), so the largest-intermediate size that chunks it leaves them out
            x, y = self.inputs[:b].clone(), self.targets[:b].clone()
            data = {x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()}
            try:
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    self.loss_fn(self.flat(w, x), y)
            except RuntimeError:  # a tensor without a plain storage: count what was seen
                pass
            self._activation_bytes = total
            self._largest_activation_bytes = largest[0]
        return self._activation_bytes

    def prepare_run(self, num_chains: int, num_steps: int, num_draws: int) -> dict:
        """Called by the driver before a run: plan its memory (:meth:`memory_plan`) and, with
        ``compile="auto"``, decide once whether compiling pays for this run, compiling now if so.

        The run length is known before the first step: on a CPU, with the vmapped strategy, the
        run is compiled at its start when its estimated eager time (a deterministic count of
        steps × chains × samples × parameters, :func:`_estimated_eager_seconds`, so a seed
        reproduces the choice) is at least :data:`AUTO_COMPILE_AFTER_SECONDS` — a few times what
        compiling costs — and otherwise runs eager (short runs never pay for compilation).
        Compiled kernels are kept per shape, so a calibration followed by the run, or repeated
        calls, compile once. Returns the memory plan, with ``compile`` added.
        """
        plan = self.memory_plan(num_chains, num_draws)
        decision = "off" if self.compile_mode == "never" else "eager"
        if plan["strategy"] == "vmap" and self.compile_mode != "never":
            key = _compile_key(self.center.expand(num_chains, -1))
            run_seconds = num_steps * _estimated_eager_seconds(
                num_chains, self.batch_size or self.num_samples, self.dim)
            if key in self._compiled:
                decision = "compiled (kept)" if self._compiled[key] is not None else "eager"
            elif self.compile_mode == "always" or (
                    self.compile_mode == "auto" and self.center.device.type == "cpu"
                    and self.dim <= AUTO_COMPILE_MAX_PARAMETERS
                    and run_seconds >= AUTO_COMPILE_AFTER_SECONDS and self.chunk_chains is None):
                decision = "compiled" if self.compile(num_chains) else "eager"
        plan["compile"] = decision
        self.last_plan = plan
        return plan

    def memory_plan(self, num_chains: int, num_draws: int = 0, num_records: int = 9) -> dict:
        """What a run of ``num_chains`` chains and ``num_draws`` draws needs, and how it is split.

        ``bytes``: the chains' state (position, gradient, noise and the kernel's copies: about 8
        ``(C, d)`` tensors), the recorded traces (``num_records`` numbers per chain and draw), the
        data, and the activations of the chains evaluated at once (:meth:`activation_bytes` each,
        vmapped in chunks, or one at a time in the loop). Sets :attr:`chunk_chains` so that the
        total stays under the limit; raises ``MemoryError`` with the numbers and what to change
        when even one chain at a time does not fit.
        """
        element = self.center.element_size()
        state = 8 * num_chains * self.dim * element
        traces = num_records * num_draws * num_chains * element
        data = self.inputs.element_size() * self.inputs.numel() + self.targets.element_size() * self.targets.numel()
        per_chain = self.activation_bytes()
        if self.batch_size is not None:  # each chain's gathered minibatch
            per_chain += self.batch_size * (data // self.num_samples)
        limit = self.memory_limit if self.memory_limit is not None else int(
            MEMORY_FRACTION * free_memory_bytes(self.center.device))
        fixed = state + traces + data
        room = limit - fixed
        looped = self.chain_strategy_for(num_chains) == "loop"
        if room < per_chain:
            raise MemoryError(
                f"the run does not fit in {_gib(limit)}: {num_chains} chains × {self.dim:,} parameters "
                f"need {_gib(state)} of state, {num_draws} draws {_gib(traces)} of traces, the data "
                f"{_gib(data)}, and one chain's forward pass {_gib(per_chain)} of activations. "
                "Use fewer chains (or split them over processes with torchrun), a smaller batch_size, "
                "fewer draws (thin with num_steps_bw_draws), or a larger memory_limit")
        if looped:
            self.chunk_chains = None
            at_once = 1
        else:
            at_once = min(num_chains, max(1, room // max(per_chain, 1)))
            self.chunk_chains = None if at_once >= num_chains else int(at_once)
        return dict(bytes=int(fixed + at_once * per_chain), limit=int(limit), state=int(state),
                    traces=int(traces), data=int(data), activations_per_chain=int(per_chain),
                    chains_at_once=int(at_once), strategy="loop" if looped else "vmap")

    def compile(self, num_chains: int) -> bool:
        """Compile the loss and gradient for ``num_chains`` chains now (instead of lazily).

        Returns whether the compiled path is in use; on failure ``compile_status`` says why and
        the eager path stays. Compilation takes a few seconds (more on a loaded machine; repeated
        compilations of the same graph hit TorchInductor's on-disk cache).
        """
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        if self._compile_failed:
            return False
        params = self.center.expand(num_chains, -1)
        return self._build(params) is not None

    def _compiled_for(self, params: torch.Tensor) -> CompiledLossAndGrad | None:
        if self.compile_mode == "never":
            return None
        key = _compile_key(params)
        if key in self._compiled:
            return self._compiled[key]
        if self.compile_mode == "auto" and (
            params.device.type != "cpu" or self._eager_work_seconds < AUTO_COMPILE_AFTER_SECONDS
            or self.dim > AUTO_COMPILE_MAX_PARAMETERS
        ):
            return None
        return self._build(params)

    def _build(self, params: torch.Tensor) -> CompiledLossAndGrad | None:
        key = _compile_key(params)
        if key in self._compiled:
            return self._compiled[key]
        start = time.perf_counter()
        layouts = [CompiledLossAndGrad.choose_layout(self)]
        if layouts[0] == "samples":
            # a forward that views its input across the sample axis (x.view(-1, 2)) fails on the
            # copy with the samples innermost; the natural layout then still gets compiled
            layouts.append("features")
        compiled, failures = None, {}
        for layout in layouts:
            try:
                compiled = CompiledLossAndGrad(self, params.shape[0], params.dtype, params.device,
                                               layout=layout)
                reason = compiled.check_against_eager(params)
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next, then eager
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if not reason:
                break
            compiled = None
            failures[layout] = reason
        self.compile_seconds += time.perf_counter() - start
        if len(set(failures.values())) == 1:
            why = next(iter(failures.values()))
        else:
            why = "; ".join(f"{layout} innermost: {reason}" for layout, reason in failures.items())
        if compiled is None:
            self.compile_status = f"eager (compilation failed, {why})"
            # one failure is enough: do not retry for other chain counts
            self.compile_mode = "never"
            self._compile_failed = True
        else:
            self.compile_status = (f"compiled ({compiled.num_chunks} chunk(s) of {compiled.chunk} "
                                   f"chains, {compiled.layout} innermost, "
                                   f"{self.compile_seconds:.1f} s to compile)")
            if failures:
                self.compile_status += f"; samples innermost failed: {why}"
        self._compiled[key] = compiled
        return compiled

    def full_loss(self, params):
        with torch.no_grad():
            return self._full(params, self.inputs, self.targets)


#: layers whose output depends on ``model.training``: in training mode they make the loss random
#: (dropout) or couple the samples of a batch (batch statistics), which vmap cannot batch
_TRAINING_MODE_LAYERS = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm,
                         torch.nn.modules.instancenorm._InstanceNorm)


def check_module_contracts(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                           loss_fn: Callable) -> None:
    """Check what the sampler assumes of a network, its data and its loss; raise with advice.

    * no dropout or batch-norm layer in training mode (call ``model.eval()``);
    * ``loss_fn`` returns a tensor (a Python float has no gradient);
    * outputs and floating-point targets have the same shape: ``mse_loss`` broadcasts ``(n, 1)``
      against ``(n,)`` to an ``(n, n)`` loss without complaint, and the estimate is then wrong;
    * the loss is a batch **mean**: the loss of 2m samples equals the mean of the losses of its two
      halves (a sum would be twice that and silently double the temperature nβ).
    """
    if model.training:
        stochastic = sorted({type(m).__name__ for m in model.modules()
                             if isinstance(m, _TRAINING_MODE_LAYERS)})
        if stochastic:
            raise ValueError(
                f"the model is in training mode and has {', '.join(stochastic)} layers, whose "
                "output is random or depends on the whole batch in that mode: call model.eval() "
                "before estimating (the LLC is a property of the deterministic network)")
    n = inputs.shape[0]
    m = min(n // 2, 128)
    with torch.no_grad():
        outputs = model(inputs[: max(2 * m, 1)])
        # shapes first: a loss that broadcasts would warn (or silently compare all pairs)
        if isinstance(outputs, torch.Tensor) and torch.is_floating_point(targets) \
                and outputs.shape != targets[: outputs.shape[0]].shape:
            out_shape, tgt_shape = tuple(outputs.shape[1:]), tuple(targets.shape[1:])
            try:
                joint = torch.broadcast_shapes(outputs.shape, targets[: outputs.shape[0]].shape)
            except RuntimeError:
                joint = None
            if joint is not None and joint != outputs.shape:
                raise ValueError(
                    f"the model's outputs (per sample {out_shape}) and the targets (per sample "
                    f"{tgt_shape}) broadcast to {tuple(joint)}: a loss such as mse_loss would "
                    "compare every output with every target. Give targets the outputs' shape "
                    "(e.g. targets.unsqueeze(-1) or targets.reshape(n, -1)) or squeeze the outputs")
        value = loss_fn(outputs, targets[: max(2 * m, 1)])
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"loss_fn must return a tensor (the scalar batch-mean loss), got "
                f"{type(value).__name__}; compute it with torch operations so it has a gradient")
        if value.numel() != 1:
            raise ValueError(
                "loss_fn must return the scalar batch-mean loss, got a tensor of shape "
                f"{tuple(value.shape)}; use reduction='mean'")
        if m >= 1:
            first = loss_fn(model(inputs[:m]), targets[:m])
            second = loss_fn(model(inputs[m: 2 * m]), targets[m: 2 * m])
            halves = 0.5 * (first + second)
            tol = (1e-3 if value.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8)
            scale = float(abs(value)) + float(abs(halves))
            if abs(float(value) - float(halves)) > tol * scale + 1e-30:
                ratio = float(value) / float(halves) if float(halves) != 0 else float("nan")
                raise ValueError(
                    f"loss_fn is not a batch mean: the loss of {2 * m} samples is {float(value):.6g} "
                    f"but the mean of the losses of its two halves is {float(halves):.6g} "
                    f"(ratio {ratio:.3g}; a sum gives 2). The sampler's temperature is nβ·L with L "
                    "the mean loss: use reduction='mean' (a sum multiplies nβ by the batch size)")


def parameter_mask(objective: ModuleObjective, names: Sequence[str]) -> torch.Tensor:
    """Boolean ``(d,)`` mask selecting the named parameters (or every parameter under a prefix).

    ``names`` may list full parameter names (``"layers.0.weight"``) or module prefixes
    (``"layers.0"``). Unknown names raise with the list of valid ones.
    """
    mask = torch.zeros(objective.dim, dtype=torch.bool)
    start = 0
    matched = set()
    for name, numel in zip(objective.names, objective.numels):
        for wanted in names:
            if name == wanted or name.startswith(wanted + "."):
                mask[start : start + numel] = True
                matched.add(wanted)
        start += numel
    unknown = [n for n in names if n not in matched]
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}; the model has {objective.names}")
    return mask


def data_from_loader(loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate a DataLoader's ``(inputs, targets)`` batches once, before sampling."""
    xs, ys = [], []
    for batch in loader:
        if not isinstance(batch, Sequence) or len(batch) != 2:
            raise ValueError("a DataLoader for estimate_llc must yield (inputs, targets) pairs")
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise ValueError("the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` on a GPU, the kernel's
    ``MemAvailable`` (``/proc/meminfo``) or the free physical pages on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def _compile_key(params: torch.Tensor) -> tuple:
    # the compiled kernels bake in the shapes, dtype, device and number of threads
    return (tuple(params.shape), params.dtype, params.device, torch.get_num_threads())


def _compile_mode(compile) -> str:
    if compile is None:
        env = os.environ.get("TOYMODELS_COMPILE", "auto").strip().lower()
        modes = {"0": "never", "false": "never", "1": "always", "true": "always", "auto": "auto", "": "auto"}
        if env not in modes:
            raise ValueError(f"TOYMODELS_COMPILE must be 0, 1 or auto, got {env!r}")
        return modes[env]
    if compile is True:
        return "always"
    if compile is False:
        return "never"
    if compile == "auto":
        return "auto"
    raise ValueError(f"compile must be True, False, 'auto' or None, got {compile!r}")


def _estimated_eager_seconds(num_chains: int, batch: int, dim: int) -> float:
    """A deterministic estimate of one eager call: 1 ms of overhead + 2 ns per chain·sample·parameter.

    Calibrated on a two-layer 4→3→4 linear network (1000 chains × 1000 samples × 24 parameters:
    about 46 ms of one core). It only decides when "auto" compiles, so it need not be exact.
    """
    return 1e-3 + 2e-9 * num_chains * batch * dim
