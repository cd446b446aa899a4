"""Exact rewrites of traced aten graphs, applied before TorchInductor compiles them.

:func:`split_merged_views` removes the flattening that ``vmap``'s loss rules insert. The batching
rule of ``mse_loss`` (and of the other elementwise losses) reshapes a chain's ``(n, k)`` outputs and
targets to ``(n·k,)`` vectors before the elementwise work and the mean, and the backward pass
reshapes the gradient back. A reshape that merges dimensions fixes the memory layout of its input:
the compiler has to store the outputs contiguously in ``(n, k)`` order, with the narrow ``k``
innermost, and cannot keep the sample axis innermost (see
:class:`toymodels.objectives.compiled.CompiledLossAndGrad`). Reshapes commute with elementwise operations,
so the elementwise work can be done on the unflattened tensors and the reductions taken over the
split dimensions instead; this is what the pass does.
"""

from __future__ import annotations

import math

import torch
from torch.fx import GraphModule, Node

__all__ = ["split_merged_views", "sink_transposes"]

aten = torch.ops.aten
_VIEWS = (aten.view.default, aten._unsafe_view.default)
_REDUCTIONS = (aten.sum.dim_IntList, aten.mean.dim)
_FULL_REDUCTIONS = (aten.sum.default, aten.mean.default)


def split_merged_views(graph: GraphModule) -> int:
    """Rewrite, in place, the uses of tensors flattened by a merging reshape; returns how many.

    Let ``v = x.reshape(*p, prod(s))`` merge the trailing dimensions ``s`` of ``x`` (shape
    ``(*p, *s)``). Every tensor ``t`` computed from such flattened tensors by elementwise operations
    has a *twin* ``t.reshape(*p', *s)``, computed by the same elementwise operations from the
    unflattened operands:

    * the twin of ``v`` is ``x`` (a contiguous ``clone`` before the reshape is skipped: it only
      served the reshape);
    * an operand that broadcasts along the merged axis (last dimension 1) gets ``len(s) - 1``
      extra trailing dimensions of size 1, and an ``expand`` of such an operand expands to ``s``;
    * an elementwise operation (``torch.Tag.pointwise``) has a twin when all its tensor operands
      do.

    The *exits* of such a computation are rewritten to read the twin: a reshape back to
    ``(*p', *s)`` becomes the twin itself, a ``sum`` or ``mean`` over the merged last dimension
    becomes the same reduction over the split dimensions, and a full ``sum`` or ``mean`` reduces
    the twin. These are identities (``reshape`` commutes with elementwise operations and a
    reduction over a flattened axis equals the reduction over its factors), so the graph computes
    the same values; anything the pass does not recognise is left as it was. Unused nodes are
    removed afterwards.
    """
    g = graph.graph
    splitters: dict[tuple[int, ...], _Twins] = {}
    for node in g.nodes:
        if node.op == "call_function" and node.target in _VIEWS:
            inner = _merged_suffix(node)
            if inner is not None and math.prod(inner) > 1:
                splitters.setdefault(inner, _Twins(g, inner))
    rewritten = 0
    for exit_ in list(g.nodes):
        if exit_.op != "call_function" or not exit_.args or not isinstance(exit_.args[0], Node):
            continue
        source, source_shape, exit_shape = exit_.args[0], _shape(exit_.args[0]), _shape(exit_)
        if not source_shape or exit_shape is None or _merged_suffix(exit_) is not None:
            continue
        rank = len(source_shape)
        for inner, twins in splitters.items():
            if source_shape[-1] != twins.size:
                continue
            kind = _exit_kind(exit_, rank, exit_shape, source_shape[:-1] + inner)
            twin = twins.of(source) if kind else None
            if twin is None or twin is source:
                continue
            with g.inserting_before(exit_):
                if kind == "split":
                    new = g.call_function(aten.view.default, (twin, list(exit_shape)))
                elif kind == "reduce":
                    new = g.call_function(exit_.target, (twin, list(range(rank - 1, rank - 1 + len(inner)))))
                else:
                    new = g.call_function(exit_.target, (twin,))
            exit_.replace_all_uses_with(new)
            rewritten += 1
            break
    if rewritten:
        g.eliminate_dead_code()
        g.lint()
        graph.recompile()
    return rewritten


