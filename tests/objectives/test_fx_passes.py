"""The graph rewrites of toymodels.objectives.fx_passes compute the same values, and do rewrite what they claim."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, vmap
from torch._inductor.decomposition import select_decomp_table
from torch.fx.experimental.proxy_tensor import make_fx

from toymodels.objectives.fx_passes import sink_transposes, split_merged_views

# the decompositions CompiledLossAndGrad traces with (losses become elementwise aten operations)
DECOMPOSITIONS = select_decomp_table()

aten = torch.ops.aten


def _run(graph, *args):
    return [t.clone() for t in graph(*args)]


def _merging_views(graph):
    """Views whose output has fewer dimensions than their input (a reshape that merges axes)."""
    out = []
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target in (aten.view.default, aten._unsafe_view.default):
            src = node.args[0].meta["val"]
            if node.meta["val"].dim() < src.dim():
                out.append(node)
    return out


def _vmapped_loss_and_grad(loss_fn):
    """What CompiledLossAndGrad traces: per-chain losses and the gradient of their sum."""

    def one(w, x, y):
        return loss_fn(x * w, y)

    batched = vmap(one, in_dims=(0, None, None))

    def loss_and_grad(w, x, y):
        def total(p):
            losses = batched(p, x, y)
            return losses.sum(), losses

        g, losses = grad(total, has_aux=True)(w)
        return losses, g

    return loss_and_grad


LOSSES = {  # those whose vmap rule flattens
    "mse": F.mse_loss,
    "huber": F.huber_loss,
    "smooth_l1": F.smooth_l1_loss,
}


@settings(max_examples=10, deadline=None)
@given(chains=st.integers(2, 5), samples=st.integers(2, 9), width=st.integers(2, 5),
       loss=st.sampled_from(sorted(LOSSES)), seed=st.integers(0, 2**16))
def test_split_merged_views_is_exact_for_elementwise_losses(chains, samples, width, loss, seed):
    """vmap's loss rules flatten (n, k) to n·k; the pass removes the flattening, values unchanged."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(chains, samples, width, generator=g, dtype=torch.float64)
    x = torch.randn(samples, width, generator=g, dtype=torch.float64)
    y = torch.randn(samples, width, generator=g, dtype=torch.float64)
    graph = make_fx(_vmapped_loss_and_grad(LOSSES[loss]), decomposition_table=DECOMPOSITIONS)(w, x, y)
    before = _run(graph, w, x, y)
    assert _merging_views(graph), "the traced loss should flatten (n, k) (else this test tests nothing)"
    assert split_merged_views(graph) > 0
    graph = make_fx(graph)(w, x, y)  # fresh shapes, as CompiledLossAndGrad does
    assert not _merging_views(graph)
    after = _run(graph, w, x, y)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_split_merged_views_leaves_other_uses_alone():
    """A flattened tensor read by a non-elementwise operation (a cumulative sum) keeps its view."""

    def f(x):
        flat = x.reshape(x.shape[0], -1)
        return flat.cumsum(-1), (flat * 2).sum(-1)

    x = torch.randn(3, 4, 5, dtype=torch.float64)
    graph = make_fx(f)(x)
    before = _run(graph, x)
    assert split_merged_views(graph) == 1  # only the sum: the cumsum still reads the flat view
    assert len(_merging_views(make_fx(graph)(x))) == 1
    for a, b in zip(_run(graph, x), before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sink_transposes_moves_the_transpose_past_bias_activation_and_loss():
    """relu(xᵀ + b) − t with x (chains, k, n), n > k: the elementwise work runs on (chains, k, n)."""

    def f(x, b, t):
        h = torch.relu(x.transpose(1, 2) + b)  # (chains, n, k)
        return ((h - t) ** 2).sum(-1).mean(-1), h

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 50, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    t = torch.randn(50, 4, generator=g, dtype=torch.float64)
    graph = make_fx(f)(x, b, t)
    before = _run(graph, x, b, t)
    assert sink_transposes(graph) > 0
    graph = make_fx(graph)(x, b, t)  # fresh shapes
    elementwise = [n for n in graph.graph.nodes
                   if n.op == "call_function" and n.target in (aten.add.Tensor, aten.relu.default,
                                                               aten.sub.Tensor, aten.pow.Tensor_Scalar)]
    assert elementwise and all(tuple(n.meta["val"].shape) == (3, 4, 50) for n in elementwise)
    for a, b_ in zip(_run(graph, x, b, t), before):
        torch.testing.assert_close(a, b_, rtol=1e-14, atol=1e-15)


def test_sink_transposes_through_a_copy_and_keepdim_reductions():
    """A log-softmax over the short axis of xᵀ (the cross-entropy pattern) runs on (chains, k, n),
    and a flattening view of the result, which needs a contiguous tensor, still traces."""

    def f(x, idx):
        h = x.transpose(1, 2).contiguous()  # (chains, n, k), a copy
        z = h - h.amax(-1, keepdim=True)
        out = z - z.exp().sum(-1, keepdim=True).log()
        return out.gather(2, idx), out.view(out.shape[0], -1)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 40, generator=g, dtype=torch.float64)
    idx = torch.randint(3, (2, 40, 1), generator=g)
    graph = make_fx(f)(x, idx)
    before = _run(graph, x, idx)
    assert sink_transposes(graph) > 0
    graph = make_fx(graph)(x, idx)
    reductions = [n for n in graph.graph.nodes if n.target in (aten.amax.default, aten.sum.dim_IntList)]
    assert reductions and all(tuple(n.args[0].meta["val"].shape) == (2, 3, 40) for n in reductions)
    for a, b in zip(_run(graph, x, idx), before):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_sink_transposes_ignores_transposes_of_wide_tensors():
    """Only (…, a, b) with b > a is a source: a transpose that makes the long axis last is kept."""

    def f(x):
        return torch.tanh(x.transpose(1, 2)) + 1

    x = torch.randn(2, 50, 4, dtype=torch.float64)
    graph = make_fx(f)(x)
    assert sink_transposes(graph) == 0


@pytest.mark.parametrize("shape", [(2, 3), (2, 1, 3)])
def test_split_merged_views_needs_two_merged_axes(shape):
    """A view that merges nothing (same rank) is not a flattening."""

    def f(x):
        return (x.reshape(2, -1) * 3).sum(-1)

    x = torch.randn(shape, dtype=torch.float64)
    graph = make_fx(f)(x)
    before = _run(graph, x)
    split_merged_views(graph)
    for a, b in zip(_run(graph, x), before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
