"""Cost of attributions: integrated gradients against captum, and every method, per sentence.

A classifier of the default size (``ClassifierConfig()``: d_model 256, 4 heads, 2 layers,
rotary positions; random weights, a word vocabulary learned on SST-2 train) or a trained run
(``--run``) attributes SST-2 dev sentences of a few token lengths (specials included). All
measured in one run, interleaved, median of the rounds; each time is per sentence and includes
tokenizing and the prediction, as ``attnlab attribute`` runs them:

* ``attnlab.inspect.attribute(..., method="integrated_gradients")``: the ``steps`` Gauss-Legendre
  points, the input and the ``[PAD]`` baseline (for the completeness gap) in one batch;
* captum's ``LayerIntegratedGradients`` on the same embedding layer, same steps, nodes, baseline
  and target, ``internal_batch_size=steps`` (so captum batches the path too) and
  ``return_convergence_delta=True`` (its completeness gap); ratio = captum time / attnlab time
  (> 1: attnlab is faster). The two results are compared (max abs difference of the scores)
  so that the times are of the same computation;
* every other method of :data:`attnlab.inspect.METHODS`.

Run: ``python benchmarks/attribution.py [--lengths 10 20 40] [--sentences N] [--steps N]
[--rounds N] [--threads N] [--run RUN]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_rounds  # noqa: E402

from attnlab.inspect import METHODS, Subject, attribute, load_subject  # noqa: E402
from attnlab.models.classifier import ClassifierConfig, TextClassifier  # noqa: E402
from attnlab.text import TextTokenizer, load_split  # noqa: E402

IG = "integrated_gradients"
AGREE = 1e-4  # the largest |attnlab - captum| accepted as the same computation (float32)


def default_subject(train_texts: list[str], vocab_size: int) -> Subject:
    """``ClassifierConfig()`` with random weights (eval mode), a word vocabulary of SST-2."""
    torch.manual_seed(0)
    tokenizer = TextTokenizer.train(train_texts, vocab_size, kind="word", max_length=128)
    model = TextClassifier(ClassifierConfig(vocab_size=tokenizer.vocab_size)).eval()
    return Subject(model, tokenizer, ["negative", "positive"], "mean",
                   "ClassifierConfig(), random weights")


def sentences_of_length(subject: Subject, texts: list[str], lengths: list[int],
                        n: int) -> dict[int, list[str]]:
    """Per length, the first ``n`` texts whose token count (specials included) is nearest it."""
    counts = [len(t.ids) for t in subject.tokenizer.tokenize(texts)]
    out = {}
    for length in lengths:
        order = sorted(range(len(texts)), key=lambda i: (abs(counts[i] - length), i))
        out[length] = [texts[i] for i in order[:n]]
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), for the table header."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def captum_ig(subject: Subject, steps: int):
    """Integrated gradients of one text by captum, as ``attribute`` defines them: the
    predicted class's log-probability, non-special tokens' word vectors from ``[PAD]``'s."""
    from captum.attr import LayerIntegratedGradients

    model, pad = subject.model, subject.tokenizer.pad_token_id

    def log_probs(ids, mask):
        out = model(ids, mask)
        return torch.log_softmax(getattr(out, "logits", out), -1)  # (B, C)

    lig = LayerIntegratedGradients(log_probs, model.get_input_embeddings())

    def run(text: str) -> tuple[torch.Tensor, float]:
        enc = subject.encode([text])
        ids, mask = enc.input_ids, enc.attention_mask  # (1, L) each
        with torch.no_grad():
            target = int(log_probs(ids, mask).argmax(-1))
        base = ids.masked_fill(~enc.special_mask.bool(), pad)  # (1, L)
        scores, delta = lig.attribute(ids, base, target=target, additional_forward_args=(mask,),
                                      n_steps=steps, method="gausslegendre",
                                      internal_batch_size=steps, return_convergence_delta=True)
        return scores.sum(-1)[0].detach(), float(delta)  # (L,)
    return run


def agreement(subject: Subject, captum, texts: list[str], steps: int) -> dict[str, float]:
    """The largest |attnlab - captum| over the texts' scores and completeness gaps, and the
    largest |score| (for scale)."""
    out = {"scores": 0.0, "gaps": 0.0, "largest": 0.0}
    for text in texts:
        [a] = attribute(subject, text, method=IG, steps=steps)
        scores, gap = captum(text)
        out["scores"] = max(out["scores"], float((a.scores[0] - scores).abs().max()))
        out["gaps"] = max(out["gaps"], abs(a.completeness_gap[0] - gap))
        out["largest"] = max(out["largest"], float(a.scores[0].abs().max()))
    return out


def timings(subject: Subject, captum, texts: dict[int, list[str]], steps: int,
            rounds: int) -> dict[tuple[str, int], float]:
    """Seconds per sentence of captum's IG and of every method, per length, interleaved."""
    def method(name: str, group: list[str]):
        return lambda: attribute(subject, group, method=name, steps=steps)

    def reference(group: list[str]):
        return lambda: [captum(text) for text in group]

    times = {}
    for length, group in texts.items():
        fns = {"captum": reference(group)} | {m: method(m, group) for m in METHODS}
        for name, t in time_rounds(fns, rounds).items():
            times[name, length] = t / len(group)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40],
                        help="token lengths of the sentences (specials included)")
    parser.add_argument("--sentences", type=int, default=3, help="sentences per length")
    parser.add_argument("--steps", type=int, default=50, help="integrated gradients' points")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=14000,
                        help="the random model's word vocabulary")
    parser.add_argument("--run", help="a trained classifier run instead of random weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject = (load_subject(args.run) if args.run
               else default_subject(load_split("sst2", "train").texts, args.vocab_size))
    subject.model.eval()
    texts = sentences_of_length(subject, load_split("sst2", "dev").texts, args.lengths,
                                args.sentences)
    captum = captum_ig(subject, args.steps)
    agree = agreement(subject, captum, [t for group in texts.values() for t in group],
                      args.steps)
    times = timings(subject, captum, texts, args.steps, args.rounds)

    print(f"attribution per sentence, {subject.name}, {cpu_model()}, "
          f"{device_name('cpu')}, steps {args.steps}, "
          f"{args.sentences} sentence(s) per length, median of {args.rounds} rounds")
    print(f"{'method':34}" + "".join(f"{f'L={n} ms':>11}" for n in args.lengths))
    rows = [(IG, IG), ("captum LayerIntegratedGradients", "captum"),
            *((m, m) for m in METHODS if m != IG)]
    for label, key in rows:
        print(f"{label:34}" + "".join(f"{times[key, n] * 1e3:>11.2f}" for n in args.lengths))
    print(f"{'IG ratio (captum / attnlab)':34}"
          + "".join(f"{times['captum', n] / times[IG, n]:>10.2f}x" for n in args.lengths))
    print(f"IG agreement: max |attnlab - captum| {agree['scores']:.2e} (largest |score| "
          f"{agree['largest']:.2e}), completeness gaps within {agree['gaps']:.2e}")
    if agree["scores"] > AGREE:
        raise SystemExit(f"integrated gradients differ from captum's by {agree['scores']:.2e} "
                         f"> {AGREE}: the times are not of the same computation")


if __name__ == "__main__":
    main()
