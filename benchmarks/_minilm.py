"""Set-up shared by the benchmarks that run all-MiniLM-L6-v2 over the SST-2 dev sentences."""

from __future__ import annotations

import argparse

import torch

from attnlab.io import load_pretrained
from attnlab.models import SentenceEncoder
from attnlab.text import TokenizedBatch, load_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="first 128 sentences only")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int,
                        help="torch threads (1 gives steadier ratios on a busy machine)")


def model_and_batches(args: argparse.Namespace) -> tuple[SentenceEncoder, list[TokenizedBatch]]:
    """MiniLM in eval mode and the dev sentences tokenized in batches of ``--batch-size``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    texts = load_split("sst2", "dev").texts
    texts = texts[:128] if args.quick else texts
    model = load_pretrained("all-MiniLM-L6-v2").eval()
    batches = [model.tokenizer(texts[i:i + args.batch_size])
               for i in range(0, len(texts), args.batch_size)]
    return model, batches