class _Twins:
    """Twins (unflattened equivalents) of nodes whose last dimension is ``prod(inner)``."""

    def __init__(self, graph: torch.fx.Graph, inner: tuple[int, ...]):
        self.graph, self.inner, self.size = graph, inner, math.prod(inner)
        self.memo: dict[Node, Node | None] = {}

    def of(self, node: Node) -> Node | None:
        if node not in self.memo:
            self.memo[node] = None  # while computing: a DAG never needs it, but never loop
            self.memo[node] = self._make(node)
        return self.memo[node]

    def _make(self, node: Node) -> Node | None:
        g, extra = self.graph, [1] * (len(self.inner) - 1)
        shape = _shape(node)
        if shape is None:
            return None
        if len(shape) == 0:
            return node  # a scalar broadcasts the same either way
        if node.op == "call_function" and node.target in _VIEWS and _merged_suffix(node) == self.inner:
            return _skip_contiguous_clone(node.args[0])
        if shape[-1] == 1:  # broadcasts along the merged axis: along every split axis too
            with g.inserting_after(node):
                return g.call_function(aten.view.default, (node, list(shape) + extra))
        if shape[-1] != self.size:
            return None
        if node.op == "call_function" and node.target == aten.expand.default:
            base = node.args[0]
            base_shape = _shape(base)
            if base_shape is not None and len(base_shape) == len(shape) and base_shape[-1] == 1:
                with g.inserting_after(node):
                    view = g.call_function(aten.view.default, (base, list(base_shape) + extra))
                with g.inserting_after(view):
                    return g.call_function(aten.expand.default, (view, list(shape[:-1]) + list(self.inner)))
            return None
        if _is_pointwise(node) and not any(isinstance(a, (list, tuple)) for a in node.args):
            args = []
            for a in node.args:
                twin = self.of(a) if isinstance(a, Node) else a
                if twin is None:
                    return None
                args.append(twin)
            with g.inserting_after(node):
                return g.call_function(node.target, tuple(args))
        return None


def sink_transposes(graph: GraphModule) -> int:
    """Move transposes of "long" tensors past elementwise operations, in place; returns how many.

    A *source* is a transpose of the last two dimensions of a tensor ``x`` of shape
    ``(…, a, b)`` with ``b > a`` (the sample axis ``b`` innermost, as
    :class:`toymodels.objectives.compiled.CompiledLossAndGrad` lays out its activations). An elementwise
    operation on such transposes, ``f(xᵀ, y)``, is computed as ``f(x, yᵀ)ᵀ``: the operands are
    transposed instead (a rank-1 operand ``(k,)``, which broadcasts along the last axis, becomes
    ``(k, 1)``; scalars stay), and the one transpose moves to the uses outside such elementwise
    chains. This is an identity (elementwise operations commute with a permutation of axes applied
    to all operands). Two more operations carry the transpose along: a contiguous copy (its twin is
    the operand's twin: the copy only served a layout) and a ``sum``/``mean``/``amax``/``amin`` with
    ``keepdim=True``, which reduces the twin over the swapped axes (the log-softmax of a
    cross-entropy loss). A ``view`` reading the result gets it transposed back as a ``reshape``,
    which copies only if the new strides need it.

    Why: TorchInductor stores an intermediate in the order of its *logical* shape when its reads
    do not decide (a bias read along the narrow axis and an activation read along the samples
    tie), so ``xᵀ + bias`` would be stored with the narrow axis innermost; ``(x + biasᵀ)ᵀ`` is
    stored with the samples innermost.
    """
    g = graph.graph
    removed = _drop_identity_views(g)
    twins: dict[Node, Node] = {}
    sources = 0
    for node in list(g.nodes):
        if _is_long_transpose(node):
            twins[node] = node.args[0]
            sources += 1
            continue
        shape = _shape(node)
        if _is_contiguous_clone(node) and node.args[0] in twins:
            twins[node] = twins[node.args[0]]  # a copy that only served a layout
            continue
        if _keepdim_reduction(node) and node.args[0] in twins:
            rank = len(shape)
            swap = {rank - 1: rank - 2, rank - 2: rank - 1}
            dims = [swap.get(d % rank, d % rank) for d in node.args[1]]
            with g.inserting_before(node):
                twins[node] = g.call_function(node.target, (twins[node.args[0]], dims, True))
            continue
        if (not _is_pointwise(node) or shape is None or len(shape) < 2
                or not any(isinstance(a, Node) and a in twins for a in node.args)
                or any(isinstance(a, (list, tuple)) for a in node.args)):
            continue
        args = []
        for a in node.args:
            if not isinstance(a, Node):
                args.append(a)
            elif a in twins:
                args.append(twins[a])
            else:
                lifted = _transposed(g, a, before=node)
                if lifted is None:
                    break
                args.append(lifted)
        else:
            with g.inserting_before(node):
                twins[node] = g.call_function(node.target, tuple(args))
    moved = 0
    for node, twin in twins.items():
        if node.args and twin is node.args[0] and _is_long_transpose(node):
            continue  # a source: its users outside the chains read it as before
        outside = [u for u in node.users if u not in twins]
        if not outside:
            continue
        with g.inserting_after(twin):
            back = g.call_function(aten.transpose.int, (twin, -1, -2))
        for user in outside:
            user.replace_input_with(node, back)
            if user.target in _VIEWS:
                # the transposed value is not stored as the original was: reshape copies if needed
                user.target = aten.reshape.default
        moved += 1
    if moved or removed or len(twins) > sources:
        g.eliminate_dead_code()
        g.lint()
        graph.recompile()
    return moved


