"""scaled_dot_product_attention against independent references: PyTorch's fused kernel, the
formula in float64, gradcheck, hand-computed values and random shapes (hypothesis)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import AttentionOutput, causal_mask, scaled_dot_product_attention
from attnlab.attention import attention

PATHS = pytest.mark.parametrize("need_weights", [False, True], ids=["fused", "explicit"])


def reference(q, k, v, mask=None, scale=None):
    """The formula, in float64, with fully masked rows set to zero."""
    q, k, v = q.double(), k.double(), v.double()
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else (
            scores + mask.double())
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v, weights


def qkv(*batch, L=5, S=7, E=4, Ev=3, dtype=torch.float32, grad=False):
    make = lambda *s: torch.randn(*s, dtype=dtype, requires_grad=grad)  # noqa: E731
    return make(*batch, L, E), make(*batch, S, E), make(*batch, S, Ev)


@PATHS
def test_matches_formula_and_torch(need_weights):
    q, k, v = qkv(2, 3)
    out, weights = scaled_dot_product_attention(q, k, v, need_weights=need_weights)
    expected, expected_w = reference(q, k, v)
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights.double(), expected_w, atol=1e-6, rtol=0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    else:
        assert weights is None


def test_returns_named_tuple_that_unpacks():
    q, k, v = qkv(1)
    result = scaled_dot_product_attention(q, k, v, need_weights=True)
    assert isinstance(result, AttentionOutput)
    out, weights = result
    assert out is result.output and weights is result.weights
    assert out.shape == (1, 5, 3) and weights.shape == (1, 5, 7)


@pytest.mark.parametrize(
    "mask_shape", [(5, 7), (2, 1, 1, 7), (2, 3, 5, 7), (1, 3, 5, 1), (7,)], ids=str
)
@pytest.mark.parametrize("kind", ["bool", "float"])
@PATHS
def test_masks_broadcast(mask_shape, kind, need_weights):
    q, k, v = qkv(2, 3)
    if kind == "bool":
        mask = torch.rand(mask_shape) > 0.3
    else:
        mask = torch.randn(mask_shape).masked_fill(torch.rand(mask_shape) > 0.7, -math.inf)
    out, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights)
    expected, expected_w = reference(q, k, v, mask)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights.double(), expected_w, atol=1e-6, rtol=0)


@PATHS
def test_causal_alone_and_with_mask(need_weights):
    q, k, v = qkv(2, 3, L=6, S=6)
    pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    pad[1, ..., 4:] = False
    out, _ = scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out.double(), reference(q, k, v, causal_mask(6))[0], atol=1e-6,
                               rtol=0)
    out, w = scaled_dot_product_attention(q, k, v, pad, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out.double(), reference(q, k, v, pad & causal_mask(6))[0],
                               atol=1e-6, rtol=0)
    if need_weights:
        assert torch.all(w[..., torch.ones(6, 6, dtype=torch.bool).triu(1)] == 0)


@pytest.mark.parametrize("kind", ["bool", "float"])
@PATHS
def test_fully_masked_rows_are_zero_without_nan(kind, need_weights):
    q, k, v = qkv(2, L=4, S=5, grad=True)
    allowed = torch.ones(2, 4, 5, dtype=torch.bool)
    allowed[0, 1] = False  # query 1 of batch 0 sees nothing
    mask = allowed if kind == "bool" else torch.zeros(2, 4, 5).masked_fill(~allowed, -math.inf)
    out, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights)
    assert torch.all(out[0, 1] == 0)
    assert not out.isnan().any()
    if need_weights:
        assert torch.all(weights[0, 1] == 0) and not weights.isnan().any()
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.all(q.grad[0, 1] == 0)


@pytest.mark.parametrize("float_mask", [False, True])
@PATHS
def test_gradcheck_float64(need_weights, float_mask):
    q, k, v = qkv(2, L=3, S=4, dtype=torch.float64, grad=True)
    allowed = torch.rand(2, 3, 4) > 0.3
    allowed[0, 0] = False
    mask = allowed
    inputs = (q, k, v)
    if float_mask:  # a learned additive bias also receives a gradient
        mask = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
        inputs = (q, k, v, mask)

    def attend(*args):
        m = args[3] if float_mask else mask
        return scaled_dot_product_attention(*args[:3], m, need_weights=need_weights).output

    assert torch.autograd.gradcheck(attend, inputs)


def test_explicit_gradients_equal_fused():
    q, k, v = qkv(2, 3, L=9, S=11, grad=True)
    mask = torch.rand(2, 1, 9, 11) > 0.2
    grads = []
    for need_weights in (False, True):
        out = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights).output
        grads.append(torch.autograd.grad((out * torch.arange(3.0)).sum(), (q, k, v)))
    for fused, explicit in zip(*grads, strict=True):
        torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [None, 1.0, 0.1])
def test_scale(scale):
    q, k, v = qkv(3)
    out, w = scaled_dot_product_attention(q, k, v, scale=scale, need_weights=True)
    torch.testing.assert_close(out.double(), reference(q, k, v, scale=scale)[0], atol=1e-6, rtol=0)


def test_hand_computed_softmax_row():
    # scores [0.5, 1, 0.2] with no scaling: e^0.2 / (e^0.5 + e^1 + e^0.2) = 0.2186
    q = torch.tensor([[1.0]])
    k = torch.tensor([[0.5], [1.0], [0.2]])
    _, w = scaled_dot_product_attention(q, k, torch.eye(3), scale=1, need_weights=True)
    assert round(w[0, 2].item(), 4) == 0.2186


def test_dropout_keeps_weights_and_zeroes_some_outputs():
    q, k, v = qkv(4, L=16, S=16)
    torch.manual_seed(1)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, need_weights=True)
    torch.testing.assert_close(w.double(), reference(q, k, v)[1], atol=1e-6, rtol=0)
    assert not torch.allclose(out.double(), reference(q, k, v)[0], atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_paths_agree(dtype):
    q, k, v = qkv(2, 4, L=33, S=33, E=16, Ev=16, dtype=dtype)
    fused = scaled_dot_product_attention(q, k, v).output
    explicit, w = scaled_dot_product_attention(q, k, v, need_weights=True)
    assert explicit.dtype == dtype and w.dtype == dtype
    torch.testing.assert_close(explicit.float(), fused.float(), atol=2e-2, rtol=0)


def test_paths_agree_at_benchmark_size():
    # 64 heads of 512 x 512 scores with padding, the size the benchmark times
    q, k, v = qkv(8, 8, L=512, S=512, E=64, Ev=64)
    mask = torch.rand(8, 1, 1, 512) > 0.1
    fused = scaled_dot_product_attention(q, k, v, mask).output
    explicit = scaled_dot_product_attention(q, k, v, mask, need_weights=True).output
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=0)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    L=st.integers(1, 9), S=st.integers(1, 9), E=st.integers(1, 8), Ev=st.integers(1, 8),
    need_weights=st.booleans(), causal=st.booleans(), masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_matches_float64_formula(batch, L, S, E, Ev, need_weights, causal, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, L, E, generator=gen)
    k = torch.randn(*batch, S, E, generator=gen)
    v = torch.randn(*batch, S, Ev, generator=gen)
    mask = torch.rand(*batch, L, S, generator=gen) > 0.4 if masked else None
    out, w = scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
                                          need_weights=need_weights)
    full = mask
    if causal:
        full = causal_mask(L, S) if mask is None else mask & causal_mask(L, S)
    expected, expected_w = reference(q, k, v, full)
    assert out.shape == (*batch, L, Ev)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(w.double(), expected_w, atol=1e-6, rtol=0)
        row_sums = w.sum(-1)
        assert torch.all(((row_sums - 1).abs() < 1e-5) | (row_sums == 0))


# --- bad input: a clear error naming the argument and both shapes or values ---------------

def test_forgotten_transpose_names_key_and_shapes():
    q, k, v = qkv(2, L=5, S=7, E=4)
    with pytest.raises(ValueError, match=r"key's last dim.*\(2, 5, 4\).*\(2, 4, 7\).*transposed"):
        scaled_dot_product_attention(q, k.transpose(-2, -1), v)


def test_value_length_must_match_key():
    q, k, v = qkv(2)
    with pytest.raises(ValueError, match=r"value must have as many rows as key.*\(2, 7, 4\).*"
                                         r"\(2, 6, 3\)"):
        scaled_dot_product_attention(q, k, v[:, :6])


def test_mask_that_does_not_broadcast():
    q, k, v = qkv(2)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(5, 6\).*\(2, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 6, dtype=torch.bool))


def test_mismatched_dtypes():
    q, k, v = qkv(2)
    with pytest.raises(TypeError, match=r"key dtype torch.float64 does not match query dtype "
                                        r"torch.float32"):
        scaled_dot_product_attention(q, k.double(), v)


def test_mismatched_devices():
    q, k, v = qkv(2)
    with pytest.raises(ValueError, match=r"value is on meta but query is on cpu"):
        scaled_dot_product_attention(q, k, v.to("meta"))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(p):
    q, k, v = qkv(2)
    with pytest.raises(ValueError, match=rf"dropout_p must be in \[0, 1\), got {p}"):
        scaled_dot_product_attention(q, k, v, dropout_p=p)


def test_integer_mask_rejected():
    q, k, v = qkv(2)
    with pytest.raises(TypeError, match="attn_mask must be boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7, dtype=torch.long))


@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_the_plain_formula_matches_torch_and_both_paths(mask_kind):
    """``attention`` (ten lines of torch) = torch's kernel = our fused and explicit paths."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(5, 7, generator=g) > 0.3
        mask[:, 0] = True  # every query sees a key: the plain formula is NaN otherwise
    elif mask_kind == "float":
        mask = torch.randn(5, 7, generator=g, dtype=torch.float64)
    out, weights = attention(q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, reference, atol=1e-12, rtol=0)
    fused = scaled_dot_product_attention(q, k, v, mask).output
    explicit = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    torch.testing.assert_close(fused, out, atol=1e-12, rtol=0)
    torch.testing.assert_close(explicit.output, out, atol=1e-12, rtol=0)
    torch.testing.assert_close(explicit.weights, weights, atol=1e-12, rtol=0)


def test_the_plain_formula_by_hand():
    """One query [1, 0] against keys [1, 0] and [0, 1], d_k = 2: scores 1/√2 and 0."""
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, weights = attention(q, k, v)
    w0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    assert weights.tolist()[0] == pytest.approx([w0, 1 - w0], abs=1e-7)
    assert out.item() == pytest.approx(10 * w0 + 20 * (1 - w0), abs=1e-5)
