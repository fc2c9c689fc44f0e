"""MultiHeadAttention against torch.nn.MultiheadAttention (same weights), plus shapes, masks,
cross-attention and bad input."""

import pytest
import torch
from torch import nn

from attnlab import MultiHeadAttention, scaled_dot_product_attention


def padded(B, S, lengths):
    mask = torch.zeros(B, S, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    return mask  # (B, S) 1 = token


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_equals_torch_multihead_attention(batch_first, causal, need_weights):
    torch_mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    mha = MultiHeadAttention.from_torch(torch_mha).eval()
    x = torch.randn(3, 6, 32)  # (B, T, D)
    attention_mask = padded(3, 6, [6, 4, 2])
    blocked = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None  # torch: True = block
    x_torch = x if batch_first else x.transpose(0, 1)
    with torch.no_grad():
        expected, expected_w = torch_mha(
            x_torch, x_torch, x_torch, key_padding_mask=attention_mask == 0, attn_mask=blocked,
            need_weights=True, average_attn_weights=False,
        )
        out, weights = mha(x, attention_mask=attention_mask, is_causal=causal,
                           need_weights=need_weights)
    expected = expected if batch_first else expected.transpose(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, expected_w, atol=1e-5, rtol=0)


def test_cross_attention_with_other_kdim_vdim_equals_torch():
    torch_mha = nn.MultiheadAttention(16, 2, kdim=10, vdim=6, batch_first=True).eval()
    mha = MultiHeadAttention.from_torch(torch_mha).eval()
    query, key, value = torch.randn(2, 3, 16), torch.randn(2, 7, 10), torch.randn(2, 7, 6)
    key_mask = padded(2, 7, [7, 5])
    with torch.no_grad():
        expected, expected_w = torch_mha(query, key, value, key_padding_mask=key_mask == 0,
                                         average_attn_weights=True)
        out, weights = mha(query, key, value, attention_mask=key_mask, need_weights=True,
                           average_weights=True)
    assert out.shape == (2, 3, 16) and weights.shape == (2, 3, 7)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, expected_w, atol=1e-5, rtol=0)


def test_gradients_equal_torch():
    torch_mha = nn.MultiheadAttention(24, 3, batch_first=True)
    mha = MultiHeadAttention.from_torch(torch_mha)
    x = torch.randn(2, 5, 24)
    torch_mha(x, x, x, need_weights=False)[0].square().sum().backward()
    mha(x).output.square().sum().backward()
    g_q, g_k, g_v = torch_mha.in_proj_weight.grad.chunk(3)
    pairs = ((mha.q_proj, g_q), (mha.k_proj, g_k), (mha.v_proj, g_v),
             (mha.out_proj, torch_mha.out_proj.weight.grad))
    for proj, expected in pairs:
        torch.testing.assert_close(proj.weight.grad, expected, atol=1e-5, rtol=0)


def test_example_shapes_from_the_notes():
    mha = MultiHeadAttention(64, 8)
    out, weights = mha(torch.randn(4, 10, 64), need_weights=True)
    assert out.shape == (4, 10, 64)
    assert weights.shape == (4, 8, 10, 10)


def test_per_head_d_k_d_v_and_cross_lengths():
    mha = MultiHeadAttention(20, 3, d_k=5, d_v=7)  # 20 is not divisible by 3: fine with d_k/d_v
    out, weights = mha(torch.randn(2, 4, 20), torch.randn(2, 9, 20), need_weights=True)
    assert out.shape == (2, 4, 20) and weights.shape == (2, 3, 4, 9)
    assert mha.q_proj.out_features == 15 and mha.v_proj.out_features == 21


def test_is_the_composition_of_its_steps():
    """Project, split into heads, attend per head, concatenate, project back — by hand."""
    mha = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, 5, 12)
    heads = []
    for h in range(3):
        rows = slice(4 * h, 4 * h + 4)
        q = x @ mha.q_proj.weight[rows].T + mha.q_proj.bias[rows]  # (B, T, d_k)
        k = x @ mha.k_proj.weight[rows].T + mha.k_proj.bias[rows]
        v = x @ mha.v_proj.weight[rows].T + mha.v_proj.bias[rows]
        heads.append(torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1) @ v)  # sqrt(d_k) = 2
    expected = mha.out_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(mha(x).output, expected, atol=1e-6, rtol=0)


