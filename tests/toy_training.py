"""Tiny models and tasks for trainer tests; run as a script it trains once (for torchrun).

Classification: each sequence holds random filler tokens and one cue token, 6 ("good") or 7
("bad"); the label says which. A masked mean of embeddings solves it.

Tokens (``--task tokens``): sentence pairs whose target lengths vary independently of the
source's, so the shards of a global batch hold different numbers of target tokens; the
translation loss (a mean per target token) on a per-token model.

Legend: ``B`` batch, ``S`` source length, ``T`` sequence / target length, ``D`` embedding size,
``C`` classes, ``V`` vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.tasks.classification.training import RunArtifacts, classification_trainer
from attnlab.tasks.translation.data import EncodedPairs, PairBatches
from attnlab.tasks.translation.training import TARGETS, TranslationLoss
from attnlab.text import LengthGroupedBatches
from attnlab.train import Callback, Loss, TrainConfig, Trainer, seed_everything
from attnlab.train.distributed import cleanup_distributed, setup_distributed
from attnlab.train.sharding import ShardedBatches

VOCAB = 24


class ToyOutput(NamedTuple):
    logits: Tensor  # (B, C)
    loss: Tensor | None


class ToyClassifier(nn.Module):
    """Embedding -> dropout -> masked mean -> LayerNorm -> Linear."""

    def __init__(self, vocab: int = VOCAB, d: int = 16, n_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        self.config = {"vocab": vocab, "d": d, "n_classes": n_classes, "dropout": dropout}
        self.emb = nn.Embedding(vocab, d)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)
        self.last_dtype: torch.dtype | None = None

    def forward(self, input_ids, attention_mask=None, labels=None) -> ToyOutput:
        x = self.drop(self.emb(input_ids))  # (B, T, D)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        m = attention_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        pooled = (x * m).sum(1) / m.sum(1)  # (B, D)
        logits = self.head(self.norm(pooled))  # (B, C)
        self.last_dtype = logits.dtype
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return ToyOutput(logits, loss)


def toy_examples(n: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """``n`` sequences of 3..12 ids with one cue token; labels 1 for cue 6, 0 for cue 7."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(n):
        length = int(torch.randint(3, 13, (1,), generator=g))
        seq = torch.randint(8, VOCAB, (length,), generator=g).tolist()
        label = int(torch.randint(0, 2, (1,), generator=g))
        seq[int(torch.randint(0, length, (1,), generator=g))] = 6 if label else 7
        ids.append(seq)
        labels.append(label)
    return ids, labels


def toy_loaders(batch_size: int, seed: int = 0, n_train: int = 512, n_dev: int = 128,
                world_size: int = 1, rank: int = 0, flip_dev: bool = False):
    """(train, dev) batch iterables; with ``world_size > 1`` each global batch is split."""
    train_ids, train_labels = toy_examples(n_train, seed=1234)
    dev_ids, dev_labels = toy_examples(n_dev, seed=4321)
    if flip_dev:
        dev_labels = [1 - y for y in dev_labels]
    train = LengthGroupedBatches(train_ids, train_labels, batch_size, seed=seed, drop_last=True,
                                 pool_batches=4)
    dev = LengthGroupedBatches(dev_ids, dev_labels, 32, shuffle=False)
    if world_size > 1:
        train = ShardedBatches(train, world_size, rank)
        dev = ShardedBatches(dev, world_size, rank)
    return train, dev


def train_toy(config: TrainConfig, out_dir=None, *, dropout: float = 0.0, resume: bool = False,
              callbacks=(), flip_dev: bool = False, world_size: int = 1, rank: int = 0,
              dist_info=None):
    """Build the toy model from ``config.seed``, train it; returns (model, FitResult)."""
    seed_everything(config.seed)
    model = ToyClassifier(dropout=dropout)
    train, dev = toy_loaders(config.batch_size, config.seed, world_size=world_size, rank=rank,
                             flip_dev=flip_dev)
    trainer = classification_trainer(
        model, config, train, dev, out_dir=out_dir, callbacks=callbacks, progress=False,
        dist_info=dist_info, artifacts=RunArtifacts(model.config, "toy", ["bad", "good"]))
    return model, trainer.fit(resume=resume)


# --- tokens: a per-token loss whose count differs between shards ---------------------------

BOS, EOS = 2, 3  # the ids PairBatches expects around each side
TOKEN_CONFIG = {"epochs": 2, "batch_size": 32, "lr": 5e-3, "log_every": 4,
                "label_smoothing": 0.0, "ema_decay": None, "patience": None, "eval_steps": None}


