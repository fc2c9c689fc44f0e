"""A tiny German → English run folder, trained through the command line in a few seconds, for
the tests of translation attention, views and the live app."""

from __future__ import annotations

from pathlib import Path

import torch

from attnlab.cli import main

# 40 steps at a high learning rate: outputs made of words; two decoder layers, so that the
# penultimate layer (the default for alignments) is not the last
TINY_TRANSLATION = [
    "--task", "translation", "--data", "multi30k", "--train-limit", "512", "--vocab-size", "600",
    "--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "2",
    "--d-ff", "64", "--dev-bleu-sentences", "0", "--batch-size", "32", "--max-steps", "40",
    "--lr", "0.005", "--eval-steps", "40", "--quiet"]


def make_tiny_translation_run(out: Path) -> Path:
    """Train the tiny run into ``out`` on one thread and return ``out``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *TINY_TRANSLATION, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out
