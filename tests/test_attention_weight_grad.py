"""The weights returned by ``need_weights=True`` are differentiable: gradcheck through them, and
the gradient of a loss on them against the formula written out by hand in float64."""

import math

import pytest
import torch

from attnlab import MultiHeadAttention, scaled_dot_product_attention

B, L, S, E, Ev = 2, 3, 4, 5, 3
# the paths that return weights: the explicit kernel (no dropout) and plain autograd (dropout)
PATHS = pytest.mark.parametrize("dropout_p", [0.0, 0.5], ids=["explicit", "dropout"])
MASKS = pytest.mark.parametrize(
    "mask_kind", ["none", "padding", "causal", "float", "dead_row", "float_dead_row"]
)


def make_inputs(mask_kind: str, seed: int = 0):
    """float64 ``q (B, L, E)``, ``k (B, S, E)``, ``v (B, S, Ev)`` needing grad, and a mask."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, n, d, generator=gen, dtype=torch.float64, requires_grad=True)
               for n, d in ((L, E), (S, E), (S, Ev)))
    allowed = torch.ones(B, L, S, dtype=torch.bool)
    allowed[1, :, 2:] = False  # batch 1 is padded: keys 2, 3 are not real
    if mask_kind == "none" or mask_kind == "causal":
        mask = None
    elif mask_kind == "padding":
        mask = allowed[:, :1]  # (B, 1, S)
    elif mask_kind == "dead_row":
        mask = allowed.clone()
        mask[0, 1] = False  # query 1 of batch 0 sees no key
    else:  # a learned additive bias, -inf where blocked
        bias = torch.randn(B, L, S, generator=gen, dtype=torch.float64)
        if mask_kind == "float_dead_row":
            allowed[0, 1] = False
        mask = bias.masked_fill(~allowed, -math.inf).requires_grad_(True)
    return q, k, v, mask


def attend(q, k, v, mask, mask_kind, dropout_p):
    """``(output, weights)``; the dropout draws are the same on every call (for gradcheck)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return tuple(scaled_dot_product_attention(
            q, k, v, mask, dropout_p=dropout_p, is_causal=mask_kind == "causal",
            need_weights=True,
        ))


def reference_weights(q, k, mask, mask_kind):
    """``softmax(q kᵀ · scale + mask)`` by hand; a row with every key masked is all zeros."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, L, E) x (B, E, S)
    if mask_kind == "causal":
        mask = torch.ones(L, S, dtype=torch.bool).tril()  # (L, S)
    if mask is not None and mask.dtype == torch.bool:
        scores = torch.where(mask, scores, -math.inf)  # (B, L, S)
    elif mask is not None:
        scores = scores + mask  # (B, L, S)
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (B, L, 1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)  # (B, L, S)
    return weights.masked_fill(dead, 0.0)


@pytest.mark.parametrize("returns", ["both", "weights"])
@MASKS
@PATHS
def test_gradcheck_through_returned_weights(dropout_p, mask_kind, returns):
    q, k, v, mask = make_inputs(mask_kind)
    grad_mask = mask is not None and mask.requires_grad
    inputs = (q, k, v, mask) if grad_mask else (q, k, v)

    def fn(*args):
        m = args[3] if grad_mask else mask
        out, weights = attend(*args[:3], m, mask_kind, dropout_p)
        return (out, weights) if returns == "both" else weights

    assert attend(q, k, v, mask, mask_kind, dropout_p)[1].requires_grad
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("loss_on", ["weights", "weights_and_output"])
@MASKS
@PATHS
def test_loss_on_weights_equals_hand_written_formula(dropout_p, mask_kind, loss_on):
    q, k, v, mask = make_inputs(mask_kind, seed=1)
    target = torch.rand(B, L, S, dtype=torch.float64)  # e.g. a supervised alignment
    out, weights = attend(q, k, v, mask, mask_kind, dropout_p)
    expected = reference_weights(q, k, mask, mask_kind)
    torch.testing.assert_close(weights, expected)

    wrt = [q, k] + ([mask] if mask is not None and mask.requires_grad else [])
    loss = ((weights - target) ** 2).sum()
    expected_loss = ((expected - target) ** 2).sum()
    if loss_on == "weights_and_output":
        with torch.random.fork_rng():  # the same dropout draws as attend's
            torch.manual_seed(0)
            dropped = torch.nn.functional.dropout(expected, p=dropout_p)  # (B, L, S)
        out_weight = torch.rand(B, L, Ev, dtype=torch.float64)
        torch.testing.assert_close(out, dropped @ v)  # (B, L, S) x (B, S, Ev)
        loss = loss + (out * out_weight).sum()
        expected_loss = expected_loss + (dropped @ v * out_weight).sum()
    grads = torch.autograd.grad(loss, wrt)
    expected_grads = torch.autograd.grad(expected_loss, wrt)
    for got, want in zip(grads, expected_grads, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want)
    if mask_kind in ("dead_row", "float_dead_row"):
        assert torch.all(grads[0][0, 1] == 0)  # the query that sees nothing gets no gradient


def test_weights_need_no_grad_when_inputs_do_not():
    q, k, v, _ = (t.detach() if t is not None else t for t in make_inputs("none"))
    _, weights = scaled_dot_product_attention(q, k, v, need_weights=True)
    assert not weights.requires_grad


@pytest.mark.parametrize("average_weights", [False, True])
def test_multihead_weights_give_parameter_gradients(average_weights):
    torch.manual_seed(0)
    d_model, H = 8, 2
    mha = MultiHeadAttention(d_model, H).double()
    torch.nn.init.normal_(mha.q_proj.bias)
    x = torch.randn(B, L, d_model, dtype=torch.float64)
    pad = torch.tensor([[1, 1, 1], [1, 1, 0]])  # (B, L): the last token of batch 1 is padding
    _, weights = mha(x, attention_mask=pad, need_weights=True, average_weights=average_weights)

    def split(t, d):  # (B, L, H*d) -> (B, H, L, d)
        return t.view(B, L, H, d).transpose(1, 2)

    q, k = split(mha.q_proj(x), mha.d_k), split(mha.k_proj(x), mha.d_k)  # (B, H, L, d_k)
    expected = reference_weights(q, k, pad.bool()[:, None, None, :], "padding")  # (B, H, L, L)
    if average_weights:
        expected = expected.mean(dim=1)  # (B, L, L)
    torch.testing.assert_close(weights, expected)

    target = torch.rand(weights.shape, dtype=torch.float64)
    params = [mha.q_proj.weight, mha.q_proj.bias, mha.k_proj.weight, mha.v_proj.weight]
    grads = torch.autograd.grad((weights * target).sum(), params, allow_unused=True)
    expected_grads = torch.autograd.grad((expected * target).sum(), params, allow_unused=True)
    for got, want in zip(grads[:3], expected_grads[:3], strict=True):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, want)
    assert grads[3] is None or torch.all(grads[3] == 0)  # the weights do not depend on values
