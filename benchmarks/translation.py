"""Translation speed, measured in one run: training steps of our Seq2SeqTransformer against the
same model built on ``torch.nn.Transformer`` (the same weights), and decoding of Multi30k
test sentences with the key/value cache against recomputing the prefix, and beam 5 against
greedy.

One training step = forward, label-smoothed token cross-entropy, backward, AdamW, on real
Multi30k pairs (a batch of ``--batch`` pairs, joint BPE). Throughput counts real source and
target tokens per second. Decoding uses a trained run (``--run``) when given, else the random
model (which never emits end-of-sentence, so every sentence runs to the length limit: the worst
case). Rows (``ratio = reference time / our time``):

* ours vs ``torch.nn.Transformer``, training (goal ``>= 1.0x``);
* greedy with the cache vs recomputing the prefix at each step (goal ``>= 3x``; the outputs
  must be identical, and are checked);
* beam 5 vs greedy, both cached (goal: beam ``<= 3x`` the time, i.e. ratio ``>= 0.33x``);
* greedy capturing every decoder layer's cross-attention (``attention=True``) vs plain greedy,
  the same sentences, interleaved rounds (goal: capture ``<= 1.3x`` the time, i.e. ratio
  ``>= 0.77x``; the outputs must be identical, and are checked).

Run: ``python benchmarks/translation.py [--run runs/de-en] [--sentences 200] [--threads N]
[--only training|decoding|attention]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_pair  # noqa: E402

from attnlab.attention.positional import sinusoid_table  # noqa: E402
from attnlab.io.registry import load_model  # noqa: E402
from attnlab.models.generation import beam_search, greedy, greedy_search  # noqa: E402
from attnlab.models.seq2seq import Seq2SeqTransformer  # noqa: E402
from attnlab.tasks.translation.data import PairBatches, encode_pairs  # noqa: E402
from attnlab.text import TextTokenizer, load_parallel_split  # noqa: E402

DATA = Path(os.environ.get("ATTNLAB_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


class TorchSeq2Seq(nn.Module):
    """Embeddings (scaled, sinusoids added), ``nn.Transformer`` (pre-norm, GELU), tied output."""

    def __init__(self, vocab: int, d_model: int, heads: int, layers: int, d_ff: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=0)
        self.transformer = nn.Transformer(d_model, heads, layers, layers, d_ff, dropout=0.1,
                                          activation="gelu", batch_first=True, norm_first=True)
        self.register_buffer("positions", sinusoid_table(256, d_model), persistent=False)

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        S, T, D = input_ids.shape[1], decoder_input_ids.shape[1], self.embedding.embedding_dim
        x = self.embedding(input_ids) * math.sqrt(D) + self.positions[:S]  # (B, S, D)
        y = self.embedding(decoder_input_ids) * math.sqrt(D) + self.positions[:T]  # (B, T, D)
        causal = torch.ones(T, T, dtype=torch.bool, device=y.device).triu(1)  # True = blocked
        hidden = self.transformer(
            x, y, tgt_mask=causal, tgt_is_causal=True, src_key_padding_mask=attention_mask == 0,
            tgt_key_padding_mask=decoder_attention_mask == 0,
            memory_key_padding_mask=attention_mask == 0)  # (B, T, D)
        return hidden @ self.embedding.weight.T  # (B, T, D) x (D, V) -> (B, T, V)


def training_step(model: nn.Module, batch: dict, ours: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = model(**inputs)
        logits = out.logits if ours else out  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(),
                               ignore_index=-100, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained translation run for decoding")
    parser.add_argument("--sentences", type=int, default=200, help="test sentences decoded")
    parser.add_argument("--batch", type=int, default=128, help="training pairs per step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--only", choices=("training", "decoding", "attention"),
                        help="run only these rows (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = DATA / "multi30k"
    train = load_parallel_split(folder, "train", source_lang="de", target_lang="en")
    test = load_parallel_split(folder, "test_2016_flickr", source_lang="de", target_lang="en")
    if args.run is not None:
        run = load_model(args.run)
        tokenizer, ours_eval = run.tokenizer, run.model
    else:
        tokenizer = TextTokenizer.train([*train.sources[:10000], *train.targets[:10000]], 8000,
                                        kind="bpe")
        ours_eval = None
    pairs = encode_pairs(tokenizer, train.sources[:args.batch], train.targets[:args.batch])
    batch = next(iter(PairBatches(pairs, args.batch, shuffle=False)))
    reference = TorchSeq2Seq(tokenizer.vocab_size, 256, 4, 3, 1024)
    ours = Seq2SeqTransformer.from_torch(reference.transformer, reference.embedding)
    tokens = int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())
    print(f"Multi30k de->en, {device_name('cpu')}; training: {args.batch} pairs, {tokens} real "
          f"tokens per step, {ours.num_parameters():,} parameters")
    header = f"{'comparison':<52} {'ours':>12} {'ref':>12} {'ratio':>7}  goal"
    print(header)
    print("-" * len(header))
    if args.only in (None, "training"):
        t_ours, t_ref = time_pair(training_step(ours, batch, True),
                                  training_step(reference, batch, False), rounds=5, min_time=0.2)
        print(f"{'training step vs torch.nn.Transformer (tok/s)':<52} {tokens / t_ours:>12,.0f} "
              f"{tokens / t_ref:>12,.0f} {t_ref / t_ours:>6.2f}x  >= 1.0x")

    model = (ours_eval if ours_eval is not None else ours).eval()
    texts = test.sources[:args.sentences]
    ids = [x[1:] for x in tokenizer.encode(texts)]  # pieces + [EOS]
    encoded = tokenizer.pad(ids)
    src, mask = encoded.input_ids, encoded.attention_mask
    if args.only in (None, "decoding"):
        decoding_rows(model, src, mask)
    if args.only in (None, "attention"):
        attention_row(model, src, mask)
    print(f"decoding: {len(texts)} test_2016_flickr sentences in one batch, "
          f"{'trained run ' + str(args.run) if args.run else 'random model (worst case)'}")
    return 0


def decoding_rows(model: Seq2SeqTransformer, src: torch.Tensor, mask: torch.Tensor) -> None:
    """Greedy with the cache vs recomputing the prefix, and beam 5 vs greedy."""
    with torch.no_grad():
        t_cached, cached = timed(lambda: greedy(model, src, mask))
        t_full, full = timed(lambda: greedy(model, src, mask, use_cache=False))
        t_beam, _ = timed(lambda: beam_search(model, src, mask, beam=5))
    if cached != full:
        raise SystemExit("greedy output with the cache differs from recomputing the prefix")
    n = src.shape[0]
    print(f"{'greedy: cache vs recomputing the prefix (sent/s)':<52} {n / t_cached:>12,.1f} "
          f"{n / t_full:>12,.1f} {t_full / t_cached:>6.2f}x  >= 3x (identical output: yes)")
    print(f"{'beam 5 vs greedy, both cached (sent/s)':<52} {n / t_beam:>12,.1f} "
          f"{n / t_cached:>12,.1f} {t_cached / t_beam:>6.2f}x  >= 0.33x")


def attention_row(model: Seq2SeqTransformer, src: torch.Tensor, mask: torch.Tensor) -> None:
    """Greedy capturing all cross-attention vs plain greedy, interleaved rounds."""
    def plain():
        return greedy_search(model, src, mask)

    def captured():
        return greedy_search(model, src, mask, attention=True)

    with torch.no_grad():
        if [h.tokens for h in plain()] != [h.tokens for h in captured()]:
            raise SystemExit("greedy output capturing the attention differs from plain greedy")
        t_capture, t_plain = time_pair(captured, plain, rounds=5, min_time=0.0)
    n = src.shape[0]
    print(f"{'greedy: capture all cross-attention vs plain (sent/s)':<52} "
          f"{n / t_capture:>12,.1f} {n / t_plain:>12,.1f} {t_plain / t_capture:>6.2f}x  "
          f">= 0.77x (capture <= 1.3x the time; identical output: yes)")


if __name__ == "__main__":
    sys.exit(main())
