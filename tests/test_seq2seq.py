"""Seq2SeqTransformer against torch.nn.Transformer (same weights), causality, padding, the
key/value cache (of MultiHeadAttention and of the decoder), the config and bad input."""

import math
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from attnlab.attention.multihead import KVCache, MultiHeadAttention
from attnlab.attention.positional import RotaryEmbedding
from attnlab.models import DecoderCache, Seq2SeqConfig, Seq2SeqTransformer

POSITIONAL = ["sinusoidal", "learned", "rotary"]
V, PAD, BOS = 13, 0, 2
# nn.Transformer warns that pre-norm layers cannot use nested tensors; that is expected here
torch_warning = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def tiny(positional="sinusoidal", **overrides) -> Seq2SeqTransformer:
    options = dict(vocab_size=V, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=2,
                   d_ff=32, dropout=0.0, max_len=32, positional=positional)
    options.update(overrides)
    return Seq2SeqTransformer(Seq2SeqConfig(**options)).eval()


def padded(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)


def batch(S=7, T=5, src_lengths=None, tgt_lengths=None):
    """Source and target ids with right padding (pad id 0); targets start with BOS."""
    src_lengths = src_lengths or [S, S - 2, 3]
    tgt_lengths = tgt_lengths or [T, T - 1, 2]
    mask, tgt_mask = padded(src_lengths, S), padded(tgt_lengths, T)
    src = torch.randint(4, V, (len(src_lengths), S)).masked_fill(mask == 0, PAD)
    tgt = torch.randint(4, V, (len(tgt_lengths), T)).masked_fill(tgt_mask == 0, PAD)
    tgt[:, 0] = BOS
    return src, mask, tgt, tgt_mask


@contextmanager
def default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def sinusoids(T, D):
    """The paper's table, written out here independently of attnlab."""
    pe = torch.zeros(T, D, dtype=torch.float64)
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    for i in range(0, D, 2):
        pe[:, i] = torch.sin(pos[:, 0] / 10000 ** (i / D))
        pe[:, i + 1] = torch.cos(pos[:, 0] / 10000 ** (i / D))
    return pe.to(torch.get_default_dtype())


# --- the reference: torch.nn.Transformer with the same weights ------------------------------

@torch_warning
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("S,T,activation", [(7, 5, "gelu"), (4, 9, "relu")])
def test_equals_torch_transformer(dtype, atol, positions, S, T, activation):
    D, max_len = 16, 32
    with default_dtype(dtype):
        reference = nn.Transformer(D, 2, 2, 3, 40, dropout=0.0, activation=activation,
                                   batch_first=True, norm_first=True).eval()
        embedding = nn.Embedding(V, D)
        if positions == "learned":
            src_pos, tgt_pos = nn.Embedding(max_len, D), nn.Embedding(max_len, D)
            table_src, table_tgt = src_pos.weight, tgt_pos.weight
            model = Seq2SeqTransformer.from_torch(reference, embedding, source_positions=src_pos,
                                                  target_positions=tgt_pos).eval()
        else:
            table_src = table_tgt = sinusoids(max_len, D)
            model = Seq2SeqTransformer.from_torch(reference, embedding, max_len=max_len).eval()
    assert model.config.n_decoder_layers == 3 and model.config.d_ff == 40
    assert model.config.activation == activation
    src, mask, tgt, tgt_mask = batch(S, T, [S, S - 1, 2], [T, T - 2, 1])
    with torch.no_grad():
        x = embedding(src) * math.sqrt(D) + table_src[:S]  # (B, S, D)
        y = embedding(tgt) * math.sqrt(D) + table_tgt[:T]  # (B, T, D)
        blocked = torch.ones(T, T, dtype=torch.bool).triu(1)  # torch: True = blocked
        hidden = reference(x, y, src_key_padding_mask=mask == 0, tgt_key_padding_mask=tgt_mask == 0,
                           memory_key_padding_mask=mask == 0, tgt_mask=blocked, tgt_is_causal=True)
        expected = hidden @ embedding.weight.T  # (B, T, V)
        logits = model(src, mask, tgt, tgt_mask).logits
    assert logits.dtype == dtype and logits.shape == (3, T, V)
    real = tgt_mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=atol, rtol=0)


@torch_warning
def test_from_torch_rejects_what_it_cannot_copy():
    embedding = nn.Embedding(V, 16)
    post_norm = nn.Transformer(16, 2, 1, 1, 32, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="norm_first"):
        Seq2SeqTransformer.from_torch(post_norm, embedding)
    tanh_gelu = nn.Transformer(16, 2, 1, 1, 32, activation=nn.GELU(approximate="tanh"),
                               batch_first=True, norm_first=True)
    with pytest.raises(ValueError, match="ReLU or exact GELU"):
        Seq2SeqTransformer.from_torch(tanh_gelu, embedding)
    gelu = nn.Transformer(16, 2, 1, 1, 32, activation="gelu", batch_first=True, norm_first=True)
    with pytest.raises(ValueError, match="source_positions and target_positions"):
        Seq2SeqTransformer.from_torch(gelu, embedding, source_positions=nn.Embedding(32, 16))


