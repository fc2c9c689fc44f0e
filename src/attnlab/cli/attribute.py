"""``attnlab attribute``: which tokens one decision depends on, by one attribution method or all
of them. A thin wrapper over :func:`attnlab.inspect.attribution.attribute` (parse, call,
print): the subject the run opens as says what its decisions are (a classifier's label, a
translation's generated tokens); bad methods, targets and settings come back from it as
:class:`~attnlab.errors.InputError` (one line, exit 2)."""

from __future__ import annotations

import argparse
import json

from attnlab.cli.inspect import MODEL_HELP
from attnlab.errors import InputError, UsageError
from attnlab.inspect.attribution import LAYERED, METHODS, Attribution, attribute, check_options
from attnlab.inspect.mattered import DEFAULT_METHOD, format_top, format_tops, top_tokens
from attnlab.tasks.registry import open_subject
from attnlab.tasks.task import Command
from attnlab.text.files import check_utf8

__all__ = ["ATTRIBUTE", "format_attribution"]

ALL = "all"  # --method that runs every method and lists each one's top tokens
# attribute()'s arguments, as its error messages name them, and their options
OPTIONS = {"method": "method", "target": "target", "steps": "steps", "baseline": "baseline",
           "layer": "layer", "reference": "reference", "references": "reference"}
BAR = 24  # characters of the longest bar


def add_attribute_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab attribute``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("text", metavar="TEXT", help="the sentence whose decision is explained")
    parser.add_argument("--method", default=DEFAULT_METHOD,
                        help=f"one of {', '.join(METHODS)} (random: the floor), or '{ALL}': "
                             f"every method's top tokens [default: {DEFAULT_METHOD}]")
    parser.add_argument("--target", metavar="LABEL",
                        help="classifiers: the label explained, by name or index (default: "
                             "the predicted label)")
    parser.add_argument("--steps", type=int, default=50,
                        help="integrated gradients: points on the path from the baseline "
                             "[default: 50]")
    parser.add_argument("--baseline", default="pad",
                        help="integrated gradients: 'pad' (each non-special token's embedding "
                             "replaced by [PAD]'s) or 'zero' (zero embeddings) [default: pad]")
    parser.add_argument("--layer", type=int,
                        help="attention: the layer whose attention is read (default: the last)")
    parser.add_argument("--reference", metavar="TEXT",
                        help="translation runs: explain this target sentence, decoded by force "
                             "(default: the model's own greedy translation)")
    parser.add_argument("--json", action="store_true",
                        help="print the attribution as JSON (tokens, scores, method, target, "
                             "...; a list of them with --method all)")


def run_attribute(args: argparse.Namespace) -> int:
    """Which tokens a decision depends on, scored by an attribution method.

    Score every token of TEXT for the model's decision: the predicted label of a classifier
    (or --target), or each token of a translation (the model's own, or --reference). Prints
    the target and its probability, each token's score with a bar (for a translation, each
    generated token's top source tokens) and, for integrated gradients, the completeness gap
    (sum of the scores minus f(input) - f(baseline), f the target's log-probability); with
    --method all, each method's top tokens; --json prints the attribution as JSON.

    Example: attnlab attribute runs/sst2 "a gripping , funny film" --method integrated_gradients
    --steps 100
    """
    check_utf8(args.text, "TEXT")
    if args.reference is not None:
        check_utf8(args.reference, "--reference")
    subject = open_subject(args.model)
    inputs = [args.text]
    found = []
    try:  # an InputError such as "steps must be ...": name the option
        if args.method == ALL and hasattr(subject, "decisions"):  # prepared once, for all
            check_options(METHODS[0], args.steps, args.baseline, None, 0)
            inputs = [subject.decisions(args.text, target=args.target,
                                        reference=args.reference)]
        for method in METHODS if args.method == ALL else (args.method,):
            # with --method all, --layer goes to the methods that read one layer
            layer = args.layer if args.method != ALL or method in LAYERED else None
            [attribution] = attribute(
                subject, inputs, method=method, target=args.target, steps=args.steps,
                references=None if args.reference is None else [args.reference],
                baseline=args.baseline, layer=layer)
            found.append(attribution)
    except InputError as err:
        raise _as_option(err) from None
    if args.json:
        shown = found[0].to_dict() if args.method != ALL else [a.to_dict() for a in found]
        print(json.dumps(shown, ensure_ascii=False, allow_nan=False))
    elif args.method == ALL:
        print("\n".join([args.text, _decided(found[0])]
                        + [f"  {a.method}: {format_tops(a)}" for a in found]))
    else:
        print("\n".join([args.text, *format_attribution(found[0])]))
    return 0


def _as_option(err: InputError) -> InputError:
    """``err`` with the option it is about spelt as on the command line (``--steps must be
    ...``), where its message starts with the argument's name."""
    message = str(err)
    name = message.split(" ", 1)[0]
    if name in OPTIONS:
        return UsageError(f"--{OPTIONS[name]}{message[len(name):]}")
    return err


def _settings(a: Attribution) -> str:
    """``; baseline pad, steps 50`` from the method's details, or nothing."""
    if not a.details:
        return ""
    return "; " + ", ".join(f"{k} {v}" for k, v in a.details.items())


def _decided(a: Attribution) -> str:
    """What was explained: a label and its probability, or a translation's tokens."""
    if a.source_length is None:
        return f"target: {_label(a)}"
    return "targets: " + " ".join(a.targets)


def _label(a: Attribution) -> str:
    """``positive (probability 0.992)``: the label explained and the model's probability."""
    return f"{a.targets[0]} (probability {a.probabilities[0]:.3f})"


def format_attribution(a: Attribution) -> list[str]:
    """The lines ``attnlab attribute`` prints for one method: for one decision each token's
    score and bar, the top tokens and the completeness gap; for several, each decision's top
    source tokens."""
    if a.source_length is not None:
        width = max(len(t) for t in a.targets)
        lines = [f"{a.method}: each generated token, its probability and its top source "
                 f"tokens{_settings(a)}"]
        for d, target in enumerate(a.targets):
            gap = "" if a.completeness_gap is None else f"  (gap {a.completeness_gap[d]:.2g})"
            lines.append(f"  {target:<{width}} (p {a.probabilities[d]:.3f}) \u2190 "
                         f"{format_top(top_tokens(a, d, stop=a.source_length))}{gap}")
        return lines
    scores = a.scores[0].tolist()  # (L,)
    largest = max((abs(s) for s in scores), default=0.0) or 1.0
    width = max(len(t) for t in a.tokens)
    lines = [f"{a.method} for {_label(a)}{_settings(a)}"]
    for token, score, special in zip(a.tokens, scores, a.special, strict=True):
        bar = ("\u2588" if score >= 0 else "\u2592") * round(BAR * abs(score) / largest)
        lines.append(f"  {token:<{width}} {score:+.4f} {bar}{'  (special)' if special else ''}")
    lines.append(f"  top: {format_top(top_tokens(a))}")
    if a.completeness_gap is not None:
        lines.append(f"  completeness gap: {a.completeness_gap[0]:+.2g} (sum of the scores "
                     f"minus f(input) - f(baseline), f = log-probability of the target)")
    return lines


ATTRIBUTE = Command.of(run_attribute, add_attribute_arguments)
