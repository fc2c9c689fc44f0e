"""Decoder-only families (GPT-2, the Llama layout) loaded from a Hugging Face folder, against
``transformers`` itself.

Each family is a tiny random model built and saved by ``transformers`` (``save_pretrained``,
safetensors), so the weight names, the ``Conv1D`` layout and ``config.json`` are the real ones;
attnlab loads the folder with :func:`attnlab.io.families.load_family`. Oracles: the logits of
the same ``transformers`` model, its ``output_attentions=True`` (eager) weights, and its
``generate(do_sample=False)``.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # the references must never reach the hub

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnlab.errors import InputError
from attnlab.inspect import capture
from attnlab.io.families import FAMILIES, load_family
from attnlab.models.causal_generation import greedy_generate
from attnlab.models.causal_lm import positions_from_mask

transformers = pytest.importorskip("transformers")

VOCAB = 100
# initializer_range 0.2 (not 0.02): attention far from uniform and logits far from 0, so the
# comparisons can fail.
CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=64, bos_token_id=0,
        eos_token_id=0, initializer_range=0.15),
    "llama": lambda: transformers.LlamaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
        intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=64, rope_theta=50000.0,
        initializer_range=0.15),
    "llama-tied": lambda: transformers.LlamaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=1, num_hidden_layers=2,
        intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=64, rope_theta=500.0,
        tie_word_embeddings=True, initializer_range=0.15),
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved folder per family, and the transformers model that wrote it (float32, eval,
    eager attention: Llama's eager softmax runs in float32 at every precision, so the float64
    comparisons load the folder again with "sdpa")."""
    made = {}
    for name, make in CONFIGS.items():
        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_config(
            make(), attn_implementation="eager").eval()
        folder = tmp_path_factory.mktemp(name)
        hf.save_pretrained(folder, safe_serialization=True)
        made[name] = (folder, hf)
    return made


@pytest.fixture
def hf_rmsnorm_in_dtype(monkeypatch):
    """transformers' ``LlamaRMSNorm`` computes in float32 even in a float64 model (ours in at
    least float32): for the float64 comparison, let it keep float64 as ours does."""
    from transformers.models.llama import modeling_llama

    def forward(self, x):
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * wide.to(x.dtype)

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", forward)


