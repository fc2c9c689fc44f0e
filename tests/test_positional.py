"""Positional encodings: sinusoids, learned positions, RoPE and ALiBi, alone and inside
MultiHeadAttention."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.attention import (
    ALiBi,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    scaled_dot_product_attention,
)

# ---------------------------------------------------------------- sinusoidal


def test_sinusoid_hand_computed_values():
    pe = SinusoidalPositionalEncoding(4, max_len=8)
    out = pe(torch.zeros(1, 3, 4, dtype=torch.float64))[0]
    # PE[pos] = [sin(pos), cos(pos), sin(pos/100), cos(pos/100)] for D=4 (10000^(2/4) = 100)
    for pos in range(3):
        expected = [math.sin(pos), math.cos(pos), math.sin(pos / 100), math.cos(pos / 100)]
        torch.testing.assert_close(out[pos], torch.tensor(expected, dtype=torch.float64),
                                   atol=1e-7, rtol=0)
    assert out[0].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_sinusoid_odd_d_model_and_offset():
    pe = SinusoidalPositionalEncoding(5, max_len=16)
    x = torch.randn(2, 4, 5)
    out = pe(x, offset=3)
    delta = out - x
    # D=5: columns sin(p), cos(p), sin(p/10000^(2/5)), cos(...), sin(p/10000^(4/5))
    p = 4.0  # row 1 with offset 3
    expected = [math.sin(p), math.cos(p), math.sin(p / 10000 ** 0.4), math.cos(p / 10000 ** 0.4),
                math.sin(p / 10000 ** 0.8)]
    torch.testing.assert_close(delta[:, 1], torch.tensor([expected] * 2), atol=1e-6, rtol=0)
    assert "pe" not in pe.state_dict()


def test_sinusoid_is_the_same_for_every_batch_element_and_adds_to_x():
    pe = SinusoidalPositionalEncoding(8, max_len=32)
    x = torch.randn(3, 7, 8)
    delta = pe(x) - x
    torch.testing.assert_close(delta[0], delta[2])
    torch.testing.assert_close(pe(x[0]), x[0] + delta[0])  # unbatched (T, D)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: SinusoidalPositionalEncoding(8, max_len=4)(torch.zeros(1, 5, 8)), "max_len=4"),
        (lambda: SinusoidalPositionalEncoding(8, max_len=8)(torch.zeros(1, 5, 8), offset=4),
         "max_len=8"),
        (lambda: SinusoidalPositionalEncoding(8)(torch.zeros(1, 5, 6)), r"\(B, T, 8\)"),
        (lambda: SinusoidalPositionalEncoding(0), "d_model"),
        (lambda: SinusoidalPositionalEncoding(8, dropout=1.0), "dropout"),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(2, 5, 8)), "max_len=4"),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(2, 3, 7)), r"\(B, T, 8\)"),
    ],
)
def test_absolute_encodings_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- learned


def test_learned_embedding_adds_the_row_of_each_position():
    emb = LearnedPositionalEmbedding(10, 6)
    x = torch.randn(2, 4, 6)
    out = emb(x, offset=2)
    torch.testing.assert_close(out - x, emb.embedding.weight[2:6].expand(2, 4, 6))
    out.sum().backward()
    grad = emb.embedding.weight.grad
    assert grad[2:6].abs().sum() > 0 and grad[:2].abs().sum() == 0 and grad[6:].abs().sum() == 0


# ---------------------------------------------------------------- absolute encodings + MHA


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_absolute_encoding_with_multihead_attention_end_to_end(encoding):
    d_model, T = 16, 6
    enc = (SinusoidalPositionalEncoding(d_model, max_len=32) if encoding == "sinusoidal"
           else LearnedPositionalEmbedding(32, d_model))
    mha = MultiHeadAttention(d_model, 4)
    x = torch.randn(2, T, d_model, requires_grad=True)
    out, w = mha(enc(x), need_weights=True)
    assert out.shape == (2, T, d_model) and w.shape == (2, 4, T, T)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert mha.q_proj.weight.grad.abs().sum() > 0
    if encoding == "learned":
        assert enc.embedding.weight.grad[:T].abs().sum() > 0
    # Without positions, attention is permutation-equivariant; with them it is not.
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        plain, permuted = mha(x)[0], mha(x[:, perm])[0]
        torch.testing.assert_close(permuted, plain[:, perm], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(mha(enc(x[:, perm]))[0], mha(enc(x))[0][:, perm], atol=1e-3)


# ---------------------------------------------------------------- rotary


def _rope_reference(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0):
    """RoPE in its complex form: ``z_i = x_i + i·x_{i+d/2}`` times ``e^{i·m·θ_i}`` (float64)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double())
    turn = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64),
                       positions.double()[:, None] * theta)
    z = z * turn
    return torch.cat([z.real, z.imag], dim=-1)


def test_rope_matches_complex_reference_and_hand_values():
    rope = RotaryEmbedding(8, max_len=64)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(rope.rotate(x, offset=7), _rope_reference(x, torch.arange(7, 12)),
                               atol=1e-6, rtol=1e-6)
    # d_k=2: the single plane turns by m radians, so (1, 0) at position m is (cos m, sin m).
    rope2 = RotaryEmbedding(2, max_len=8)
    v = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    expected = torch.tensor([[math.cos(m), math.sin(m)] for m in range(4)], dtype=torch.float64)
    torch.testing.assert_close(rope2.rotate(v), expected, atol=1e-7, rtol=0)


