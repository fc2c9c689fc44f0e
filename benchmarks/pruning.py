"""Speed and size of a model with heads pruned for real: all-MiniLM-L6-v2 on SST-2 dev.

Prunes a share of the heads of every layer (the last heads of each layer; which ones does not
change the cost) with :func:`attnlab.inspect.prune_heads`, and times a forward pass over the
dev sentences (batches of 32, no autograd) against the unpruned model, interleaved, median of
the rounds. Also checks that the pruned model's output equals the unpruned one with those
heads masked.

Run: ``python benchmarks/pruning.py [--quick] [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _minilm import add_arguments, model_and_batches  # noqa: E402
from _timing import time_rounds  # noqa: E402

from attnlab.inspect import attention_modules, head_gates, prune_heads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    base, batches = model_and_batches(args)
    n_params = sum(p.numel() for p in base.parameters())

    def forward(model):
        def run():
            with torch.inference_mode():
                for b in batches:
                    model(b.input_ids, b.attention_mask)
        return run

    fns = {"unpruned (12 heads per layer)": forward(base)}
    sizes = {"unpruned (12 heads per layer)": n_params}
    check = batches[0]
    for keep in (9, 6, 3):
        model = copy.deepcopy(base)
        names = list(attention_modules(model))
        heads = {name: list(range(keep, 12)) for name in names}
        gates = {name: (torch.arange(12) < keep).float() for name in names}
        with torch.inference_mode(), head_gates(base, gates):
            masked = base(check.input_ids, check.attention_mask).last_hidden_state
        prune_heads(model, heads)
        with torch.inference_mode():
            pruned = model(check.input_ids, check.attention_mask).last_hidden_state
        torch.testing.assert_close(pruned, masked, rtol=1e-4, atol=1e-4)
        label = f"{keep} heads per layer ({100 * (12 - keep) // 12}% pruned)"
        fns[label] = forward(model)
        sizes[label] = sum(p.numel() for p in model.parameters())

    times = time_rounds(fns, args.rounds)
    ref = times["unpruned (12 heads per layer)"]
    n_texts = sum(len(b.input_ids) for b in batches)
    print(f"all-MiniLM-L6-v2, {n_texts} SST-2 dev sentences, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds; pruned output "
          f"equals masked output (checked)")
    print(f"{'model':34s} {'parameters':>11s} {'s/pass':>8s} {'speed-up':>9s}")
    for name, t in times.items():
        print(f"{name:34s} {sizes[name]:11,d} {t:8.3f} {ref / t:9.2f}")


if __name__ == "__main__":
    main()