class TokenLogits(NamedTuple):
    logits: Tensor  # (B, T, V)


class ToyTranslator(nn.Module):
    """Each target position: its embedding plus the source's masked mean -> LayerNorm -> Linear
    (no mixing across rows or target positions: a shard's loss is that of its rows alone)."""

    def __init__(self, vocab: int = VOCAB, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask
                ) -> TokenLogits:
        m = attention_mask.unsqueeze(-1).float()  # (B, S, 1)
        source = (self.emb(input_ids) * m).sum(1) / m.sum(1)  # (B, D)
        x = self.emb(decoder_input_ids) + source[:, None]  # (B, T, D)
        return TokenLogits(self.head(self.norm(x)))  # (B, T, V)


def toy_pairs(n: int, seed: int = 99) -> EncodedPairs:
    """``n`` pairs: source 2..8 ids, target 1..14 ids (lengths independent)."""
    g = torch.Generator().manual_seed(seed)
    sources, targets = [], []
    for _ in range(n):
        src = torch.randint(8, VOCAB, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g)
        tgt = torch.randint(8, VOCAB, (int(torch.randint(1, 15, (1,), generator=g)),),
                            generator=g)
        sources.append([BOS, *src.tolist(), EOS])
        targets.append([BOS, *tgt.tolist(), EOS])
    return EncodedPairs(sources, targets, list(range(n)), 0)


def token_batches(batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
    """Global pair batches, or this process's rows of each (each side trimmed by its mask)."""
    batches = PairBatches(toy_pairs(256), batch_size, seed=seed, drop_last=True)
    if world_size > 1:
        return ShardedBatches(batches, world_size, rank)
    return batches


class NaiveShardMean:
    """The loss without the exact weighting: the mean of ``shards`` per-shard token means
    (what averaging the gradients of per-process means gives), on one process."""

    def __init__(self, shards: int = 2) -> None:
        self.shards, self.loss = shards, TranslationLoss()

    def __call__(self, outputs, batch) -> Loss:
        rows = torch.arange(batch["labels"].shape[0])
        parts = [self.loss(TokenLogits(outputs.logits[i]), {k: v[i] for k, v in batch.items()})
                 for i in torch.tensor_split(rows, self.shards)]
        value = torch.stack([p.value for p in parts]).mean()
        return Loss(value, sum(p.examples for p in parts), sum(p.tokens for p in parts))


class LocalMeanLoss(TranslationLoss):
    """The translation loss without its declaration: each process backpropagates its own mean."""

    def __call__(self, outputs, batch) -> Loss:
        loss = super().__call__(outputs, batch)
        loss.mean_over_examples = False
        return loss


def train_tokens(config: TrainConfig, loss_fn=None, *, world_size: int = 1, rank: int = 0,
                 dist_info=None) -> ToyTranslator:
    """Train the toy translator with ``loss_fn`` (default the translation loss)."""
    seed_everything(config.seed)
    model = ToyTranslator()
    trainer = Trainer(model, config, token_batches(config.batch_size, config.seed, world_size,
                                                   rank),
                      loss_fn or TranslationLoss(), targets=TARGETS, progress=False,
                      dist_info=dist_info)
    trainer.fit()
    return model


def main(argv: list[str] | None = None) -> int:
    """Train under torchrun (or alone) and write the final weights to JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--task", choices=("classification", "tokens"),
                        default="classification")
    parser.add_argument("--naive", action="store_true",
                        help="tokens: each process backpropagates its own mean (no weighting)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = setup_distributed("cpu")
    if args.task == "tokens":
        model = train_tokens(TrainConfig(**TOKEN_CONFIG),
                             LocalMeanLoss() if args.naive else None,
                             world_size=info.world_size, rank=info.rank, dist_info=info)
        if info.is_main:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "weights.json"), "w") as f:
                json.dump({k: v.tolist() for k, v in model.state_dict().items()}, f)
        cleanup_distributed()
        return 0
    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=5e-3, log_every=4,
                         label_smoothing=0.0)
    model, result = train_toy(config, os.path.join(args.out, "run"), world_size=info.world_size,
                              rank=info.rank, dist_info=info)
    if info.is_main:
        weights = {k: v.tolist() for k, v in model.state_dict().items()}
        with open(os.path.join(args.out, "weights.json"), "w") as f:
            json.dump({"weights": weights, "steps": result.global_step,
                       "val": result.best_val.to_dict()}, f)
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())


class StepClock(Callback):
    """A fake ``time.perf_counter`` that moves on one second per optimizer step."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_step_end(self, trainer, info) -> None:
        self.now += 1.0
