"""Speed of the Hugging Face families attnlab loads, against ``transformers``, in one run.

For each family of :data:`attnlab.io.families.FAMILIES` (GPT-2, the Llama layout with
grouped-query attention, RoBERTa, DistilBERT; Marian when the loader has it), a random model of
a realistic small size is built by ``transformers``, saved with ``save_pretrained`` and loaded
into attnlab with :func:`~attnlab.io.families.load_family` (real weights cannot be downloaded
here). The outputs are checked to agree (max abs difference printed, < 1e-4), then timed on
CPU, float32, eval mode, no autograd, interleaved rounds, median:

* forward at ``B=8``, ``L=128``: ours against ``transformers`` with its default attention
  (sdpa); goal >= 1.0x (``HF time / our time``);
* decoders only: cached greedy generation, tokens per second, ours
  (:func:`~attnlab.models.causal_generation.greedy_generate`, ``use_cache=True``) against
  ``generate(do_sample=False, max_new_tokens=N)`` from the same prompts, the tokens checked
  equal; goal >= 1.0x;
* :func:`attnlab.capture` of every head of every layer against our plain forward; goal <= 1.3x.

Run: ``python benchmarks/families.py [--quick] [--threads N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_pair  # noqa: E402

import attnlab  # noqa: E402
from attnlab import MultiHeadAttention, capture  # noqa: E402
from attnlab.io.families import FAMILIES, load_family  # noqa: E402
from attnlab.models.causal_generation import greedy_generate  # noqa: E402

GOALS = {"forward": 1.0, "generate": 1.0, "capture": 1.3}
TOLERANCE = 1e-4
INIT = 0.1  # initializer_range: logits spread enough that greedy picks have no near-ties


@dataclass(frozen=True)
class Size:
    """The shared size of the models and inputs of one run."""

    layers: int  # N
    width: int  # D
    heads: int  # H (query heads)
    kv_heads: int  # G, the Llama layout's key/value heads (H/G = 3, as SmolLM's 9/3)
    ffn: int  # F, the feed-forward inner size (4·D; SwiGLU gets 8/3·D)
    vocab: int  # V
    batch: int  # B of the forward and of the prompts
    length: int  # L of the forward
    prompt: int  # P, prompt length for generation
    new_tokens: int  # N, tokens generated per row


FULL = Size(layers=4, width=384, heads=6, kv_heads=2, ffn=1536, vocab=16384, batch=8,
            length=128, prompt=32, new_tokens=32)
QUICK = Size(layers=2, width=128, heads=4, kv_heads=2, ffn=512, vocab=2048, batch=2,
             length=32, prompt=8, new_tokens=4)


@dataclass(frozen=True)
class Case:
    """One family: how ``transformers`` builds it, and how both models are called."""

    name: str  # the row's label
    model_type: str  # its key in FAMILIES
    build: Callable[[Size], transformers.PreTrainedModel]  # a random HF model (default attn)
    kind: str  # "decoder" (logits; generation timed), "encoder" (hidden states) or "seq2seq"


def _gpt2(s: Size) -> transformers.PreTrainedModel:
    config = transformers.GPT2Config(
        n_layer=s.layers, n_embd=s.width, n_head=s.heads, vocab_size=s.vocab, n_positions=512,
        bos_token_id=0, eos_token_id=0, initializer_range=INIT)
    return transformers.AutoModelForCausalLM.from_config(config)


def _llama(s: Size) -> transformers.PreTrainedModel:
    config = transformers.LlamaConfig(
        hidden_size=s.width, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
        num_hidden_layers=s.layers, intermediate_size=s.ffn * 2 // 3, vocab_size=s.vocab,
        max_position_embeddings=512, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=0, eos_token_id=0, initializer_range=INIT)
    return transformers.AutoModelForCausalLM.from_config(config)


def _roberta(s: Size) -> transformers.PreTrainedModel:
    config = transformers.RobertaConfig(
        num_hidden_layers=s.layers, hidden_size=s.width, num_attention_heads=s.heads,
        intermediate_size=s.ffn, vocab_size=s.vocab, max_position_embeddings=514,
        type_vocab_size=1, pad_token_id=1, initializer_range=INIT)
    return transformers.RobertaModel(config, add_pooling_layer=False)


def _distilbert(s: Size) -> transformers.PreTrainedModel:
    config = transformers.DistilBertConfig(
        n_layers=s.layers, dim=s.width, n_heads=s.heads, hidden_dim=s.ffn, vocab_size=s.vocab,
        max_position_embeddings=512, pad_token_id=0, initializer_range=INIT)
    return transformers.DistilBertModel(config)


def _marian(s: Size) -> transformers.PreTrainedModel:
    config = transformers.MarianConfig(
        vocab_size=s.vocab, d_model=s.width, encoder_layers=s.layers, decoder_layers=s.layers,
        encoder_attention_heads=s.heads, decoder_attention_heads=s.heads,
        encoder_ffn_dim=s.ffn, decoder_ffn_dim=s.ffn, max_position_embeddings=512,
        scale_embedding=True, pad_token_id=s.vocab - 1, decoder_start_token_id=s.vocab - 1,
        eos_token_id=0, init_std=INIT)
    return transformers.MarianMTModel(config)


CASES = [Case("GPT-2", "gpt2", _gpt2, "decoder"), Case("Llama (GQA)", "llama", _llama, "decoder"),
         Case("RoBERTa", "roberta", _roberta, "encoder"),
         Case("DistilBERT", "distilbert", _distilbert, "encoder"),
         Case("Marian", "marian", _marian, "seq2seq")]


def describe(case: Case, s: Size) -> str:
    """The config column: layers, width, heads (and key/value heads), vocabulary."""
    heads = f"H={s.heads}" + (f"/G={s.kv_heads}" if case.model_type == "llama" else "")
    layers = f"{s.layers}+{s.layers}" if case.kind == "seq2seq" else s.layers
    return f"N={layers} D={s.width} {heads} V={s.vocab}"


def load_pair(case: Case, s: Size, folder: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The HF model (eval, default attention) and ours loaded from its saved folder."""
    torch.manual_seed(0)
    hf = case.build(s).eval()
    hf.save_pretrained(folder, safe_serialization=True)
    return load_family(folder), hf


