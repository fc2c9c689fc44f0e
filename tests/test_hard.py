"""Hard attention (argmax) and Gumbel-softmax attention with the straight-through estimator."""

import math

import pytest
import torch

from attnlab.attention import (
    GumbelAttention,
    gumbel_softmax_attention,
    hard_attention,
    scaled_dot_product_attention,
)


def _qkv(B=2, H=3, L=4, S=5, E=8, Ev=6, dtype=torch.float64, requires_grad=False):
    return tuple(torch.randn(B, H, n, e, dtype=dtype, requires_grad=requires_grad)
                 for n, e in ((L, E), (S, E), (S, Ev)))


def _assert_one_hot_rows(weights):
    assert ((weights == 0) | (weights == 1)).all()
    assert (weights.sum(-1) == 1).all()


# ---------------------------------------------------------------- hard_attention


def test_hard_attention_is_one_hot_at_the_manual_argmax():
    q, k, v = _qkv()
    out, w = hard_attention(q, k, v)
    _assert_one_hot_rows(w)
    manual = (q @ k.transpose(-2, -1)).argmax(-1)  # scale does not change the argmax
    assert torch.equal(w.argmax(-1), manual)
    torch.testing.assert_close(out, torch.gather(v, 2, manual[..., None].expand(-1, -1, -1, 6)))


def test_hard_attention_on_hand_example():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    out, w = hard_attention(q, k, v)
    # scores: q0 -> [2, 0, 1], q1 -> [0, 3, 1], q2 -> [2, 3, 2]
    assert w.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert out.tolist() == [[10.0], [20.0], [20.0]]


def test_hard_attention_is_the_low_temperature_limit_of_soft_attention():
    q, k, v = _qkv()
    out, w = hard_attention(q, k, v)
    soft_out, soft_w = scaled_dot_product_attention(q, k, v, scale=1e4, need_weights=True)
    torch.testing.assert_close(soft_w, w, atol=1e-6, rtol=0)
    torch.testing.assert_close(soft_out, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_hard_attention_respects_masks_and_fully_masked_rows_are_zero(mask_kind):
    q, k, v = _qkv(L=3, S=4)
    allowed = torch.tensor([[True, False, True, False],
                            [False, False, False, False],  # nothing to attend to
                            [False, False, False, True]])
    mask = allowed if mask_kind == "bool" else torch.zeros(3, 4).masked_fill(~allowed, -math.inf)
    out, w = hard_attention(q, k, v, mask)
    assert (w[..., ~allowed] == 0).all()
    assert (w[..., 0, :].sum(-1) == 1).all() and (w[..., 2, 3] == 1).all()
    assert (w[..., 1, :] == 0).all() and (out[..., 1, :] == 0).all()
    assert not out.isnan().any()
    manual = (q @ k.transpose(-2, -1)).masked_fill(~allowed, -math.inf)[..., 0, :].argmax(-1)
    assert torch.equal(w[..., 0, :].argmax(-1), manual)


def test_hard_attention_float_mask_can_move_the_argmax():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    v = torch.tensor([[1.0], [2.0]])
    assert hard_attention(q, k, v)[0].item() == 1.0
    assert hard_attention(q, k, v, torch.tensor([[0.0, 1.0]]))[0].item() == 2.0


def test_hard_attention_gradient_reaches_value_only():
    q, k, v = _qkv(requires_grad=True)
    out, w = hard_attention(q, k, v)
    out.sum().backward()
    assert v.grad.abs().sum() > 0
    assert q.grad is None and k.grad is None  # argmax has no gradient
    # dL/dv[s] = number of queries that chose key s
    torch.testing.assert_close(v.grad, w.sum(-2)[..., None].expand_as(v))


def test_hard_attention_rejects_bad_input():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="key's last dim"):
        hard_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="attn_mask"):
        hard_attention(q, k, v, torch.ones(7, 7, dtype=torch.bool))


# ---------------------------------------------------------------- Gumbel-softmax


def test_gumbel_forward_is_one_hot_and_output_is_the_chosen_value():
    q, k, v = _qkv()
    g = torch.Generator().manual_seed(1)
    out, w = gumbel_softmax_attention(q, k, v, temperature=0.7, generator=g)
    _assert_one_hot_rows(w)
    chosen = w.argmax(-1)
    torch.testing.assert_close(out, torch.gather(v, 2, chosen[..., None].expand(-1, -1, -1, 6)))