def _batch(padding: str):
    """Five rows of ten ids: full, and padded (with id 0 there) to lengths 7, 4, 9, 1."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (5, 10), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate((10, 7, 4, 9, 1)):
        pad = slice(length, None) if padding == "right" else slice(0, 10 - length)
        mask[row, pad] = 0
    return ids.masked_fill(mask == 0, 0), mask


def _pair(folders, family, dtype):
    """Ours and transformers' model of one folder, in ``dtype`` (float64: sdpa attention)."""
    folder, hf = folders[family]
    if dtype == torch.float64:
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            folder, attn_implementation="sdpa", dtype=torch.float64).eval()
    return load_family(folder).to(dtype), hf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_logits_match_transformers(folders, family, padding, dtype, hf_rmsnorm_in_dtype):
    """Logits at every real position, with padding and attention_mask. Right padding: the
    default positions (0..L-1, transformers' forward); left padding: positions counted from the
    first real token, given to both models (what generate passes)."""
    ours, hf = _pair(folders, family, dtype)
    ids, mask = _batch(padding)
    positions = positions_from_mask(mask) if padding == "left" else None
    with torch.no_grad():
        got = ours(ids, mask, position_ids=positions)  # (B, L, V)
        want = hf(ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert got.dtype == dtype and got.shape == want.shape == (*ids.shape, VOCAB)
    assert want[real].abs().max() > 0.5, "logits too small to test anything"
    err = (got - want).abs()[real].max().item()
    assert err <= TOL[dtype], f"{family} {padding} {dtype}: logits differ by {err}"


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_every_heads_attention_matches_transformers(folders, family, padding):
    """Every layer's and head's weights, captured on our hook points, against
    ``output_attentions=True`` (eager), at real query rows; padding keys get none."""
    ours, hf = _pair(folders, family, torch.float32)
    ids, mask = _batch(padding)
    positions = positions_from_mask(mask) if padding == "left" else None
    with torch.no_grad(), capture(ours) as cap:
        ours(ids, mask, position_ids=positions)
    with torch.no_grad():
        want = torch.stack(hf(ids, attention_mask=mask, position_ids=positions,
                              output_attentions=True).attentions)  # (N, B, H, L, L)
    got = cap.stack()  # (N, B, H, L, L)
    assert got.shape == want.shape == (2, 5, 4, 10, 10)
    real_rows = mask.bool()[None, :, None, :, None].expand_as(got)
    err = (got - want).abs()[real_rows].max().item()
    assert err <= 1e-6, f"{family}: attention differs by {err}"
    assert (got.masked_select(~mask.bool()[None, :, None, None, :]) == 0).all()
    assert want[real_rows].max() > 0.9, "attention too uniform to test anything"


def _prompts():
    """Three prompts, left-padded: lengths 6, 3, 5."""
    ids, mask = _batch("left")
    return ids[:3, 4:], mask[:3, 4:]


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_greedy_generation_matches_generate(folders, family, use_cache):
    """Token for token, left-padded prompts; then again with an EOS that one row reaches
    early, so ended rows get padding and the others go on."""
    ours, hf = _pair(folders, family, torch.float32)
    ids, mask = _prompts()
    want = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                       eos_token_id=None, pad_token_id=0)
    got = greedy_generate(ours, ids, mask, max_new_tokens=10, eos_token_id=None,
                          use_cache=use_cache)
    assert torch.equal(got, want), f"{got}\n{want}"
    assert len(set(want[:, 6:].flatten().tolist())) > 2, "generation too trivial to test"

    eos = int(want[1, 8])  # row 1 ends after its third new token
    want = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                       eos_token_id=eos, pad_token_id=99)
    got = greedy_generate(ours, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=99,
                          use_cache=use_cache)
    assert torch.equal(got, want), f"{got}\n{want}"
    assert (want[1, 9:] == 99).all()


def test_llama_cache_holds_the_key_value_heads(folders):
    """Grouped-query attention: the cache keeps G = 2 key/value heads of size 16, not H = 4."""
    ours, _ = _pair(folders, "llama", torch.float32)
    cache = ours.new_cache()
    with torch.no_grad():
        ours(torch.tensor([[5, 6, 7]]), cache=cache)
    assert cache.length == 3
    assert all(layer.key.shape == (1, 2, 3, 16) for layer in cache.layers)


def test_gpt2_checkpoint_without_prefix_and_with_buffers(folders, tmp_path):
    """The hub's own GPT-2 files name tensors without ``transformer.`` and keep the causal-mask
    buffers ``h.{i}.attn.bias``: the same model loads."""
    folder, hf = folders["gpt2"]
    state = {k.removeprefix("transformer."): v for k, v in
             load_file(str(folder / "model.safetensors")).items()}
    state.update({f"h.{i}.attn.bias": torch.ones(1, 1, 64, 64).tril() for i in range(2)})
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    save_file(state, str(tmp_path / "model.safetensors"))
    ids = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        assert (load_family(tmp_path)(ids) - hf(ids).logits).abs().max() <= 1e-5


def test_unsupported_model_type_names_it_and_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(InputError, match=r"'t5'.*gpt2, llama") as err:
        load_family(tmp_path)
    assert sorted(FAMILIES) == ["distilbert", "gpt2", "llama", "marian", "roberta"]
    assert str(tmp_path) in str(err.value)


def test_folder_without_safetensors_is_a_clear_error(folders, tmp_path):
    folder, _ = folders["gpt2"]
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(InputError, match=r"has no model\.safetensors.*never unpickled"):
        load_family(tmp_path)
    with pytest.raises(InputError, match="model folder not found"):
        load_family(tmp_path / "absent")


def test_missing_tensor_is_named(folders, tmp_path):
    folder, _ = folders["llama"]
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match=r"missing weights .*layers\.1\.mlp\.up_proj\.weight"):
        load_family(tmp_path)
