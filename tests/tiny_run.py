"""A tiny TextClassifier checkpoint folder (config.json, model.safetensors, tokenizer.json),
written the way training writes one, for the inspect tests."""

from __future__ import annotations

from pathlib import Path

import torch

from attnlab.io import save_checkpoint
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.text import TextTokenizer

TEXTS = ["a good film", "a bad film", "great acting and a fine story", "dull , boring and long",
         "the best movie of the year", "the worst plot", "i loved it", "i hated it"]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]  # 1 = positive
# in the vocabulary too, so that markup characters come out as tokens, not [UNK]
XSS = "<img src=x onerror=alert(1)> </script><script>alert(2)</script>"


def make_tiny_run(folder: Path, *, pooling: str = "cls", n_layers: int = 2, n_heads: int = 4,
                  seed: int = 0, train_steps: int = 30, max_len: int = 64) -> Path:
    """Write the checkpoint, after ``train_steps`` full-batch Adam steps on :data:`TEXTS`."""
    torch.manual_seed(seed)
    tokenizer = TextTokenizer.train([*TEXTS, XSS], vocab_size=64, kind="word")
    config = ClassifierConfig(vocab_size=tokenizer.vocab_size, d_model=16,
                              n_heads=n_heads, n_layers=n_layers, d_ff=32, max_len=max_len,
                              pooling=pooling, dropout=0.0)
    model = TextClassifier(config)
    if train_steps:
        encodings = tokenizer.tokenizer.encode_batch(TEXTS)
        L = max(len(e.ids) for e in encodings)
        ids = torch.tensor([e.ids + [0] * (L - len(e.ids)) for e in encodings])  # (B, L)
        mask = (ids != 0).long()  # (B, L)
        labels = torch.tensor(LABELS)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: threads only add contention on a busy machine
        try:
            for _ in range(train_steps):
                optimizer.zero_grad()
                model(ids, mask, labels).loss.backward()
                optimizer.step()
        finally:
            torch.set_num_threads(threads)
    model.eval()
    return save_checkpoint(folder, model, {"model_type": "classifier",
                                           "model": config.to_dict(),
                                           "labels": ["negative", "positive"]},
                           tokenizer=tokenizer)
