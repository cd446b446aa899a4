"""What the sampler sees: a loss of one flat parameter vector, evaluated for many chains at once.

Two ways in, one interface (``Objective``):

* :class:`PotentialObjective` wraps a function ``potential(w) -> scalar`` of one flat vector,
  for instance an exact ``K(w)`` from ``theory/`` written in torch;
* :class:`ModuleObjective` wraps a ``torch.nn.Module`` with data ``(inputs, targets)`` and a
  batch-mean ``loss_fn(outputs, targets)``; the module becomes a function of a flat vector through
  ``torch.func.functional_call``, and the data stay tensors (minibatches are gathered by index,
  never collated by a DataLoader in the inner loop).

Both are lifted to ``(num_chains, d)`` parameters with ``torch.func.vmap``; the per-chain
gradients come from one reverse pass through the sum of the chains' losses (chains do not interact,
so ``∂(Σ_c L_c)/∂w_c = ∇L_c(w_c)``), which is cheaper than ``vmap(grad(·))`` on CPU.

A network's loss and gradient can also be *compiled* (see :class:`ModuleObjective` and
:class:`CompiledLossAndGrad`): the same vmapped loss and its gradient, traced once to a graph of
aten operations and compiled by TorchInductor into fused C++ loops, run over the chains in
cache-sized chunks. It is the same function of the same inputs (agreement with the eager path is
checked on the first call); only the floating-point summation order differs.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from torch.func import functional_call, vmap

from toymodels.checks import as_int
from toymodels.objectives.fx_passes import sink_transposes, split_merged_views

__all__ = [
    "Objective",
    "PotentialObjective",
    "ModuleObjective",
    "CompiledLossAndGrad",
    "parameter_mask",
    "default_nbeta",
    "make_objective",
    "resolve_mask",
    "check_module_contracts",
    "AUTO_COMPILE_AFTER_SECONDS",
]

# "auto" compiles once the eager calls amount to this much estimated work: with compilation
# taking a few seconds (tens on a loaded machine with a cold cache), a run that stops sooner
# never pays for it, and a longer one spends at most a fraction of its time compiling.
AUTO_COMPILE_AFTER_SECONDS = 15.0


class Objective:
    """A loss ``L(w)`` of a flat parameter vector, batched over chains.

    Attributes:
        center: ``(d,)`` the point ``w*`` (the initial parameters).
        num_samples: the dataset size ``n`` for a network, ``None`` for a potential.
    """

    center: torch.Tensor
    num_samples: int | None = None

    @property
    def dim(self) -> int:
        return self.center.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.center.dtype

    def batched_loss(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``(num_chains, d) -> (num_chains,)`` losses (on a fresh minibatch where minibatching)."""
        raise NotImplementedError

    def loss_and_grad(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses ``(num_chains,)`` and gradients ``(num_chains, d)`` at ``params``."""
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            losses = self.batched_loss(p, generator)
            (grad,) = torch.autograd.grad(losses.sum(), p)
        return losses.detach(), grad

    def full_loss(self, params: torch.Tensor) -> torch.Tensor:
        """Losses on the full data, ``(num_chains, d) -> (num_chains,)``, no gradient."""
        raise NotImplementedError


class PotentialObjective(Objective):
    """An exact potential ``L(w)`` given as a torch function of one flat vector.

    ``potential`` must be written for a single ``(d,)`` vector and return a scalar; it is lifted to
    many chains by ``vmap``, so it may not branch on tensor values in Python (use ``torch.where``).
    A potential that also maps a ``(num_chains, d)`` batch to ``(num_chains,)`` by itself can say so
    with the attribute ``potential.batched = True``; it is then called on the batch directly, which
    saves vmap's per-operation overhead (the sampler of a low-dimensional potential is bound by
    that overhead, not by arithmetic).
    """

    def __init__(self, potential: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor):
        if not callable(potential):
            raise TypeError(f"potential must be callable, got {type(potential).__name__}")
        init = _as_flat_vector(init)
        with torch.no_grad():
            value = potential(init.clone())
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.dim() > 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"potential must return a scalar tensor for one flat parameter vector of shape "
                f"({init.numel()},), got {shape}; reduce it to a scalar (e.g. .sum() or .mean())"
            )
        self.potential = potential
        self.center = init
        if getattr(potential, "batched", False):
            self._batched = potential
        else:
            self._batched = vmap(lambda w: potential(w).reshape(()))

    def batched_loss(self, params, generator=None):
        return self._batched(params)

    def full_loss(self, params):
        with torch.no_grad():
            return self._batched(params)


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
            automatically); ``"auto"`` compiles on a CPU once the eager calls so far amount to
            about :data:`AUTO_COMPILE_AFTER_SECONDS` of estimated work (a deterministic count
            of chains × samples × parameters, not a clock, so a seed reproduces a run), so short
            runs never pay the few seconds of compilation; ``True`` compiles at the first call;
            ``False`` never. Any failure to trace or compile, or a result that disagrees with the
            eager path, falls back to the eager path for good; ``compile_status`` says which
            path is in use and why.

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
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters to sample")
        _check_precision(named[0][1].dtype, "the model's parameters")
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.center = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        self.frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
        self.model = model
        self.inputs = inputs
        self.targets = targets
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.num_samples = n

        def loss_one(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, (self.unflatten(w), self.frozen, self.buffers), (x,))
            return self.loss_fn(out, y).reshape(())

        self._full = vmap(loss_one, in_dims=(0, None, None))
        self._mini = vmap(loss_one, in_dims=(0, 0, 0))
        check_module_contracts(model, inputs, targets, loss_fn)
        self.compile_mode = _compile_mode(compile)
        self.compile_status = "eager" if self.compile_mode != "never" else "eager (compile off)"
        self.compile_seconds = 0.0
        self._compiled: dict[tuple, CompiledLossAndGrad | None] = {}
        self._eager_work_seconds = 0.0  # estimated, for the "auto" policy
        self._compile_failed = False

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split one flat vector ``(d,)`` into the module's named parameter tensors (views)."""
        out, start = {}, 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels):
            out[name] = w[start : start + numel].view(shape)
            start += numel
        return out

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

    def loss_and_grad(self, params, generator):
        """Losses ``(num_chains,)`` and gradients ``(num_chains, d)``, eager or compiled.

        Both paths draw the minibatch indices from ``generator`` in the same way, so a seed gives
        the same minibatches whichever path runs.
        """
        compiled = self._compiled_for(params)
        if compiled is None:
            out = super().loss_and_grad(params, generator)
            self._eager_work_seconds += _estimated_eager_seconds(
                params.shape[0], self.batch_size or self.num_samples, self.dim)
            return out
        if self.batch_size is None:
            return compiled(params)
        return compiled(params, *self._minibatch(params.shape[0], generator))

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