def test_one_head_equals_plain_attention_of_projections():
    mha = MultiHeadAttention(8, 1).eval()
    x = torch.randn(3, 4, 8)
    q, k, v = mha.q_proj(x), mha.k_proj(x), mha.v_proj(x)
    expected = mha.out_proj(scaled_dot_product_attention(q, k, v).output)
    torch.testing.assert_close(mha(x).output, expected, atol=1e-6, rtol=0)


def test_padding_does_not_change_real_tokens():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(1, 5, 16)
    longer = torch.cat([x, torch.randn(1, 3, 16)], dim=1)
    out = mha(x).output
    out_padded = mha(longer, attention_mask=padded(1, 8, [5])).output
    torch.testing.assert_close(out_padded[:, :5], out, atol=1e-6, rtol=0)


def test_head_mask_removes_heads():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    gate = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = mha(x, head_mask=gate).output
    zeroed = mha.out_proj.weight.detach().clone()
    zeroed[:, 4:8] = 0  # head 1's slice of the output projection
    _, weights = mha(x, need_weights=True)
    v = mha.v_proj(x).view(2, 5, 4, 4).transpose(1, 2)  # (B, H, T, d_v)
    concat = (weights @ v).transpose(1, 2).reshape(2, 5, 16)
    expected = concat @ zeroed.T + mha.out_proj.bias
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    per_example = mha(x, head_mask=gate.expand(2, 4)).output
    torch.testing.assert_close(per_example, out)


def test_unbatched_input():
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(5, 8)
    out, weights = mha(x, need_weights=True)
    batched, batched_w = mha(x[None], need_weights=True)
    assert out.shape == (5, 8) and weights.shape == (2, 5, 5)
    torch.testing.assert_close(out, batched[0])


def test_hook_point_sees_weights_only_when_hooked():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    seen = []
    handle = mha.hook_pattern.register_forward_hook(lambda m, args, out: seen.append(out))
    try:
        out, weights = mha(x)
        assert weights is None  # the caller did not ask for them
        with mha.hook_pattern.observe([3]):
            mha(x)
    finally:
        handle.remove()
    _, expected = mha(x, need_weights=True)
    torch.testing.assert_close(seen[0], expected)
    torch.testing.assert_close(seen[1], expected[:, [3]])
    assert not mha.hook_pattern.active


def test_head_output_hook_point_replaces_the_per_head_outputs():
    mha = MultiHeadAttention(16, 4, d_v=3).eval()
    x = torch.randn(2, 5, 16)
    seen = []

    def zero_head_1(point, args, out):
        seen.append(out.shape)
        out = out.clone()
        out[:, 1] = 0
        return out

    with mha.hook_head_output.observe(hook=zero_head_1):
        assert mha.hook_head_output.active and not mha.hook_pattern.active
        out = mha(x).output
    assert seen == [(2, 4, 5, 3)]  # (B, H, L, d_v)
    torch.testing.assert_close(out, mha(x, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0])).output)
    assert not mha.hook_head_output.active and not mha.hook_head_output._forward_hooks


def test_hook_point_heads_are_read_only():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(AttributeError):
        mha.hook_pattern.heads = [1]
    assert mha.hook_pattern.heads is None


# --- bad input ---------------------------------------------------------------------------

def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model=10, n_heads=3"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("n_heads", [0, -2])
def test_n_heads_below_one(n_heads):
    with pytest.raises(ValueError, match=rf"n_heads must be an integer >= 1, got {n_heads}"):
        MultiHeadAttention(8, n_heads)


def test_dropout_out_of_range():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MultiHeadAttention(8, 2, dropout=1.0)


def test_wrong_query_width():
    with pytest.raises(ValueError, match=r"query must have shape \(B, len, 8\), got \(2, 3, 6\)"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 6))


def test_key_value_length_mismatch():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"key .*\(2, 4, 8\).*value .*\(2, 5, 8\)"):
        mha(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))


def test_attention_mask_shape():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(B, S\) = \(2, 3\).*"
                                         r"got \(2, 4\)"):
        mha(torch.randn(2, 3, 8), attention_mask=torch.ones(2, 4))


def test_attn_mask_that_does_not_broadcast():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\)"):
        mha(torch.randn(2, 3, 8), attn_mask=torch.ones(4, 4, dtype=torch.bool))


def test_head_mask_shape():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"head_mask must have shape \(H,\) = \(2,\)"):
        mha(torch.randn(2, 3, 8), head_mask=torch.ones(3))
