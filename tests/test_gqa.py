"""Grouped-query and multi-query attention (``MultiHeadAttention(..., n_kv_heads=G)``) against
a float64 oracle written here, against ``F.scaled_dot_product_attention(enable_gqa=True)``, and
through the cache, capture, ``explain_head`` and pruning.

Legend: ``B`` batch, ``H`` query heads, ``G`` key/value heads, ``L`` query length, ``S`` key
length, ``d`` size per head.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab import MultiHeadAttention, scaled_dot_product_attention
from attnlab.attention.multihead import KVCache
from attnlab.attention.positional import RotaryEmbedding
from attnlab.inspect import capture
from attnlab.inspect.neuron import explain_head
from attnlab.inspect.protocol import HeadPass
from attnlab.inspect.pruning import prune_heads
from attnlab.models.transformer_decoder import DecoderCache, TransformerDecoder

B, L, D, H, DK = 3, 5, 16, 4, 4
MASKS = ["none", "padding", "causal", "padding+causal", "additive", "boolean"]


def rope(x: torch.Tensor) -> torch.Tensor:
    """Rotary positions by hand: dims ``i`` and ``i + d/2`` turned by ``m · 10000^(-2i/d)``."""
    T, d = x.shape[-2:]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)  # (..., T, d)


def oracle(mha: MultiHeadAttention, x: torch.Tensor, bias: torch.Tensor | None,
           rotary: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention in float64 by hand: project, repeat each key/value head for its H/G query
    heads, ``softmax(q kᵀ/√d_k + bias) v``, concatenate, project. ``bias`` is additive."""
    W = {name: p.detach().double() for name, p in mha.state_dict().items()}
    x = x.double()
    Bx, Lx, _ = x.shape
    Hq, G, d = mha.n_heads, mha.n_kv_heads, mha.d_k

    def project(name: str, heads: int) -> torch.Tensor:
        y = x @ W[f"{name}.weight"].T + W[f"{name}.bias"]  # (B, L, heads*d)
        return y.view(Bx, Lx, heads, d).transpose(1, 2)  # (B, heads, L, d)

    q, k, v = project("q_proj", Hq), project("k_proj", G), project("v_proj", G)
    if rotary:
        q, k = rope(q), rope(k)
    kv_of = [h // (Hq // G) for h in range(Hq)]  # query head h reads key/value head h // (H/G)
    k, v = k[:, kv_of], v[:, kv_of]  # (B, H, S, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, L, S)
    if bias is not None:
        scores = scores + bias.double()
    weights = torch.softmax(scores, dim=-1)  # (B, H, L, S)
    heads = (weights @ v).transpose(1, 2).reshape(Bx, Lx, Hq * d)  # (B, L, H*d)
    return heads @ W["out_proj.weight"].T + W["out_proj.bias"], weights


def mask_case(kind: str, generator: torch.Generator) -> tuple[dict, torch.Tensor | None]:
    """The module's keyword arguments for ``kind`` and the same mask as an additive bias."""
    blocked = torch.full((), float("-inf"), dtype=torch.float64)
    kwargs, bias = {}, None
    if "padding" in kind:
        pad = torch.ones(B, L, dtype=torch.long)
        pad[1, 3:], pad[2, 4:] = 0, 0
        kwargs["attention_mask"] = pad
        bias = torch.where(pad.bool(), 0.0, blocked)[:, None, None, :]  # (B, 1, 1, S)
    if "causal" in kind:
        kwargs["is_causal"] = True
        future = torch.ones(L, L, dtype=torch.bool).triu(1)
        causal = torch.where(future, blocked, 0.0)  # (L, S)
        bias = causal if bias is None else bias + causal
    if kind == "additive":  # one bias per query head, e.g. ALiBi
        kwargs["attn_mask"] = torch.randn(H, L, L, generator=generator, dtype=torch.float64)
        bias = kwargs["attn_mask"]
    if kind == "boolean":
        allowed = torch.rand(B, 1, L, L, generator=generator) > 0.4
        allowed |= torch.eye(L, dtype=torch.bool)  # every query sees a key
        kwargs["attn_mask"] = allowed
        bias = torch.where(allowed, 0.0, blocked)
    return kwargs, bias


def rotary64() -> RotaryEmbedding:
    """Rotary embeddings with float64 tables (they are built in the default dtype)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return RotaryEmbedding(DK)
    finally:
        torch.set_default_dtype(default)


def make(G: int, dtype=torch.float64, **kwargs) -> MultiHeadAttention:
    mha = MultiHeadAttention(D, H, n_kv_heads=G, **kwargs).to(dtype).eval()
    with torch.no_grad():  # non-zero biases, so that the oracle checks them too
        for p in mha.parameters():
            if p.dim() == 1:
                p.normal_()
    return mha


@pytest.mark.parametrize("G", [1, 2, H])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_outputs_and_weights_equal_the_float64_oracle(G, need_weights, kind, dtype, tol):
    generator = torch.Generator().manual_seed(1)
    mha = make(G, dtype)
    x = torch.randn(B, L, D, generator=generator, dtype=torch.float64)
    kwargs, bias = mask_case(kind, generator)
    if "attn_mask" in kwargs and kwargs["attn_mask"].is_floating_point():
        kwargs["attn_mask"] = kwargs["attn_mask"].to(dtype)
    expected, expected_weights = oracle(mha, x, bias)
    out, weights = mha(x.to(dtype), need_weights=need_weights, **kwargs)
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=0)
    if need_weights:
        assert weights.shape == (B, H, L, L)  # one pattern per query head
        torch.testing.assert_close(weights.double(), expected_weights, atol=tol, rtol=0)


@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize("need_weights", [False, True])
def test_rotary_turns_the_queries_and_the_shared_keys(G, need_weights):
    mha = make(G, rotary=rotary64())
    x = torch.randn(B, L, D, dtype=torch.float64)
    kwargs, bias = mask_case("padding+causal", torch.Generator().manual_seed(2))
    expected, expected_weights = oracle(mha, x, bias, rotary=True)
    out, weights = mha(x, need_weights=need_weights, **kwargs)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=1e-10, rtol=0)


@pytest.mark.parametrize("G", [1, 2, H])
@pytest.mark.parametrize("kind", ["none", "causal", "additive", "boolean"])
def test_functional_equals_torch_sdpa_with_enable_gqa(G, kind):
    q = torch.randn(B, H, L, DK)
    k, v = torch.randn(B, G, L + 1, DK), torch.randn(B, G, L + 1, 3)
    mask = {"none": None, "causal": None, "additive": torch.randn(B, H, L, L + 1),
            "boolean": torch.rand(B, 1, L, L + 1) > 0.3}[kind]
    if kind == "boolean":
        mask[..., 0] = True  # every query sees a key (torch gives NaN otherwise)
    causal = kind == "causal"
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              enable_gqa=True)
    for need_weights in (False, True):
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
                                                    need_weights=need_weights, enable_gqa=True)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert weights.shape == (B, H, L, L + 1)


def test_functional_enable_gqa_checks_the_head_counts():
    q, k = torch.randn(1, 4, 2, 8), torch.randn(1, 3, 2, 8)
    with pytest.raises(ValueError, match=r"enable_gqa.*\(1, 4, 2, 8\).*\(1, 3, 2, 8\)"):
        scaled_dot_product_attention(q, k, k, enable_gqa=True)
    with pytest.raises(ValueError, match="do not broadcast"):  # without enable_gqa
        scaled_dot_product_attention(q, k[:, :2], k[:, :2])


@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize("need_weights", [False, True])
def test_gradcheck_in_float64(G, need_weights):
    mha = MultiHeadAttention(8, 4, n_kv_heads=G).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    pad = torch.tensor([[1, 1, 1], [1, 1, 0]])

    def f(x, *params):
        out, w = torch.func.functional_call(
            mha, dict(zip(names, params, strict=True)),
            (x,), {"attention_mask": pad, "is_causal": True, "need_weights": need_weights})
        return (out, w) if need_weights else out

    names = [n for n, _ in mha.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in mha.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))


def repeated(mha: MultiHeadAttention) -> MultiHeadAttention:
    """The same module as multi-head attention: each key/value head's rows copied per query
    head (what grouped-query attention computes, with H key/value heads)."""
    full = MultiHeadAttention(D, H, dropout=mha.dropout).to(mha.q_proj.weight.dtype)
    r = H // mha.n_kv_heads
    state = mha.state_dict()
    for name in ("k_proj", "v_proj"):
        w, b = state[f"{name}.weight"], state[f"{name}.bias"]
        state[f"{name}.weight"] = w.view(mha.n_kv_heads, DK, D).repeat_interleave(r, 0)
        state[f"{name}.weight"] = state[f"{name}.weight"].reshape(H * DK, D)
        state[f"{name}.bias"] = b.view(mha.n_kv_heads, DK).repeat_interleave(r, 0).flatten()
    full.load_state_dict(state)
    return full


@pytest.mark.parametrize("need_weights", [False, True])
def test_dropout_drops_as_the_repeated_module_does(need_weights):
    mha = make(2, dropout=0.4).train()
    full = repeated(mha).train()
    x = torch.randn(B, L, D, dtype=torch.float64)
    torch.manual_seed(5)
    out, weights = mha(x, is_causal=True, need_weights=need_weights)
    torch.manual_seed(5)
    ref, ref_weights = full(x, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    assert not torch.allclose(out, mha.eval()(x, is_causal=True).output)  # it did drop
    if need_weights:
        torch.testing.assert_close(weights, ref_weights, atol=1e-10, rtol=0)


@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 6, [2, 1, 3]])
def test_cached_decoding_equals_the_full_causal_pass(G, rotary, chunks):
    mha = make(G, rotary=rotary64() if rotary else None)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    pad = torch.ones(2, 6, dtype=torch.long)
    pad[1, 1] = 0
    expected = mha(x, attention_mask=pad, is_causal=True).output
    cache, outputs, start = KVCache(), [], 0
    for size in chunks:
        end = start + size
        outputs.append(mha(x[:, start:end], attention_mask=pad[:, :end], is_causal=True,
                           cache=cache).output)
        start = end
    assert cache.key.shape == (2, G, 6, DK) and cache.value.shape == (2, G, 6, DK)
    torch.testing.assert_close(torch.cat(outputs, dim=1), expected, atol=1e-10, rtol=0)


def test_decoder_cache_holds_the_shared_heads():
    decoder = TransformerDecoder(2, D, H, 32).double().eval()
    for layer in decoder.layers:  # grouped-query self-attention, multi-query cross-attention
        layer.self_attn = make(2, rotary=rotary64())
        layer.cross_attn = make(1)
    x, memory = torch.randn(2, 5, D, dtype=torch.float64), torch.randn(2, 7, D,
                                                                       dtype=torch.float64)
    full = decoder(x, memory)
    cache = DecoderCache.empty(2)
    steps = [decoder(x[:, t:t + 1], memory, cache=cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)
    assert cache.self_attn[0].key.shape == (2, 2, 5, DK)  # H/G = 2 times smaller
    assert cache.cross_attn[0].value.shape == (2, 1, 7, DK)  # H times smaller
    with pytest.raises(ValueError, match="cache holds 2 key/value heads .* n_kv_heads=1"):
        decoder.layers[0].cross_attn(x, cache=cache.self_attn[0])


def test_n_kv_heads_equal_to_n_heads_is_todays_module():
    torch.manual_seed(3)
    today = MultiHeadAttention(D, H, rotary=RotaryEmbedding(DK))
    torch.manual_seed(3)
    same = MultiHeadAttention(D, H, rotary=RotaryEmbedding(DK), n_kv_heads=H)
    assert same.n_kv_heads == H and not same.grouped and repr(same) == repr(today)
    assert {n: p.shape for n, p in same.state_dict().items()} == {
        n: p.shape for n, p in today.state_dict().items()}
    for name, p in today.state_dict().items():
        assert torch.equal(p, same.state_dict()[name]), name
    x, pad = torch.randn(B, L, D), torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0]])
    for need_weights in (False, True):
        a = today(x, attention_mask=pad, is_causal=True, need_weights=need_weights)
        b = same(x, attention_mask=pad, is_causal=True, need_weights=need_weights)
        assert torch.equal(a.output, b.output)
        assert need_weights == (a.weights is not None) and (
            a.weights is None or torch.equal(a.weights, b.weights))


def test_projections_shrink_to_the_shared_heads():
    mha = MultiHeadAttention(D, H, n_kv_heads=1, kdim=12, vdim=10, d_v=3)
    assert mha.k_proj.weight.shape == (DK, 12) and mha.v_proj.weight.shape == (3, 10)
    assert mha.q_proj.weight.shape == (H * DK, D) and mha.out_proj.weight.shape == (D, H * 3)
    assert [mha.kv_head(h) for h in range(H)] == [0] * H
    assert [make(2).kv_head(h) for h in range(H)] == [0, 0, 1, 1]
    assert "n_kv_heads=1" in repr(mha)


@pytest.mark.parametrize("G, message", [
    (3, "n_kv_heads must divide n_heads=4.*got 3"),
    (0, "n_kv_heads must be an integer >= 1 or None, got 0"),
    (2.0, "n_kv_heads must be an integer >= 1 or None, got 2.0"),
    (True, "n_kv_heads must be an integer >= 1 or None, got True"),
    (8, "n_kv_heads must divide n_heads=4.*got 8"),
])
def test_n_kv_heads_is_checked(G, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(D, H, n_kv_heads=G)


class Wrapped(nn.Module):
    """A model holding one causal grouped-query self-attention module."""

    def __init__(self, G: int) -> None:
        super().__init__()
        self.attn = make(G, torch.float32, rotary=RotaryEmbedding(DK))

    def forward(self, x):
        return self.attn(x, is_causal=True).output


@pytest.mark.parametrize("G", [1, 2])
def test_capture_gives_patterns_per_query_head_and_the_shared_keys(G):
    model, x = Wrapped(G), torch.randn(B, L, D)
    weights = model.attn(x, is_causal=True, need_weights=True).weights  # (B, H, L, S)
    with capture(model, vectors=True) as cap:
        model(x)
    assert cap["attn"].shape == (B, H, L, L)
    torch.testing.assert_close(cap["attn"], weights, atol=1e-6, rtol=0)
    assert cap.queries["attn"].shape == (B, H, L, DK)
    assert cap.keys["attn"].shape == cap.values["attn"].shape == (B, G, L, DK)
    assert cap.kv_heads["attn"] == list(range(G)) and cap.groups["attn"] == H // G
    assert cap.per_query_head(cap.keys, "attn").shape == (B, H, L, DK)
    with capture(model, heads=[3, 0], vectors=True) as some:  # heads 3 and 0: groups 1 and 0
        model(x)
    torch.testing.assert_close(some["attn"], weights[:, [3, 0]], atol=1e-6, rtol=0)
    kv = [model.attn.kv_head(3), model.attn.kv_head(0)]
    assert some.kv_heads["attn"] == list(dict.fromkeys(kv))
    for i, h in enumerate([3, 0]):
        row = some.kv_row("attn", h)
        torch.testing.assert_close(some.keys["attn"][:, row], cap.keys["attn"][:, kv[i]])
        torch.testing.assert_close(some.per_query_head(some.values, "attn")[:, i],
                                   cap.values["attn"][:, kv[i]])


@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize("head", [0, 3])
def test_explain_head_recomputes_a_grouped_query_head(G, head):
    model, x = Wrapped(G), torch.randn(1, L, D)
    tokens = [f"t{i}" for i in range(L)]
    run = HeadPass(model=model, name="tiny", stack=["attn"], query_tokens=tokens,
                   key_tokens=tokens, forward=lambda: model(x))
    subject = SimpleNamespace(name="tiny", attention_kinds=("self",),
                              head_pass=lambda text, attention: run)
    seen = {}
    observer = model.attn.hook_head_output.observe(
        hook=lambda _p, inputs, _out: seen.update(heads=inputs[0].detach()))
    try:
        e = explain_head(subject, "t0 t1", layer=0, head=head, token="t3")
    finally:
        observer.release()
    assert e.keys.shape == (L, DK)
    torch.testing.assert_close(e.weights.float(), e.captured_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(e.output.float(), seen["heads"][0, head, 3], atol=1e-6, rtol=0)


def test_pruning_a_grouped_query_module_is_refused():
    mha = make(2)
    with pytest.raises(ValueError, match="cannot prune heads of grouped-query attention"):
        mha.prune_heads([1])
    mha.prune_heads([])  # nothing removed: nothing to refuse
    model = Wrapped(2)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match="cannot prune heads of attn: it is grouped-query"):
        prune_heads(model, {"attn": [0]})
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())
    assert model.attn.n_heads == H
    full = MultiHeadAttention(D, H)
    full.prune_heads([1])  # multi-head attention prunes, and stays multi-head
    assert full.n_heads == full.n_kv_heads == H - 1 and not full.grouped


def test_from_torch_gives_multi_head_attention():
    mha = MultiHeadAttention.from_torch(nn.MultiheadAttention(D, H, batch_first=True))
    assert mha.n_kv_heads == H and not mha.grouped