def _check_precision(dtype: torch.dtype, what: str) -> None:
    if dtype in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"{what} are {dtype}: a half-precision step loses the noise √ε·ξ to rounding (bfloat16 "
            "keeps 8 bits), so chains freeze or move on a coarse grid and λ̂ comes out 0 or "
            "wrong. Sample in float32 or float64: model.float() / init.float()")


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


def default_nbeta(num_samples: int) -> float:
    """The default inverse temperature times sample size, ``nβ = n / log n`` (β = 1/log n).

    This is the choice of Lau et al. (Watanabe's WBIC temperature). devinterp's default is
    ``b / log b`` with ``b`` the *batch* size, which is a different posterior whenever ``b ≠ n``.
    """
    if num_samples < 2:
        raise ValueError(f"n / log n needs n ≥ 2 samples, got {num_samples}; pass nbeta explicitly")
    return num_samples / math.log(num_samples)


def make_objective(
    target: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor] | Objective,
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    batch_size: int | None = None,
) -> Objective:
    """Build the sampler's :class:`Objective` from a potential or from a network with data.

    An :class:`Objective` passes through unchanged (so a calibration and the run that follows
    share one, with its checks done and any compiled kernels kept).
    """
    if isinstance(target, Objective):
        if init is not None or data is not None or loss_fn is not None or batch_size is not None:
            raise ValueError("an Objective already holds its data, loss and w*: pass it alone")
        return target
    if isinstance(target, torch.nn.Module):
        if init is not None:
            raise ValueError("init is for potentials; a network is sampled around its current parameters")
        if data is None or loss_fn is None:
            raise ValueError("a network needs data=(inputs, targets) and loss_fn=fn(outputs, targets)")
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError(f"data must be (inputs, targets), got a sequence of length {len(data)}")
            inputs, targets = data
        elif isinstance(data, torch.utils.data.DataLoader):
            inputs, targets = data_from_loader(data)
        else:
            raise TypeError(f"data must be (inputs, targets) tensors or a DataLoader, got {type(data).__name__}")
        if batch_size is not None:
            batch_size = as_int("batch_size", batch_size, 1, "None means full batch")
        return ModuleObjective(target, inputs, targets, loss_fn, batch_size=batch_size)
    if callable(target):
        if data is not None or loss_fn is not None:
            raise ValueError("data and loss_fn are for networks; a potential is a function of w alone")
        if batch_size is not None:
            raise ValueError("batch_size is for networks with data; a potential has no minibatches")
        if init is None:
            raise ValueError("a potential needs init=w_star, the flat parameter vector to localize at")
        return PotentialObjective(target, init)
    raise TypeError(f"expected a torch.nn.Module or a potential function, got {type(target).__name__}")