def test_rope_scores_depend_only_on_relative_position_and_norms_are_kept():
    rope = RotaryEmbedding(16, max_len=256)
    q = torch.randn(1, 2, 1, 16, dtype=torch.float64)
    k = torch.randn(1, 2, 1, 16, dtype=torch.float64)
    scores = []
    for m, n in [(5, 2), (8, 5), (103, 100), (3, 0)]:  # m - n = 3 each time
        q_rot, k_rot = rope(q, k, q_offset=m, k_offset=n)
        scores.append((q_rot * k_rot).sum(-1))
        torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))
        torch.testing.assert_close(k_rot.norm(dim=-1), k.norm(dim=-1))
    for s in scores[1:]:
        torch.testing.assert_close(s, scores[0], atol=1e-5, rtol=1e-5)
    # ...and a different distance gives a different score.
    q_rot, k_rot = rope(q, k, q_offset=7, k_offset=2)
    assert not torch.allclose((q_rot * k_rot).sum(-1), scores[0], atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(0, 300),
       seed=st.integers(0, 2**31 - 1))
def test_rope_relative_position_property(m, n, shift, seed):
    rope = RotaryEmbedding(8, max_len=512)
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 8, generator=g, dtype=torch.float64)

    def score(a, b):
        return (rope.rotate(q, a) * rope.rotate(k, b)).sum()

    torch.testing.assert_close(score(m + shift, n + shift), score(m, n), atol=1e-5, rtol=1e-5)


def test_rope_in_multihead_attention_end_to_end():
    d_model, H = 32, 4
    rope = RotaryEmbedding(d_model // H, max_len=64)
    mha = MultiHeadAttention(d_model, H, rotary=rope)
    x = torch.randn(2, 6, d_model, requires_grad=True)
    out, w = mha(x, need_weights=True, is_causal=True)
    assert out.shape == (2, 6, d_model) and w.shape == (2, H, 6, 6)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0 and mha.k_proj.weight.grad.abs().sum() > 0
    # Rotary changes the weights compared with no positions at all.
    plain = MultiHeadAttention(d_model, H)
    plain.load_state_dict(mha.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(x, need_weights=True)[1], w, atol=1e-4)


def test_rope_rejects_bad_input():
    with pytest.raises(ValueError, match="d_k must be even"):
        RotaryEmbedding(7)
    rope = RotaryEmbedding(8, max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        rope(torch.zeros(1, 1, 5, 8), torch.zeros(1, 1, 5, 8))
    with pytest.raises(ValueError, match=r"d_k=8"):
        rope(torch.zeros(1, 1, 3, 6), torch.zeros(1, 1, 3, 6))
    with pytest.raises(ValueError, match="base"):
        RotaryEmbedding(8, base=1.0)


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_match_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)]))
    # H=4 starts at 2^(-8/4) = 1/4.
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]))
    # Not a power of 2, H=12: the 8-head slopes, then every other one of 16 heads
    # (2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5).
    expected = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(4)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))
    torch.testing.assert_close(alibi_slopes(1), torch.tensor([2.0 ** -8]))


@pytest.mark.parametrize("causal", [False, True])
def test_alibi_bias_is_minus_slope_times_distance(causal):
    H, L, S = 3, 4, 6
    bias = alibi_bias(H, L, S, causal=causal)
    slopes = alibi_slopes(H)
    assert bias.shape == (H, L, S)
    for h in range(H):
        for i in range(L):
            for j in range(S):
                expected = float("-inf") if causal and j > i else -slopes[h].item() * abs(i - j)
                assert bias[h, i, j].item() == pytest.approx(expected)


@pytest.mark.parametrize("need_weights", [False, True])
def test_alibi_as_attn_mask_equals_manual_attention(need_weights):
    B, H, L, d = 2, 4, 5, 8
    q, k, v = (torch.randn(B, H, L, d, dtype=torch.float64) for _ in range(3))
    bias = alibi_bias(H, L, causal=True, dtype=torch.float64)
    out, _ = scaled_dot_product_attention(q, k, v, bias, need_weights=need_weights)
    # Manual: scores minus slope·distance, the future blocked, softmax, times V.
    slopes = alibi_slopes(H).double()
    i, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) - slopes[:, None, None] * (i - j).abs()
    scores = scores.masked_fill(j > i, float("-inf"))
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ v)


@pytest.mark.parametrize("need_weights", [False, True])
def test_alibi_module_with_multihead_attention_and_learned_slopes(need_weights):
    H, d_model = 4, 16
    mha, alibi = MultiHeadAttention(d_model, H), ALiBi(H, causal=True, learn_slopes=True)
    x = torch.randn(2, 5, d_model, requires_grad=True)
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out, w = mha(x, attn_mask=alibi(5), attention_mask=pad, need_weights=need_weights)
    assert out.shape == (2, 5, d_model)
    out.square().sum().backward()
    assert alibi.slopes.grad is not None and alibi.slopes.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    if need_weights:
        assert (w[1, :, :, 3:] == 0).all()  # padding respected
        assert (w.triu(1) == 0).all()  # and causality


def test_alibi_rejects_bad_input():
    with pytest.raises(ValueError, match="n_heads"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match="query_len"):
        alibi_bias(4, 0)
    with pytest.raises(ValueError, match="slopes must be a 1-D"):
        alibi_bias(torch.ones(2, 2), 3)


def test_sinusoidal_scale_multiplies_the_table():
    from attnlab.attention.positional import sinusoid_table

    pe = SinusoidalPositionalEncoding(8, max_len=16, scale=0.5)
    torch.testing.assert_close(pe.pe, 0.5 * sinusoid_table(16, 8))
    with pytest.raises(ValueError, match="scale must be > 0, got 0"):
        SinusoidalPositionalEncoding(8, scale=0)