# --- what each position may see -------------------------------------------------------------

@pytest.mark.parametrize("positional", POSITIONAL)
def test_decoder_cannot_see_the_future(positional):
    model = tiny(positional)
    src, mask, tgt, _ = batch(T=6, tgt_lengths=[6, 6, 6])
    with torch.no_grad():
        logits = model(src, mask, tgt).logits
        for t in (1, 3, 5):
            changed = tgt.clone()
            changed[:, t:] = torch.randint(4, V, changed[:, t:].shape)
            other = model(src, mask, changed).logits
            torch.testing.assert_close(other[:, :t], logits[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(other[:, t:], logits[:, t:])


@pytest.mark.parametrize("positional", POSITIONAL)
def test_padding_never_leaks(positional):
    model = tiny(positional)
    src, mask, tgt, tgt_mask = batch()
    with torch.no_grad():
        logits = model(src, mask, tgt, tgt_mask).logits
        noisy_src = torch.where(mask.bool(), src, torch.randint(4, V, src.shape))
        noisy_tgt = torch.where(tgt_mask.bool(), tgt, torch.randint(4, V, tgt.shape))
        other = model(noisy_src, mask, noisy_tgt, tgt_mask).logits
        real = tgt_mask.bool()
        torch.testing.assert_close(other[real], logits[real], atol=1e-6, rtol=0)
        # the shortest sentence alone, without padding, gives the same logits
        alone = model(src[2:, :3], mask[2:, :3], tgt[2:, :2]).logits
    torch.testing.assert_close(alone[0], logits[2, :2], atol=1e-5, rtol=0)


# --- the key/value cache --------------------------------------------------------------------

@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 6, [2, 1, 3], [6]])
def test_kv_cache_equals_full_causal_attention(rotary, chunks):
    mha = MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8) if rotary else None).eval()
    x = torch.randn(3, 6, 16)
    mask = padded([6, 5, 6], 6)
    mask[2, 1] = 0  # a hole inside: keys masked wherever they sit
    expected = mha(x, attention_mask=mask, is_causal=True).output
    cache, outputs, start = KVCache(), [], 0
    for size in chunks:
        end = start + size
        outputs.append(mha(x[:, start:end], attention_mask=mask[:, :end], is_causal=True,
                           cache=cache).output)
        start = end
    assert cache.length == 6 and cache.key.shape == (3, 2, 6, 8)
    torch.testing.assert_close(torch.cat(outputs, dim=1), expected, atol=1e-6, rtol=0)


def test_static_cache_projects_the_memory_once():
    mha = MultiHeadAttention(16, 2, kdim=12, vdim=10).eval()
    query, memory = torch.randn(2, 4, 16), torch.randn(2, 5, 12)
    memory_v = torch.randn(2, 5, 10)
    mask = padded([5, 3], 5)
    expected = mha(query, memory, memory_v, attention_mask=mask).output
    calls = []
    handle = mha.k_proj.register_forward_hook(lambda *_: calls.append(1))
    cache = KVCache(static=True)
    steps = [mha(query[:, t:t + 1], memory if t == 0 else None, memory_v if t == 0 else None,
                 attention_mask=mask, cache=cache).output for t in range(4)]
    handle.remove()
    assert len(calls) == 1 and cache.length == 5
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-6, rtol=0)


def test_cache_reorder_keeps_the_rows_asked_for():
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(3, 4, 16)
    cache = KVCache()
    mha(x[:, :3], is_causal=True, cache=cache)
    cache.reorder(torch.tensor([2, 2, 0]))
    out = mha(x[[2, 2, 0], 3:], is_causal=True, cache=cache).output
    expected = mha(x[[2, 2, 0]], is_causal=True).output[:, 3:]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_cache_errors_name_the_problem():
    rotary = MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8))
    with pytest.raises(ValueError, match="static cache"):
        rotary(torch.randn(1, 1, 16), torch.randn(1, 3, 16), cache=KVCache(static=True))
    mha = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match="static cache"):
        mha(torch.randn(1, 1, 16), is_causal=True, cache=KVCache(static=True))
    with pytest.raises(TypeError, match="KVCache"):
        mha(torch.randn(1, 1, 16), cache={})
    cache = KVCache()
    mha(torch.randn(2, 3, 16), cache=cache)
    with pytest.raises(ValueError, match="batch size 2"):
        mha(torch.randn(3, 1, 16), cache=cache)
    with pytest.raises(ValueError, match=r"\(B, S\) = \(2, 4\).*3 cached"):
        mha(torch.randn(2, 1, 16), attention_mask=torch.ones(2, 1), cache=cache)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("positional", POSITIONAL)
