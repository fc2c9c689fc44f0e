"""``attnlab show``, ``attnlab heads`` and ``attnlab serve``: thin wrappers over
:mod:`attnlab.inspect` (parse, call, print)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from attnlab.errors import UsageError
from attnlab.inspect.alignment import align, pharaoh, word_attention
from attnlab.inspect.app import (
    MAX_CHARS,
    allowed_hosts,
    default_example,
    non_loopback_warning,
    serve,
)
from attnlab.inspect.head_report import (
    compare_pruned,
    data_name,
    encode_batches,
    format_curve,
    format_table,
    head_report,
    heads_to_prune,
    write_report,
)
from attnlab.inspect.html import attention_view, model_name
from attnlab.inspect.pictures import (
    cross_attention_grid,
    cross_attention_map,
    head_grid,
    heatmap,
    relevance_plot,
)
from attnlab.inspect.subject import load_subject, save_pruned_run
from attnlab.inspect.translation_view import translation_view
from attnlab.io.checkpoint import CheckpointError
from attnlab.io.registry import model_type_of
from attnlab.tasks.translation.pipeline import MODEL_TYPE as TRANSLATOR
from attnlab.tasks.translation.use import load_translator, translate
from attnlab.text import load_split

__all__ = [
    "add_heads_arguments",
    "add_serve_arguments",
    "add_show_arguments",
    "run_heads",
    "run_serve",
    "run_show",
]

MODEL_HELP = "a training run or checkpoint folder, or a pretrained name (all-MiniLM-L6-v2)"


# --- show -------------------------------------------------------------------------------------

def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab show``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="sentence(s) to look at")
    parser.add_argument("--layer", type=int,
                        help="layer to draw (default: rollout only; for a translation run, "
                             "every decoder layer's cross-attention)")
    parser.add_argument("--head", type=int, help="head of --layer to draw (default: all heads)")
    parser.add_argument("--words", action="store_true",
                        help="translation runs: merge subword pieces into words (attention to a "
                             "word sums its pieces', from a word averages them)")
    parser.add_argument("--beam", type=int, default=1,
                        help="translation runs: beam size (1: greedy) [default: 1]")
    parser.add_argument("--out", type=Path,
                        help="write a picture of the first sentence (PNG unless the name ends "
                             "in another format's suffix: .svg, .pdf, ...)")
    parser.add_argument("--html", type=Path,
                        help="write one self-contained HTML explorer page for all sentences "
                             "(translation runs: encoder self-, decoder self- and "
                             "cross-attention)")


def run_show(args: argparse.Namespace) -> int:
    """Print each sentence's prediction and rollout; draw the picture and page asked for."""
    if args.head is not None and args.layer is None:
        raise UsageError("--head needs --layer")
    if _is_translator(args.model):
        return _show_translation(args)
    if args.words or args.beam != 1:
        raise UsageError(f"--{'words' if args.words else 'beam'} is for translation runs; "
                         f"{args.model} is not one")
    subject = load_subject(args.model)
    subject.tokenizer.encode(args.texts)  # refuses a text without tokens, as predict does
    out = _picture_path(args.out) if args.out is not None else None
    attended = subject.attend(args.texts)
    for i, a in enumerate(attended):
        if a.truncated:
            print(f"attnlab show: text {i} was cut to {subject.max_length} tokens (the model's "
                  f"longest input)", file=sys.stderr)
    for a in attended:
        print(a.text)
        if a.prediction is not None:
            probs = ", ".join(f"{n} {p:.3f}" for n, p in zip(subject.labels, a.prediction.probs,
                                                               strict=True))
            print(f"  prediction: {a.prediction.label} ({probs})")
        print("  rollout: " + " ".join(f"{t}:{float(r):.2f}" for t, r in
                                       zip(a.tokens, a.relevance, strict=True)))
    first = attended[0]
    n_layers = len(first.weights)
    if args.layer is not None and not -n_layers <= args.layer < n_layers:
        raise UsageError(f"--layer must be in [0, {n_layers}) for {subject.name}, got "
                         f"{args.layer}")
    if out is not None:
        if args.layer is None:
            fig = relevance_plot(first.tokens, first.relevance,
                                 title=f"attention rollout ({subject.pooling} pooling)")
        else:
            w = first.weights[args.layer]  # (H, L, L)
            if args.head is None:
                fig = head_grid(w, first.tokens, layer=args.layer)
            elif not 0 <= args.head < w.shape[0]:
                raise UsageError(f"--head must be in [0, {w.shape[0]}) for layer {args.layer}, "
                                 f"got {args.head}")
            else:
                fig = heatmap(w[args.head], first.tokens,
                              title=f"layer {args.layer}, head {args.head}")
        _save(fig, out)
    if args.html is not None:
        print(f"wrote {attention_view(subject, args.texts).save(args.html)}")
    return 0