def resolve_mask(objective: Objective, restrict_to) -> torch.Tensor | None:
    """The boolean ``(d,)`` mask of ``restrict_to`` (names or prefixes for a network, or a mask)."""
    if restrict_to is None:
        return None
    if isinstance(restrict_to, torch.Tensor):
        return restrict_to
    if isinstance(objective, ModuleObjective):
        if isinstance(restrict_to, str):
            restrict_to = [restrict_to]
        return parameter_mask(objective, restrict_to)
    raise ValueError("restrict_to by name needs a network; for a potential pass a boolean (d,) mask")


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
        self.inputs = _samples_innermost(objective.inputs) if self.layout == "samples" else objective.inputs
        self.targets = _samples_innermost(objective.targets) if self.layout == "samples" else objective.targets
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
            from torch.fx.experimental.proxy_tensor import make_fx

            # a 2-chain probe measures the largest per-chain activation to size the chunks
            probe_chains = min(num_chains, 2)
            probe = make_fx(loss_and_grad)(*example(probe_chains))
            per_chain = _largest_per_chain_bytes(probe, probe_chains)
            target = max(1, min(num_chains, self.CHUNK_BYTES // max(per_chain, 1)))
            self.num_chunks = math.ceil(num_chains / target)
            self.chunk = math.ceil(num_chains / self.num_chunks)
            table = dict(select_decomp_table())
            table[torch.ops.aten.bmm.default] = (
                _bmm_samples_innermost if self.layout == "samples" else _bmm_for_small_or_shared)
            inputs = example(self.chunk)
            graph = make_fx(loss_and_grad, decomposition_table=table)(*inputs)
            if self.layout == "samples":
                if split_merged_views(graph):
                    graph = make_fx(graph)(*inputs)  # fresh shapes and strides for the next pass
                if sink_transposes(graph):
                    graph = make_fx(graph)(*inputs)
            # one compile thread: no pool of compiler subprocesses on a small machine
            with inductor_config.patch(compile_threads=1):
                self._fn = compile_fx(graph, list(inputs))

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
        out = functional_call(o.model, (o.unflatten(w), o.frozen, o.buffers), (x,))
        return o.loss_fn(out, y).reshape(())


def _bmm_for_small_or_shared(a: torch.Tensor, b: torch.Tensor):
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


def _bmm_samples_innermost(a: torch.Tensor, b: torch.Tensor):
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
        return _bmm_for_small_or_shared(a, b)  # one mm, as in the natural layout
    if k <= small and m >= n:
        # computed as (b_cᵀ a_cᵀ) so that m, the larger (sample) axis, is innermost in memory
        out_t = (b.transpose(1, 2).unsqueeze(-1) * a.transpose(1, 2).unsqueeze(1)).sum(2)
        return out_t.transpose(1, 2)
    if k <= small or (m <= small and n <= small):
        # a small contraction, or a long one (over the samples) into a small matrix: a reduction
        return (a.unsqueeze(-1) * b.unsqueeze(1)).sum(2)
    return NotImplemented


def _samples_innermost(data: torch.Tensor) -> torch.Tensor:
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


def _as_flat_vector(init) -> torch.Tensor:
    if not isinstance(init, torch.Tensor):
        try:
            init = torch.as_tensor(init, dtype=torch.get_default_dtype())
        except Exception as exc:  # noqa: BLE001 - re-raised with advice
            raise TypeError(f"init must be a tensor of parameters, got {type(init).__name__}") from exc
    if init.dim() != 1:
        raise ValueError(
            f"init must be one flat parameter vector of shape (d,), got shape {tuple(init.shape)}; "
            "flatten it with .reshape(-1)"
        )
    if init.numel() == 0:
        raise ValueError("init is empty: the potential needs at least one parameter")
    if not torch.is_floating_point(init):
        init = init.to(torch.get_default_dtype())
    if not torch.isfinite(init).all():
        raise ValueError("init contains non-finite values")
    _check_precision(init.dtype, "init's values")
    return init.detach().clone()