def test_cached_decode_equals_full_forward(positional, norm_first):
    model = tiny(positional, norm_first=norm_first)
    src, mask, tgt, _ = batch(T=7, tgt_lengths=[7, 7, 7])
    with torch.no_grad():
        memory = model.encode(src, mask)
        expected = model.decode(tgt, memory, mask)  # (B, T, V)
        assert torch.equal(expected, model(src, mask, tgt).logits)
        cache, steps, start = model.new_cache(), [], 0
        for size in (2, 1, 1, 3):  # a prefix, single steps, then a chunk after cached ones
            steps.append(model.decode(tgt[:, start:start + size], memory, mask, cache))
            start += size
    assert isinstance(cache, DecoderCache) and cache.length == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=0)


def test_cached_step_shows_its_weights_through_hook_pattern():
    model = tiny("rotary")
    src, mask, tgt, _ = batch(T=4, tgt_lengths=[4, 4, 4])
    layer = model.decoder.layers[1]
    seen = {}

    def recorder(name):
        return lambda _point, _inputs, weights: seen.__setitem__(name, weights)

    observers = [layer.self_attn.hook_pattern.observe(hook=recorder("self")),
                 layer.cross_attn.hook_pattern.observe(hook=recorder("cross"))]
    try:
        with torch.no_grad():
            memory = model.encode(src, mask)
            model.decode(tgt, memory, mask)
            full = dict(seen)
            cache = model.new_cache()
            for t in range(4):
                model.decode(tgt[:, t:t + 1], memory, mask, cache)
    finally:
        for observer in observers:
            observer.release()
    assert seen["self"].shape == (3, 2, 1, 4) and seen["cross"].shape == (3, 2, 1, 7)
    torch.testing.assert_close(seen["self"], full["self"][:, :, 3:], atol=1e-6, rtol=0)
    torch.testing.assert_close(seen["cross"], full["cross"][:, :, 3:], atol=1e-6, rtol=0)
    assert not layer.self_attn.hook_pattern.active


def test_need_weights_on_a_cached_call():
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    cache = KVCache()
    mha(x[:, :4], is_causal=True, cache=cache)
    out, weights = mha(x[:, 4:], is_causal=True, cache=cache, need_weights=True)
    expected, expected_w = mha(x, is_causal=True, need_weights=True)
    assert weights.shape == (2, 2, 1, 5)
    torch.testing.assert_close(weights, expected_w[:, :, 4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(out, expected[:, 4:], atol=1e-6, rtol=0)


# --- the config, the parameters, gradients, bad input ---------------------------------------

def test_config_round_trip_and_help():
    config = Seq2SeqConfig(vocab_size=100, positional="rotary", tie_embeddings=False)
    assert Seq2SeqConfig.from_dict(config.to_dict()) == config
    assert all(f.metadata.get("help") for f in config.__dataclass_fields__.values())
    model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=100, d_model=32, n_heads=2))
    assert model.config_dict() == model.config.to_dict()
    with pytest.raises(ValueError, match="unknown Seq2SeqConfig fields"):
        Seq2SeqConfig.from_dict({"vocab_size": 10, "n_layers": 2})


@pytest.mark.parametrize("bad,field", [
    (dict(vocab_size=0), "vocab_size"),
    (dict(d_model=30, n_heads=4), "d_model must be divisible"),
    (dict(n_decoder_layers=0), "n_decoder_layers"),
    (dict(positional="alibi"), "positional"),
    (dict(positional="rotary", d_model=12, n_heads=4), "rotary"),
    (dict(dropout=1.0), "dropout"),
    (dict(attn_dropout=-0.1), "attn_dropout"),
    (dict(activation="tanh"), "activation"),
    (dict(tie_embeddings=1), "tie_embeddings"),
    (dict(eos_token_id=10), "eos_token_id"),
    (dict(bos_token_id=0), "pad_token_id"),
    (dict(max_len=0), "max_len"),
])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        Seq2SeqConfig(**{"vocab_size": 10, **bad})


def test_untied_embeddings_are_three_matrices():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.target_embedding is None and tied.output_projection is None
    assert untied.num_parameters() - tied.num_parameters() == 2 * V * 16
    src, mask, tgt, tgt_mask = batch()
    assert untied(src, mask, tgt, tgt_mask).logits.shape == (3, 5, V)