def _is_translator(spec: str) -> bool:
    """Whether ``spec`` is a run or checkpoint folder of a translation model."""
    try:
        return Path(spec).is_dir() and model_type_of(spec) == TRANSLATOR
    except (FileNotFoundError, CheckpointError):
        return False


def _show_translation(args: argparse.Namespace) -> int:
    """Print each translation and its word alignment; draw the first one's cross-attention."""
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    run = load_translator(args.model)
    found = translate(run, args.texts, beam=args.beam, attention=True)
    words = [word_attention(run.tokenizer, t.text, t.ids, t.attention) for t in found]
    for t, w in zip(found, words, strict=True):
        print(t.text)
        print(f"  translation: {t.translation}")
        print(f"  alignment: {pharaoh(align(w.weights))}")
    first, merged = found[0], words[0]
    weights, rows, columns = ((merged.weights, merged.target_words, merged.source_words)
                              if args.words else
                              (first.attention, first.target_tokens, first.source_tokens))
    n_layers, n_heads = weights.shape[:2]  # (L, H, T|J, S|I)
    if args.layer is not None and not -n_layers <= args.layer < n_layers:
        raise UsageError(f"--layer must be in [0, {n_layers}) for {args.model}'s decoder, got "
                         f"{args.layer}")
    if args.head is not None and not 0 <= args.head < n_heads:
        raise UsageError(f"--head must be in [0, {n_heads}), got {args.head}")
    if args.html is not None:
        view = translation_view(run, args.texts, beam=args.beam, name=model_name(args.model))
        print(f"wrote {view.save(args.html)}")
    if args.out is None:
        return 0
    if args.head is not None:
        fig = cross_attention_map(weights[args.layer, args.head], rows, columns,
                                  title=f"layer {args.layer}, head {args.head}")
    elif args.layer is not None:
        fig = cross_attention_grid(weights[args.layer][None], rows, columns,  # (1, H, T, S)
                                   layers=[args.layer % n_layers])
    else:
        fig = cross_attention_grid(weights, rows, columns)
    _save(fig, _picture_path(args.out))
    return 0


def _save(fig, out: Path) -> None:
    """Write ``fig`` to ``out`` and say so; an unknown format is the user's mistake."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=120)
    except ValueError as err:  # "Format 'xyz' is not supported (supported formats: ...)"
        raise UsageError(f"--out {out}: {err}") from None
    print(f"wrote {out}")


def _picture_path(out: Path) -> Path:
    """The file ``--out`` names: ``.png`` added to a name without a suffix, as matplotlib
    adds it, so that the path printed is the file written."""
    return out.with_name(out.name + ".png") if not out.suffix else out


# --- heads ------------------------------------------------------------------------------------

def add_heads_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab heads``."""
    parser.add_argument("run", type=Path, help="a training run or checkpoint folder")
    parser.add_argument("--data", default="sst2",
                        help="data set name (looked up under $ATTNLAB_DATA) or folder")
    parser.add_argument("--split", default="dev", help="split measured on (default dev)")
    parser.add_argument("--out", type=Path, help="report folder (default RUN/heads)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-examples", type=int,
                        help="use only the first N examples of the split")
    parser.add_argument("--prune", type=float, metavar="SHARE",
                        help="also prune this share of heads (least important first) for real "
                             "and save the smaller model to --pruned-out")
    parser.add_argument("--pruned-out", type=Path, help="folder for the pruned checkpoint")


