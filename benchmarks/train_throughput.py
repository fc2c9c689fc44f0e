"""Training throughput of :class:`TextClassifier` against an equal ``torch.nn.TransformerEncoder``
model, and of bf16 autocast against float32, all measured in one run.

One training step = forward, cross-entropy, backward, gradient clipping and an AdamW step, on a
batch of ``B`` sequences of ``T`` positions (a quarter of them half padding). Throughput counts
``B·T`` positions per second. Both models have the same embeddings, learned positions, pre-norm
layers (GELU feed-forward), final norm, masked mean pooling and head — and the same parameter
count, which is checked. Rows (``ratio = reference time / our time``; > 1 means we are faster):

* ours float32 vs the torch model float32 (goal ``>= 1.0x``);
* ours with ``torch.autocast(device, bfloat16)`` vs ours float32 (goal ``>= 2x``);
* the torch model with bf16 autocast vs its float32, for comparison;
* ``attnlab.train.Trainer.fit`` over ``LOOP_STEPS`` steps vs the same steps written by hand (the
  cost of the loop's bookkeeping: schedule, step ledger, logging; goal ``>= 0.98x``).

Run: ``python benchmarks/train_throughput.py [--quick] [--threads N] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_pair  # noqa: E402

from attnlab.attention.positional import LearnedPositionalEmbedding  # noqa: E402
from attnlab.models.classifier import ClassifierConfig, TextClassifier  # noqa: E402
from attnlab.tasks.classification.training import ClassificationLoss  # noqa: E402
from attnlab.train import TrainConfig, Trainer  # noqa: E402

LOOP_STEPS = 10  # optimizer steps per timed call of the loop rows


class TorchClassifier(nn.Module):
    """The same architecture as :class:`TextClassifier`, from ``torch.nn.TransformerEncoder``."""

    def __init__(self, c: ClassifierConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.positions = LearnedPositionalEmbedding(c.max_len, c.d_model)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.d_ff, c.dropout, activation="gelu", batch_first=True,
            norm_first=c.norm_first)
        self.encoder = nn.TransformerEncoder(
            layer, c.n_layers, norm=nn.LayerNorm(c.d_model) if c.norm_first else None,
            enable_nested_tensor=False)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_classes)

    def forward(self, input_ids, attention_mask, labels):
        x = self.dropout(self.positions(self.embedding(input_ids)))  # (B, T, D)
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)  # True = padding
        w = attention_mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        logits = self.head((x * w).sum(1) / w.sum(1))  # (B, D) -> (B, C)
        return F.cross_entropy(logits.float(), labels)


def make_step(model: nn.Module, batch: dict, bf16: bool, ours: bool):
    device = batch["input_ids"].device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
               else contextlib.nullcontext())
        with ctx:
            out = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = out.loss if ours else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time the work, not its queueing

    return step


def make_loops(config: ClassifierConfig, batch: dict, device: str):
    """(the Trainer's fit, the same steps by hand) over LOOP_STEPS copies of ``batch``."""
    bare = make_step(TextClassifier(config), batch, False, True)
    model = TextClassifier(config)
    train = TrainConfig(epochs=1, batch_size=batch["labels"].shape[0], lr=1e-4,
                        weight_decay=0.0, warmup_steps=0, schedule="constant",
                        label_smoothing=0.0, ema_decay=None, eval_steps=None, patience=None,
                        log_every=LOOP_STEPS, device=device)
    batches = [batch] * LOOP_STEPS

    def fit():
        loss = ClassificationLoss(train.label_smoothing)
        Trainer(model, train, batches, loss, targets=loss.targets, progress=False).fit()

    def by_hand():
        for _ in range(LOOP_STEPS):
            bare()

    return fit, by_hand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T = args.batch, args.length
    # As the torch model: learned positions, no word dropout, one dropout rate everywhere.
    config = ClassifierConfig(vocab_size=args.vocab, max_len=max(T, 128), positional="learned",
                              word_dropout=0.0, dropout=0.1, attn_dropout=0.1)
    ids = torch.randint(4, args.vocab, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[: B // 4, T // 2:] = 0  # a quarter of the batch is half padding
    batch = {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask,
             "labels": torch.randint(0, 2, (B,))}
    batch = {k: v.to(args.device) for k, v in batch.items()}

    ours, ref = TextClassifier(config), TorchClassifier(config)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    if n_ours != n_ref:
        raise SystemExit(f"parameter counts differ: ours {n_ours}, torch {n_ref}")
    fit, by_hand = make_loops(config, batch, args.device)
    steps = {
        "loop": fit, "by hand": by_hand,
        "ours fp32": make_step(ours, batch, False, True),
        "ours bf16": make_step(TextClassifier(config), batch, True, True),
        "torch fp32": make_step(ref, batch, False, False),
        "torch bf16": make_step(TorchClassifier(config), batch, True, False),
    }
    rounds = 3 if args.quick else 7
    pairs = [
        ("ours fp32 vs torch.nn.TransformerEncoder fp32", "ours fp32", "torch fp32", ">= 1.0x"),
        ("ours bf16 autocast vs ours fp32", "ours bf16", "ours fp32", ">= 2x"),
        ("torch bf16 autocast vs torch fp32 (reference)", "torch bf16", "torch fp32", "-"),
        (f"Trainer.fit vs the same {LOOP_STEPS} steps by hand", "loop", "by hand", ">= 0.98x"),
    ]
    print(f"Training step (fwd + bwd + clip + AdamW), B={B}, T={T}, d_model={config.d_model}, "
          f"H={config.n_heads}, layers={config.n_layers}, d_ff={config.d_ff}, "
          f"V={config.vocab_size}, {n_ours:,} parameters, on {device_name(args.device)}")
    header = f"{'comparison':<48} {'ours tok/s':>11} {'ref tok/s':>11} {'ratio':>7}  goal"
    print(header)
    print("-" * len(header))
    for label, a, b, goal in pairs:
        t_a, t_b = time_pair(steps[a], steps[b], rounds=rounds, min_time=0.2)
        n = B * T * (LOOP_STEPS if a == "loop" else 1)  # positions per call
        print(f"{label:<48} {n / t_a:>11,.0f} {n / t_b:>11,.0f} {t_b / t_a:>6.2f}x  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
