"""Our Seq2SeqTransformer inside the nn.Transformer peer's own training loop, to tell the model
apart from the rest of the pipeline.

``../shared/baselines/mt_nn_transformer.py`` trains its model with its own tokenizer, batches,
schedule and loop. This script repeats that loop step for step (NFKC + Metaspace BPE 8k, batches
of ~2k tokens sorted by source length, AdamW 1e-3 with β₂ 0.98 and weight decay 0.01 on every
parameter, inverse square root after 400 warm-up steps, label smoothing 0.1, clipping at 1.0)
with either the peer's model (``--model peer``) or ours at the same size (``--model attnlab``:
3+3 layers, d_model 256, 4 heads, feed-forward 512, dropout and attention dropout 0.1, tied
embeddings, sinusoidal positions), for ``--steps`` steps. It prints the mean training loss every
50 steps, then the dev (val) loss per target token and cased sacreBLEU of greedy decoding of
test_2016_flickr (both models decoded by the same loop, recomputing the prefix, at most 80
tokens, as the peer does). The seed fixes the data order, so both models see the same batches.

Options change one part at a time: towards our pipeline (``--batches sorted``: sorted by source
then target length; ``--schedule linear``: decay to 0 at the last step), or our model towards the
peer's (``--activation relu``, ``--embed-dropout 0``, ``--init torch``: Xavier as
``nn.Transformer``).

Usage::

    OMP_NUM_THREADS=1 python scripts/translation_peer_loop.py --model attnlab --steps 570
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import time
from collections import Counter
from pathlib import Path

import sacrebleu
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import nn

from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.train.optim import lr_factor

PEER = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "mt_nn_transformer.py"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
PAD, BOS, EOS = 0, 2, 3


def load_peer():
    spec = importlib.util.spec_from_file_location("mt_nn_transformer", PEER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(split: str, lang: str) -> list[str]:
    return (DATA / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()


def pad(rows: list[list[int]]) -> torch.Tensor:
    n = max(map(len, rows))
    return torch.tensor([r + [PAD] * (n - len(r)) for r in rows])  # (B, n)


def token_batches(pairs, rng: random.Random, tokens: int = 2048, by_target: bool = False
                  ) -> list[list[int]]:
    """The peer's batches: sorted by source length (random ties), rows x longest <= tokens;
    ``by_target`` sorts by target length among equal sources too, as our pipeline does."""
    def key(i):
        return (len(pairs[i][0]), len(pairs[i][1]) if by_target else 0, rng.random())

    order = sorted(range(len(pairs)), key=key)
    out, cur, longest = [], [], 0
    for i in order:
        n = max(longest, len(pairs[i][0]), len(pairs[i][1]))
        if cur and n * (len(cur) + 1) > tokens:
            out.append(cur)
            cur, n = [], max(len(pairs[i][0]), len(pairs[i][1]))
        cur.append(i)
        longest = n
    out.append(cur)
    rng.shuffle(out)
    return out


def build(args: argparse.Namespace, vocab: int):
    """The model and its ``logits(x (B, S), y (B, T)) -> (B, T, V)``."""
    if args.model == "peer":
        model = load_peer().Baseline(vocab, 256, 4, 3)
        return model, model
    model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=vocab, d_model=256, n_heads=4,
                                             d_ff=512, attn_dropout=0.1,
                                             activation=args.activation))
    model.embed_dropout.p = args.embed_dropout
    if args.init == "torch":
        torch_init(model)
    return model, lambda x, y: model(x, (x != PAD).long(), y, (y != PAD).long()).logits


@torch.no_grad()
def torch_init(model: Seq2SeqTransformer) -> None:
    """Re-initialise the layers as ``torch.nn.Transformer`` does: Xavier-uniform on every
    matrix, the query, key and value projections as one packed (3D, D) matrix."""
    for module in (*model.encoder.layers, *model.decoder.layers):
        for name, param in module.named_parameters():
            if param.ndim < 2:
                continue
            fan_out = 3 * param.shape[0] if name.split(".")[-2] in ("q_proj", "k_proj",
                                                                   "v_proj") else param.shape[0]
            bound = math.sqrt(6 / (fan_out + param.shape[1]))
            param.uniform_(-bound, bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("peer", "attnlab"), default="attnlab")
    parser.add_argument("--steps", type=int, default=570)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", choices=("gelu", "relu"), default="gelu",
                        help="ours only: the feed-forward non-linearity (the peer's is ReLU)")
    parser.add_argument("--embed-dropout", type=float, default=0.1,
                        help="ours only: dropout on the embeddings (the peer has none)")
    parser.add_argument("--init", choices=("ours", "torch"), default="ours",
                        help="ours only: torch re-initialises the layers as nn.Transformer")
    parser.add_argument("--batches", choices=("peer", "sorted"), default="peer",
                        help="sorted: by source then target length, as our pipeline")
    parser.add_argument("--schedule", choices=("inverse_sqrt", "linear"), default="inverse_sqrt",
                        help="linear: after the 400 warm-up steps, down to 0 at --steps")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    src, tgt = read("train", "de"), read("train", "en")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.NFKC(), pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(src + tgt, trainers.BpeTrainer(
        vocab_size=8000, special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))

    def encode(texts):
        return [e.ids for e in tok.encode_batch(texts)]

    pairs = [(s, [BOS] + t + [EOS]) for s, t in zip(encode(src), encode(tgt), strict=True)]
    model, logits_of = build(args, tok.get_vocab_size())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    step, window, start = 0, 0.0, time.perf_counter()
    model.train()
    while step < args.steps:
        for rows in token_batches(pairs, rng, by_target=args.batches == "sorted"):
            x, y = pad([pairs[i][0] for i in rows]), pad([pairs[i][1] for i in rows])
            for group in opt.param_groups:
                group["lr"] = 1e-3 * lr_factor(step, args.steps, 400, args.schedule)
            logits = logits_of(x, y[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y[:, 1:].flatten(), ignore_index=PAD,
                                   label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step, window = step + 1, window + loss.item()
            if step % 50 == 0:
                print(f"{args.model} step {step} train loss {window / 50:.3f} "
                      f"{time.perf_counter() - start:.0f}s", flush=True)
                window = 0.0
            if step >= args.steps:
                break
    model.eval()
    print(f"{args.model} after {step} steps: val loss {val_loss(logits_of, encode):.3f}; "
          f"test_2016_flickr greedy {greedy_bleu(logits_of, encode, tok)}", flush=True)


@torch.no_grad()
def val_loss(logits_of, encode) -> float:
    """Cross-entropy per target token on the val split (no label smoothing)."""
    pairs = [(s, [BOS] + t + [EOS]) for s, t in zip(encode(read("val", "de")),
                                                     encode(read("val", "en")), strict=True)]
    total, count = 0.0, 0
    for i in range(0, len(pairs), 100):
        x, y = pad([p[0] for p in pairs[i:i + 100]]), pad([p[1] for p in pairs[i:i + 100]])
        logits = logits_of(x, y[:, :-1])  # (B, T, V)
        total += F.cross_entropy(logits.flatten(0, 1), y[:, 1:].flatten(), ignore_index=PAD,
                                 reduction="sum").item()
        count += int((y[:, 1:] != PAD).sum())
    return total / count


@torch.no_grad()
def greedy_bleu(logits_of, encode, tok, max_len: int = 80) -> str:
    """The peer's greedy decoding (the whole prefix recomputed each step), scored."""
    sources, refs = read("test_2016_flickr", "de"), read("test_2016_flickr", "en")
    hyps = []
    for i in range(0, len(sources), 128):
        x = pad(encode(sources[i:i + 128]))  # (B, S)
        y = torch.full((x.shape[0], 1), BOS)  # (B, 1)
        done = torch.zeros(x.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            nxt = logits_of(x, y)[:, -1].argmax(-1).masked_fill(done, PAD)  # (B,)
            y = torch.cat([y, nxt[:, None]], 1)  # (B, t + 1)
            done |= nxt == EOS
            if done.all():
                break
        for row in y[:, 1:].tolist():
            row = row[: row.index(EOS)] if EOS in row else row
            hyps.append(tok.decode([t for t in row if t != PAD]))
    bleu = sacrebleu.BLEU()
    return (f"{bleu.corpus_score(hyps, [refs])} ({bleu.get_signature()}); a word 3+ times in "
            f"{repeating(hyps)} hypotheses ({repeating(refs)} references)")


def repeating(texts: list[str]) -> int:
    """How many texts use one word three times or more."""
    return sum(max(Counter(t.split()).values(), default=0) >= 3 for t in texts)


if __name__ == "__main__":
    main()