def run_heads(args: argparse.Namespace) -> int:
    """Measure every head, write and print the report; prune for real with ``--prune``."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.prune is not None and not (0 < args.prune < 1 and args.pruned_out):
        raise UsageError("--prune needs a share in (0, 1) and --pruned-out FOLDER")
    subject = load_subject(args.run)
    data = load_split(args.data, args.split)
    texts, labels = data.texts, data.labels
    if args.max_examples is not None:
        if args.max_examples < 1:
            raise UsageError(f"--max-examples must be >= 1, got {args.max_examples}")
        texts, labels = texts[:args.max_examples], labels[:args.max_examples]
    start = time.perf_counter()
    report = head_report(subject, texts, labels, data_name=data_name(args.data, args.split),
                         batch_size=args.batch_size)
    paths = write_report(report, args.out or args.run / "heads")
    print(format_table(report))
    print()
    print(format_curve(report))
    print(f"\n{len(texts)} examples, {time.perf_counter() - start:.1f} s; wrote "
          + ", ".join(str(p) for p in paths.values()))

    if args.prune is not None:
        heads = heads_to_prune(report, args.prune)
        out = save_pruned_run(args.run, heads, args.pruned_out)
        pruned = load_subject(out)
        result = compare_pruned(subject, pruned, encode_batches(subject, texts, labels,
                                                                args.batch_size))
        print(f"pruned {len(heads)} heads -> {out}: accuracy {result.accuracy[0]:.4f} -> "
              f"{result.accuracy[1]:.4f}, parameters {result.parameters[0]:,} -> "
              f"{result.parameters[1]:,}, forward pass over the data {result.seconds[0]:.2f} s "
              f"-> {result.seconds[1]:.2f} s")
    return 0


# --- serve ------------------------------------------------------------------------------------

def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab serve``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; any other "
                             "address answers anyone who can reach the machine)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host header names NAME (repeatable; "
                             "'*' for any). Always answered: 127.0.0.1, localhost, [::1] and "
                             "the --host address; others get 400 (against DNS rebinding)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-chars", type=int, default=MAX_CHARS,
                        help=f"longest text accepted (default {MAX_CHARS})")
    parser.add_argument("--example", metavar="TEXT",
                        help="the sentence the page opens on, already analysed (default: a "
                             "film review for a classifier, 'Ein Hund rennt durch den "
                             "Schnee.' for a translation run; '' opens on an empty box)")


def run_serve(args: argparse.Namespace) -> int:
    """Load the model and serve the explorer until interrupted."""
    warning = non_loopback_warning(args.host, args.port)
    if warning is not None:
        print(f"attnlab serve: warning: {warning}", file=sys.stderr)
    hosts = allowed_hosts(args.host, args.allow_host)
    if args.example is not None and len(args.example) > args.max_chars:
        raise UsageError(f"--example is {len(args.example)} characters; --max-chars is "
                         f"{args.max_chars}")
    translator = _is_translator(args.model)
    subject = load_translator(args.model) if translator else load_subject(args.model)
    example = (default_example(subject) if args.example is None
               else args.example if args.example.strip() else None)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    name = model_name(args.model if translator else subject.name)
    print(f"attnlab: serving {name} on http://{shown}:{args.port}/")
    serve(subject, host=args.host, port=args.port, max_chars=args.max_chars,
          allowed_hosts=hosts, example=example)
    return 0
