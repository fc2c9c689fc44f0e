"""The decoder-only TransformerLM (attnlab.models.language_model) against independent references:
``torch.nn.TransformerEncoderLayer`` with a causal mask, a forward written out by hand here
(explicit softmax, rotary pairs rotated with complex numbers, the sinusoid formula), autograd's
gradcheck; and against itself: the cache, left padding, the checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import InputError
from attnlab.io.checkpoint import CheckpointError, save_checkpoint
from attnlab.io.registry import LANGUAGE_MODEL, MODEL_TYPES, load_model
from attnlab.models.causal_lm import positions_from_mask
from attnlab.models.language_model import POSITIONS, LMConfig, TransformerLM

V, D, H = 23, 16, 2


def tiny(positions: str, attention_only: bool = False, **kw) -> TransformerLM:
    """A tiny eval-mode model with weights far from the init (so comparisons can fail)."""
    torch.manual_seed(0)
    config = LMConfig(vocab_size=V, d_model=D, n_heads=H, n_layers=2, d_ff=24, context=12,
                      positions=positions, attention_only=attention_only, dropout=0.0, **kw)
    model = TransformerLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


KINDS = [(p, a) for p in POSITIONS for a in (False, True)]
KIND_IDS = [f"{p}-{'attn-only' if a else 'ff'}" for p, a in KINDS]


@pytest.mark.parametrize("positions,attention_only", KINDS, ids=KIND_IDS)
def test_cached_forward_equals_full_forward(positions, attention_only):
    model = tiny(positions, attention_only)
    ids = torch.randint(0, V, (2, 9))
    full = model(ids)  # (2, 9, V)
    cache = model.new_cache()
    first = model(ids[:, :4], cache=cache)  # a 4-token prompt, then one token at a time
    steps = [model(ids[:, i:i + 1], cache=cache) for i in range(4, 9)]
    assert torch.allclose(torch.cat([first, *steps], dim=1), full, atol=1e-5)
    assert full.abs().max() > 1  # logits far from 0: the comparison means something


@pytest.mark.parametrize("positions", POSITIONS)
def test_left_padding_with_positions_from_mask_equals_the_unpadded_row(positions):
    model = tiny(positions)
    row = torch.randint(1, V, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], dim=1)  # (1, 9)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], dim=1).long()  # (1, 9)
    batch = torch.cat([padded, torch.randint(0, V, (1, 9))])  # a second, unpadded row
    batch_mask = torch.cat([mask, torch.ones(1, 9, dtype=torch.long)])
    got = model(batch, batch_mask, position_ids=positions_from_mask(batch_mask))[0, 3:]
    want = model(row)[0]
    assert torch.allclose(got, want, atol=1e-5)
    shifted = model(batch, batch_mask)[0, 3:]  # at positions 3..8 instead of 0..5
    # rotary scores depend on relative positions only: a shift changes nothing there
    assert torch.allclose(shifted, want, atol=1e-5) == (positions == "rotary")


def test_matches_torch_transformer_encoder_layers_with_a_causal_mask():
    model = tiny("learned")
    torch_layers = []
    for layer in model.layers:
        theirs = torch.nn.TransformerEncoderLayer(D, H, 24, dropout=0.0, activation="gelu",
                                                  norm_first=True, batch_first=True).eval()
        a = layer.attn
        with torch.no_grad():
            theirs.self_attn.in_proj_weight.copy_(
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(
                torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
        theirs.linear1.load_state_dict(layer.ff.up.state_dict())
        theirs.linear2.load_state_dict(layer.ff.down.state_dict())
        theirs.norm1.load_state_dict(layer.attn_norm.state_dict())
        theirs.norm2.load_state_dict(layer.ff_norm.state_dict())
        torch_layers.append(theirs)
    ids = torch.randint(0, V, (2, 10))
    x = model.token_embedding.weight[ids] + model.position_embedding.weight[:10]  # (2, 10, D)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(10)
    for theirs in torch_layers:
        x = theirs(x, src_mask=causal, is_causal=True)
    norm = model.final_norm
    want = F.layer_norm(x, (D,), norm.weight, norm.bias) @ model.token_embedding.weight.T
    assert torch.allclose(model(ids), want, atol=1e-5)


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary positions by hand: pair (i, i + d/2) is the complex number x_i + j·x_{i+d/2},
    multiplied by exp(j·pos·theta^(-2i/d))."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half], x[..., half:])  # (..., L, d/2)
    freq = theta ** (-torch.arange(half, dtype=x.dtype) * 2 / x.shape[-1])  # (d/2,)
    z = z * torch.polar(torch.ones_like(freq), positions[:, None].to(x.dtype) * freq)
    return torch.cat([z.real, z.imag], dim=-1)


def _reference_forward(model: TransformerLM, ids: torch.Tensor) -> torch.Tensor:
    """The forward written out: no attnlab attention, masks or position code."""
    c = model.config
    L = ids.shape[1]
    positions = torch.arange(L)
    x = model.token_embedding.weight[ids]  # (B, L, D)
    if c.positions == "learned":
        x = x + model.position_embedding.weight[:L]
    elif c.positions == "sinusoidal":
        table = torch.zeros(L, D, dtype=x.dtype)
        for pos in range(L):
            for i in range(0, D, 2):
                table[pos, i] = math.sin(pos / 10000 ** (i / D))
                table[pos, i + 1] = math.cos(pos / 10000 ** (i / D))
        x = x + table
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
    for layer in model.layers:
        a = layer.attn
        h = F.layer_norm(x, (D,), layer.attn_norm.weight, layer.attn_norm.bias)
        q, k, v = (F.linear(h, p.weight, p.bias).view(*h.shape[:2], H, D // H).transpose(1, 2)
                   for p in (a.q_proj, a.k_proj, a.v_proj))  # (B, H, L, d_k) each
        if c.positions == "rotary":
            q, k = _rotate(q, positions, c.rope_theta), _rotate(k, positions, c.rope_theta)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)  # (B, H, L, L)
        weights = scores.masked_fill(future, -math.inf).softmax(-1)
        heads = (weights @ v).transpose(1, 2).reshape(x.shape)  # (B, L, D)
        x = x + F.linear(heads, a.out_proj.weight, a.out_proj.bias)
        if layer.ff is not None:
            h = F.layer_norm(x, (D,), layer.ff_norm.weight, layer.ff_norm.bias)
            x = x + layer.ff.down(F.gelu(layer.ff.up(h)))
    x = F.layer_norm(x, (D,), model.final_norm.weight, model.final_norm.bias)
    head = model.token_embedding if model.lm_head is None else model.lm_head
    return x @ head.weight.T  # (B, L, V)


@pytest.mark.parametrize("positions,attention_only", KINDS, ids=KIND_IDS)
def test_matches_a_forward_written_by_hand(positions, attention_only):
    model = tiny(positions, attention_only, tie_embeddings=positions != "rotary",
                 rope_theta=100.0).double()
    ids = torch.randint(0, V, (2, 11))
    with torch.no_grad():
        assert torch.allclose(model(ids), _reference_forward(model, ids), atol=1e-10)


def test_gradients_pass_autograd_gradcheck():
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=7, d_model=4, n_heads=2, n_layers=1, d_ff=6,
                                   context=5, dropout=0.0)).double()
    ids = torch.tensor([[1, 5, 2, 6]])
    names = ["token_embedding.weight", "layers.0.attn.q_proj.weight",
             "layers.0.ff.up.weight", "final_norm.weight"]
    start = tuple(dict(model.named_parameters())[n].detach().clone().requires_grad_()
                  for n in names)

    def logits(*weights):
        return torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (ids,))

    assert torch.autograd.gradcheck(logits, start, eps=1e-6, atol=1e-6)


def test_checkpoint_round_trip_through_the_registry(tmp_path):
    assert LANGUAGE_MODEL == "transformer-lm" and LANGUAGE_MODEL in MODEL_TYPES
    model = tiny("learned", eos_token_id=3)
    save_checkpoint(tmp_path / "ok", model, {"model_type": LANGUAGE_MODEL,
                                              "model": model.config.to_dict()})
    loaded = load_model(tmp_path / "ok")
    ids = torch.randint(0, V, (2, 7))
    assert isinstance(loaded.model, TransformerLM) and loaded.max_length == 12
    assert torch.equal(loaded.model(ids), model(ids))
    tampered = {**model.config.to_dict(), "context": 10**9}  # would allocate 64 GB
    save_checkpoint(tmp_path / "bad", model, {"model_type": LANGUAGE_MODEL, "model": tampered})
    with pytest.raises(CheckpointError, match=r"model\.context"):
        load_model(tmp_path / "bad")


def test_parameter_count_and_untied_head():
    tied = LMConfig(vocab_size=10, d_model=8, n_heads=2, n_layers=1, context=6,
                    positions="learned")
    # embeddings 10·8 + 6·8; attention 4·(8·8 + 8); two norms in the block and a final one
    # 3·2·8; feed-forward 8·32 + 32 + 32·8 + 8
    expected = 80 + 48 + 4 * 72 + 48 + 8 * 32 + 32 + 32 * 8 + 8
    assert TransformerLM(tied).num_parameters() == expected
    untied = LMConfig(**{**tied.to_dict(), "tie_embeddings": False, "attention_only": True})
    model = TransformerLM(untied)
    assert model.lm_head is not None and model.layers[0].ff is None
    assert model.num_parameters() == 80 + 48 + 4 * 72 + 2 * 2 * 8 + 80


def test_too_long_input_is_refused():
    model = tiny("rotary")
    with pytest.raises(ValueError, match="12 positions"):
        model(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize("field,value,expected", [
    ("vocab_size", 0, "integer >= 1"),
    ("d_model", 10.0, "integer >= 1"),
    ("n_heads", 3, "divisible"),
    ("d_ff", -1, "integer >= 1 or None"),
    ("context", True, "integer >= 1"),
    ("positions", "alibi", "one of"),
    ("attention_only", 1, "bool"),
    ("dropout", 1.0, "[0, 1)"),
    ("attn_dropout", -0.1, "[0, 1)"),
    ("tie_embeddings", "yes", "bool"),
    ("rope_theta", float("nan"), "finite number > 1"),
    ("eos_token_id", 40, "vocab_size=40"),
])
def test_config_errors_name_the_field_the_expectation_and_the_value(field, value, expected):
    kwargs = {"vocab_size": 40, "d_model": 16, "n_heads": 2, field: value}
    with pytest.raises(InputError) as err:
        LMConfig(**kwargs)
    message = str(err.value)
    assert field in message and expected in message and repr(value)[:4] in message


def test_rotary_needs_an_even_head_size():
    with pytest.raises(InputError, match="even head size"):
        LMConfig(vocab_size=5, d_model=6, n_heads=2, positions="rotary")
    LMConfig(vocab_size=5, d_model=6, n_heads=2, positions="learned")  # odd is fine there


def test_from_dict_round_trip_and_unknown_field():
    config = LMConfig(vocab_size=65, positions="sinusoidal", attention_only=True)
    assert LMConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="max_len"):
        LMConfig.from_dict({**config.to_dict(), "max_len": 3})