def test_gradients_match_finite_differences():
    model = tiny("rotary", d_model=8, n_encoder_layers=1, n_decoder_layers=1, d_ff=8).double()
    src, mask, tgt, tgt_mask = batch(S=3, T=3, src_lengths=[3, 2], tgt_lengths=[3, 2])
    # the padding row is held fixed (padding_idx gives it no gradient, by design)
    pad_row, rows = model.embedding.weight.detach()[:1], model.embedding.weight.detach()[1:]
    rows = rows.clone().requires_grad_()

    def logits(w):
        weight = torch.cat([pad_row, w])  # (V, D)
        return torch.func.functional_call(model, {"embedding.weight": weight},
                                          (src, mask, tgt, tgt_mask)).logits

    assert torch.autograd.gradcheck(logits, (rows,), eps=1e-6, atol=1e-6)


def test_bad_input_names_the_argument():
    model = tiny(max_len=8)
    src, mask, tgt, tgt_mask = batch(S=6, T=5)
    with pytest.raises(ValueError, match="decoder_input_ids has length 9.*max_len=8"):
        model(src, mask, torch.full((3, 9), BOS))
    with pytest.raises(ValueError, match="input_ids has length 9"):
        model(torch.full((3, 9), 5), None, tgt)
    with pytest.raises(ValueError, match="decoder_input_ids has batch size 2 but input_ids has 3"):
        model(src, mask, tgt[:2])
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        model(src, mask[:, :4], tgt)
    with pytest.raises(TypeError, match="input_ids must be a long tensor"):
        model(src.float(), mask, tgt)
    memory = model.encode(src, mask)
    with pytest.raises(ValueError, match="memory must have shape"):
        model.decode(tgt[:2], memory, mask)
    cache = model.new_cache()
    model.decode(tgt, memory, mask, cache)
    with pytest.raises(ValueError, match="after 5 cached positions: positions 5..8 exceed"):
        model.decode(tgt[:, :4], memory, mask, cache)
    with pytest.raises(TypeError, match="Seq2SeqConfig"):
        Seq2SeqTransformer({"vocab_size": 10})


@pytest.mark.parametrize("call,error,message", [
    (lambda m, src, mask, tgt: m(src.masked_fill(src == src[0, 0], V), mask, tgt), ValueError,
     r"input_ids must hold token ids in \[0, vocab_size=13\), got 13 \(row 0, position 0\)"),
    (lambda m, src, mask, tgt: m(src, mask, tgt.masked_fill(tgt == BOS, -3)), ValueError,
     r"decoder_input_ids must hold token ids in \[0, vocab_size=13\), got -3 \(row 0, "
     r"position 0\)"),
    (lambda m, src, mask, tgt: m.encode(src[0]), ValueError,
     r"input_ids must have shape \(B, S\) with S >= 1, got \(6,\)"),
    (lambda m, src, mask, tgt: m.encode(src.tolist()), TypeError,
     r"input_ids must be a long tensor \(B, S\), got a list"),
    (lambda m, src, mask, tgt: m.encode(src, mask * 2), ValueError,
     r"attention_mask must hold only 1 \(token\) and 0 \(padding\), got 2"),
    (lambda m, src, mask, tgt: m(src, mask, tgt, torch.ones_like(tgt) - 2), ValueError,
     r"decoder_attention_mask must hold only 1 \(token\) and 0 \(padding\), got -1"),
    (lambda m, src, mask, tgt: m(src, mask, tgt, torch.ones(3, 4)), ValueError,
     r"decoder_attention_mask must have shape \(B, T_past \+ T\) = \(3, 5\).*got \(3, 4\)"),
    (lambda m, src, mask, tgt: m.decode(tgt, m.encode(src, mask).double(), mask), ValueError,
     r"memory must have the model's dtype torch.float32 \(encode's output\), got "
     r"torch.float64"),
    (lambda m, src, mask, tgt: m.decode(tgt, m.encode(src, mask), mask - 1), ValueError,
     r"attention_mask must hold only 1 \(token\) and 0 \(padding\), got -1"),
    (lambda m, src, mask, tgt: m.decode(tgt, m.encode(src, mask).tolist(), mask), TypeError,
     r"memory must be a tensor"),
])
def test_bad_values_name_the_argument_and_the_range(call, error, message):
    """Ids out of the vocabulary, masks of other values than 0/1 and a memory of another dtype
    are refused with the argument named, not by torch's errors deep inside."""
    model = tiny()
    src, mask, tgt, _ = batch(S=6, T=5)
    with pytest.raises(error, match=message):
        call(model, src, mask, tgt)


def test_value_checks_can_be_left_to_the_device():
    model = tiny()
    src, mask, _, _ = batch(S=6, T=5)
    model.check_source(src, mask)
    model.check_source(src + V, mask * 2, values=False)  # types and shapes only
    with pytest.raises(ValueError, match="vocab_size=13"):
        model.check_source(src + V, mask)
