"""Bad input to the mechanism's Python API gets a clear error naming the argument and the
value, never a raw error from deep inside torch or a silent NaN (issue 14, section 6)."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab import MultiHeadAttention, causal_mask, hard_attention, scaled_dot_product_attention


def test_a_float_attention_mask_is_refused_and_points_to_attn_mask():
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    additive = torch.zeros(2, 5)
    additive[:, 3:] = -math.inf  # 0 / -inf: meant as an additive mask, would be read inverted
    with pytest.raises(ValueError, match="attention_mask must hold 0/1.*float32.*attn_mask"):
        mha(x, attention_mask=additive)
    out = mha(x, attention_mask=(additive == 0).long()).output  # the 0/1 form works
    assert torch.isfinite(out).all()


def test_zero_features_or_zero_keys_are_refused():
    q, k, v = torch.randn(2, 3, 0), torch.randn(2, 4, 0), torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match=r"E >= 1 features and S >= 1 keys"):
        scaled_dot_product_attention(q, k, v)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 0, 4), torch.randn(2, 0, 5)
    with pytest.raises(ValueError, match=r"S >= 1 keys.*\(2, 0, 4\)"):
        hard_attention(q, k, v)


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_a_non_finite_scale_is_refused(scale):
    q = torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        scaled_dot_product_attention(q, q, q, scale=scale)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        hard_attention(q, q, q, scale=scale)


@pytest.mark.parametrize("args, kwargs, name", [
    ((True, 1), {}, "d_model"),
    ((8, True), {}, "n_heads"),
    ((8, 2), {"d_k": 2.5}, "d_k"),
    ((8, 2), {"d_v": 0}, "d_v"),
    ((8, 2), {"kdim": -3}, "kdim"),
])
def test_multi_head_sizes_must_be_positive_integers(args, kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        MultiHeadAttention(*args, **kwargs)


@pytest.mark.parametrize("lengths", [(-1,), (3, -2), (2.5,), (True,)])
def test_causal_mask_lengths_must_be_non_negative_integers(lengths):
    with pytest.raises(ValueError, match="_len must be an integer >= 0"):
        causal_mask(*lengths)
    assert causal_mask(0).shape == (0, 0)