def run_case(case: Case, s: Size, rounds: int) -> dict[str, object]:
    """Check one family's outputs, then time it; the row's figures."""
    with tempfile.TemporaryDirectory() as folder:
        ours, hf = load_pair(case, s, Path(folder))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, s.vocab, (s.batch, s.length), generator=g)  # (B, L)
    mask = torch.ones_like(ids)  # (B, L), no padding

    if case.kind == "decoder":
        def ours_fwd(): return ours(ids)  # (B, L, V)
        def hf_fwd(): return hf(input_ids=ids).logits  # (B, L, V)
    elif case.kind == "encoder":
        def ours_fwd(): return ours(ids, mask).last_hidden_state  # (B, L, D)
        def hf_fwd(): return hf(input_ids=ids, attention_mask=mask).last_hidden_state
    else:  # a target as long as the source, starting from the decoder's start id
        target = torch.cat([torch.full_like(ids[:, :1], s.vocab - 1), ids[:, 1:]], dim=1)
        def ours_fwd(): return ours(ids, mask, target).logits  # (B, L, V)
        def hf_fwd(): return hf(input_ids=ids, attention_mask=mask,
                                decoder_input_ids=target).logits  # (B, L, V)

    n_modules = sum(isinstance(m, MultiHeadAttention) for m in ours.modules())

    def capture_all():
        with capture(ours) as cap:
            ours_fwd()
        assert len(cap) == n_modules

    row: dict[str, object] = {"family": case.name, "config": describe(case, s),
                              "attn": hf.config._attn_implementation}
    with torch.inference_mode():
        row["max_diff"] = (ours_fwd() - hf_fwd()).abs().max().item()
        assert row["max_diff"] < TOLERANCE, f"{case.name}: outputs differ by {row['max_diff']}"
        row["fwd_ours"], row["fwd_hf"] = time_pair(ours_fwd, hf_fwd, rounds=rounds)
        t_capture, t_plain = time_pair(capture_all, ours_fwd, rounds=rounds)
        row["capture"] = t_capture / t_plain
        if case.kind == "decoder":
            row.update(time_generation(ours, hf, s, rounds))
    return row