_KEEPDIM_REDUCTIONS = (aten.sum.dim_IntList, aten.mean.dim, aten.amax.default, aten.amin.default)


def _keepdim_reduction(node: Node) -> bool:
    """``sum/mean/amax/amin(x, dims, keepdim=True)`` of a tensor of rank ≥ 2 (the rank is kept)."""
    shape = _shape(node)
    return (node.op == "call_function" and node.target in _KEEPDIM_REDUCTIONS and not node.kwargs
            and len(node.args) == 3 and isinstance(node.args[1], (list, tuple)) and node.args[2] is True
            and shape is not None and len(shape) >= 2)


def _is_contiguous_clone(node: Node) -> bool:
    return (node.op == "call_function" and node.target == aten.clone.default and len(node.args) == 1
            and node.kwargs.get("memory_format", torch.contiguous_format) == torch.contiguous_format)


def _drop_identity_views(g: torch.fx.Graph) -> int:
    """Replace ``view``/``expand`` to a tensor's own shape by the tensor (vmap leaves many)."""
    dropped = 0
    for node in list(g.nodes):
        if (node.op == "call_function" and node.target in (*_VIEWS, aten.expand.default)
                and isinstance(node.args[0], Node) and _shape(node) is not None
                and _shape(node) == _shape(node.args[0])):
            node.replace_all_uses_with(node.args[0])
            dropped += 1
    return dropped


def _is_long_transpose(node: Node) -> bool:
    if node.op != "call_function" or not isinstance(node.args[0] if node.args else None, Node):
        return False
    shape = _shape(node.args[0])
    if shape is None or len(shape) < 2 or shape[-1] <= shape[-2]:
        return False
    r = len(shape)
    if node.target == aten.permute.default:
        return list(node.args[1]) == [*range(r - 2), r - 1, r - 2]
    if node.target == aten.transpose.int:
        return {d % r for d in node.args[1:3]} == {r - 2, r - 1}
    return False


def _transposed(g: torch.fx.Graph, node: Node, *, before: Node) -> Node | None:
    """``node`` with its last two axes swapped, as broadcasting sees them (None: not a tensor)."""
    shape = _shape(node)
    if shape is None:
        return None
    if len(shape) == 0:
        return node
    with g.inserting_before(before):
        if len(shape) == 1:
            return g.call_function(aten.view.default, (node, [shape[0], 1]))
        return g.call_function(aten.transpose.int, (node, -1, -2))


def _exit_kind(node: Node, rank: int, shape: tuple, split_shape: tuple) -> str | None:
    if node.target in _VIEWS and shape == split_shape:
        return "split"
    if (node.target in _REDUCTIONS and len(node.args) == 2 and not node.kwargs
            and len(node.args[1]) == 1 and node.args[1][0] % rank == rank - 1):
        return "reduce"
    if node.target in _FULL_REDUCTIONS and len(node.args) == 1 and not node.kwargs:
        return "full"
    return None


def _shape(node) -> tuple[int, ...] | None:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _merged_suffix(view: Node) -> tuple[int, ...] | None:
    """For a reshape ``(*p, *s) -> (*p, prod(s))`` with ``len(s) >= 2``, the merged shape ``s``."""
    if view.op != "call_function" or view.target not in _VIEWS or not isinstance(view.args[0], Node):
        return None
    src, dst = _shape(view.args[0]), _shape(view)
    if src is None or dst is None or len(dst) < 1 or len(src) <= len(dst):
        return None
    p = len(dst) - 1
    if src[:p] != dst[:p] or math.prod(src[p:]) != dst[-1]:
        return None
    return src[p:]


def _is_pointwise(node: Node) -> bool:
    return (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and torch.Tag.pointwise in node.target.tags and not node.kwargs)


def _skip_contiguous_clone(node):
    while isinstance(node, Node) and _is_contiguous_clone(node):
        node = node.args[0]
    return node