def test_gumbel_is_reproducible_with_a_generator_and_samples_the_softmax():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    v = torch.eye(3)
    qs, ks, vs = _qkv()

    def soft_weights(seed):
        g = torch.Generator().manual_seed(seed)
        return gumbel_softmax_attention(qs, ks, vs, temperature=1.0, hard=False, generator=g)[1]

    assert torch.equal(soft_weights(3), soft_weights(3))
    assert not torch.allclose(soft_weights(3), soft_weights(4))
    # The Gumbel-max trick: key j is sampled with probability softmax(scores)_j.
    n = 20000
    g = torch.Generator().manual_seed(0)
    _, w = gumbel_softmax_attention(q.expand(n, 1, 2), k, v, temperature=0.5, generator=g,
                                    scale=1.0)
    freq = w.mean(0)[0]
    torch.testing.assert_close(freq, torch.softmax(torch.tensor([1.0, 0.0, -1.0]), -1),
                               atol=0.015, rtol=0)


def test_gumbel_soft_weights_approach_one_hot_as_temperature_goes_to_zero():
    q, k, v = _qkv()
    gaps = []
    for t in (1.0, 0.1, 0.01, 0.001):
        g = torch.Generator().manual_seed(5)
        _, soft = gumbel_softmax_attention(q, k, v, temperature=t, hard=False, generator=g)
        g = torch.Generator().manual_seed(5)
        _, hard = gumbel_softmax_attention(q, k, v, temperature=t, hard=True, generator=g)
        torch.testing.assert_close(soft.sum(-1), torch.ones_like(soft[..., 0]))
        gaps.append((soft - hard).abs().max().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.1 and gaps[-1] < 1e-3


def test_gumbel_straight_through_gradients_reach_q_k_v_and_temperature():
    q, k, v = _qkv(requires_grad=True)
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out, w = gumbel_softmax_attention(q, k, v, temperature=t,
                                      generator=torch.Generator().manual_seed(0))
    _assert_one_hot_rows(w)
    (out * torch.randn_like(out)).sum().backward()
    for name, x in (("q", q), ("k", k), ("v", v), ("temperature", t)):
        assert x.grad is not None and x.grad.abs().sum() > 0, name
        assert x.grad.isfinite().all(), name


def test_gumbel_straight_through_gradient_equals_the_soft_gradient():
    q, k, v = _qkv(requires_grad=True)

    def grads(hard):
        for x in (q, k, v):
            x.grad = None
        out, w = gumbel_softmax_attention(q, k, v, temperature=0.8, hard=hard,
                                          generator=torch.Generator().manual_seed(2))
        # The loss depends on the weights directly, so that the two backward passes match.
        (w * torch.linspace(-1, 1, w.shape[-1], dtype=w.dtype)).sum().backward()
        return [x.grad.clone() for x in (q, k)]

    for hard_grad, soft_grad in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(hard_grad, soft_grad)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_gumbel_respects_masks_without_nan(mask_kind):
    q, k, v = _qkv(L=2, S=4, requires_grad=True)
    allowed = torch.tensor([[False, True, False, True], [False, False, False, False]])
    mask = allowed if mask_kind == "bool" else torch.zeros(2, 4).masked_fill(~allowed, -math.inf)
    for _ in range(5):
        out, w = gumbel_softmax_attention(q, k, v, mask, temperature=1.0)
        assert (w[..., ~allowed] == 0).all()
        assert (w[..., 0, :].sum(-1) == 1).all()
        assert (w[..., 1, :] == 0).all() and (out[..., 1, :] == 0).all()
    out.sum().backward()
    assert all(x.grad.isfinite().all() for x in (q, k, v))


def test_gumbel_attention_module_learns_a_positive_temperature():
    attn = GumbelAttention(temperature=2.0)
    torch.testing.assert_close(attn.temperature, torch.tensor(2.0))
    q, k, v = _qkv(dtype=torch.float32, requires_grad=True)
    out, w = attn(q, k, v, generator=torch.Generator().manual_seed(0))
    _assert_one_hot_rows(w)
    (out * torch.randn_like(out)).sum().backward()
    assert attn.log_temperature.grad is not None and attn.log_temperature.grad != 0
    # A large step down keeps the temperature positive (it is exp of a parameter).
    with torch.no_grad():
        attn.log_temperature -= 50.0
    assert attn.temperature > 0
    # In evaluation mode it is deterministic: plain hard attention.
    attn.eval()
    torch.testing.assert_close(attn(q, k, v).output, hard_attention(q, k, v).output)


def test_gumbel_attention_fixed_temperature_is_a_buffer():
    attn = GumbelAttention(temperature=0.5, learn_temperature=False)
    assert list(attn.parameters()) == [] and "log_temperature" in attn.state_dict()


@pytest.mark.parametrize(
    "temperature, error",
    [(0.0, ValueError), (-1.0, ValueError), (math.inf, ValueError),
     (torch.tensor([1.0, -0.5]), ValueError), ("hot", TypeError)],
)
def test_gumbel_rejects_bad_temperatures(temperature, error):
    q, k, v = _qkv(dtype=torch.float32)
    with pytest.raises(error, match="temperature"):
        gumbel_softmax_attention(q, k, v, temperature=temperature)


def test_gumbel_attention_module_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        GumbelAttention(temperature=0.0)