def time_generation(ours: torch.nn.Module, hf: torch.nn.Module, s: Size, rounds: int
                    ) -> dict[str, float]:
    """Tokens per second of cached greedy decoding, ours and HF's, on the same prompts; the
    tokens are checked equal. Neither stops early (no end-of-sequence id)."""
    g = torch.Generator().manual_seed(2)
    prompts = torch.randint(3, s.vocab, (s.batch, s.prompt), generator=g)  # (B, P)
    mask = torch.ones_like(prompts)  # (B, P)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0

    def ours_gen():
        return greedy_generate(ours, prompts, mask, max_new_tokens=s.new_tokens,
                               eos_token_id=None, use_cache=True)

    def hf_gen():
        return hf.generate(prompts, attention_mask=mask, do_sample=False,
                           max_new_tokens=s.new_tokens)

    got, want = ours_gen(), hf_gen()
    assert got.shape == want.shape == (s.batch, s.prompt + s.new_tokens), (got.shape,
                                                                          want.shape)
    same = (got == want).all(dim=1)  # (B,)
    assert bool(same.all()), f"generated tokens differ in {int((~same).sum())} of {s.batch} rows"
    t_ours, t_hf = time_pair(ours_gen, hf_gen, rounds=rounds)
    tokens = s.batch * s.new_tokens
    return {"gen_ours": tokens / t_ours, "gen_hf": tokens / t_hf}


def table(rows: list[dict[str, object]]) -> str:
    """The markdown table of the rows (ratios: > 1 means ours is faster; capture: ours/ours)."""
    lines = ["| family | config | forward ours ms | forward HF ms | ratio "
             "| generate tok/s ours / HF | ratio | capture / plain |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        gen = ratio = "–"
        if "gen_ours" in r:
            gen = f"{r['gen_ours']:.0f} / {r['gen_hf']:.0f}"
            ratio = f"{r['gen_ours'] / r['gen_hf']:.2f}×"
        lines.append(f"| {r['family']} | {r['config']} | {r['fwd_ours'] * 1e3:.1f} "
                     f"| {r['fwd_hf'] * 1e3:.1f} | {r['fwd_hf'] / r['fwd_ours']:.2f}× | {gen} "
                     f"| {ratio} | {r['capture']:.2f}× |")
    return "\n".join(lines)


def misses(rows: list[dict[str, object]]) -> list[str]:
    """The figures that miss their goal, one line each."""
    out = []
    for r in rows:
        if r["fwd_hf"] / r["fwd_ours"] < GOALS["forward"]:
            out.append(f"{r['family']}: forward {r['fwd_hf'] / r['fwd_ours']:.3f}× < 1.0×")
        if "gen_ours" in r and r['gen_ours'] / r['gen_hf'] < GOALS["generate"]:
            out.append(f"{r['family']}: generate {r['gen_ours'] / r['gen_hf']:.3f}× < 1.0×")
        if r['capture'] > GOALS["capture"]:
            out.append(f"{r['family']}: capture {r['capture']:.3f}× > 1.3×")
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, few rounds (smoke)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 7, quick 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    rounds = args.rounds or (2 if args.quick else 7)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = []
    for case in CASES:
        if case.model_type not in FAMILIES:
            print(f"note: attnlab.io.families has no {case.model_type!r} entry; "
                  f"{case.name} skipped")
            continue
        rows.append(run_case(case, size, rounds))
        print(f"{case.name}: max |ours - HF| = {rows[-1]['max_diff']:.2e}, HF attention "
              f"{rows[-1]['attn']}", flush=True)
    print(f"\n{device_name('cpu')} ({cpu_model()}), float32, "
          f"median of {rounds} interleaved rounds; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, attnlab {attnlab.__version__}; forward B={size.batch} "
          f"L={size.length}; generate B={size.batch} P={size.prompt} N={size.new_tokens}\n")
    print(table(rows))
    for line in misses(rows):
        print(f"below goal: {line}")


if __name__ == "__main__":
    main()
