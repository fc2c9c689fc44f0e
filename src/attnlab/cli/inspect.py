"""``attnlab show``, ``attnlab heads`` and ``attnlab serve``: thin wrappers over
:mod:`attnlab.inspect` (parse, call, print). The model opened answers for itself (an
:class:`~attnlab.inspect.protocol.Inspectable`): what it prints and draws, the options it takes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from attnlab.errors import InputError, UsageError
from attnlab.inspect.app import MAX_CHARS, allowed_hosts, non_loopback_warning, serve
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
from attnlab.inspect.html import model_name
from attnlab.inspect.roles_probe import head_roles
from attnlab.inspect.roles_report import format_roles, roles_figure
from attnlab.inspect.roles_view import roles_page, with_roles
from attnlab.inspect.subject import save_pruned_run
from attnlab.io.atomic import write_text_atomic
from attnlab.tasks.registry import open_subject
from attnlab.tasks.task import Command
from attnlab.text import load_split
from attnlab.text.files import check_utf8

__all__ = ["HEADS", "SERVE", "SHOW"]

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
    parser.add_argument("--words", action="store_true", default=None,
                        help="translation runs: merge subword pieces into words (attention to a "
                             "word sums its pieces', from a word averages them)")
    parser.add_argument("--beam", type=int, default=None,
                        help="translation runs: beam size (1: greedy) [default: 1]")
    parser.add_argument("--out", type=Path,
                        help="write a picture of the first sentence (PNG unless the name ends "
                             "in another format's suffix: .svg, .pdf, ...)")
    parser.add_argument("--html", type=Path,
                        help="write one self-contained HTML explorer page for all sentences "
                             "(translation runs: encoder self-, decoder self- and "
                             "cross-attention), with a Roles tab: every head scored on the "
                             "roles of `heads --roles`, the best induction and previous-token "
                             "heads marked")
    parser.add_argument("--no-roles", dest="roles", action="store_false",
                        help="leave the Roles tab out of the --html page (it runs the model on "
                             "a few probe texts more)")


def run_show(args: argparse.Namespace) -> int:
    """Draw a model's attention on sentences (PNG, HTML explorer).

    Print what the model made of each sentence (a prediction, the rollout and each
    attribution method's top tokens, or a translation, its word alignment and each generated
    token's top source token by integrated gradients); draw a heat map (--layer and --head),
    a grid of a layer's heads (--layer), or the overview (neither) to --out; write an HTML
    explorer with --html, with a Roles tab (heads x roles, the induction heads marked) unless
    --no-roles.

    Example: attnlab show all-MiniLM-L6-v2 "a gripping film" --layer 2 --out fig.png --html
    view.html
    """
    if args.head is not None and args.layer is None:
        raise UsageError("--head needs --layer")
    for n, text in enumerate(args.texts, start=1):
        check_utf8(text, f"TEXT {n}")
    out = _picture_path(args.out) if args.out is not None else None
    for option, path in (("--out", args.out), ("--out", out), ("--html", args.html)):
        if path is not None and path.is_dir():  # refused before the work, not after
            raise UsageError(f"{option} {path} is a folder; give a file name")
    subject = open_subject(args.model)
    options = {name: getattr(args, name) for name in ("words", "beam")
               if getattr(args, name) is not None}
    refused = sorted(set(options) - set(subject.show_options))
    if refused:
        raise UsageError(f"--{refused[0]} does not apply to {subject.task} runs; "
                         f"{args.model} is one")
    look = subject.look(args.texts, **options)
    for warning in look.warnings:
        print(f"attnlab show: {warning}", file=sys.stderr)
    print("\n".join(look.lines))
    if args.layer is not None and not -look.n_layers <= args.layer < look.n_layers:
        raise UsageError(f"--layer must be in [0, {look.n_layers}) for {subject.name}, got "
                         f"{args.layer}")
    if out is not None:
        try:
            figure = look.picture(args.layer, args.head)
        except InputError as err:  # "head must be in [0, 4) ...": name the option
            raise UsageError(f"--{err}") from None
        _save(figure, out)
    if args.html is not None:
        print(f"wrote {_explorer(subject, look, args.roles).save(args.html)}")
    return 0


def _explorer(subject, look, roles: bool):
    """The explorer page of ``look``, with the Roles tab of ``subject``'s heads if ``roles``;
    a model the role probe does not fit (too short for the repeated tokens) gets the page
    without it and a warning."""
    view = look.view()
    if not roles:
        return view
    try:
        return with_roles(view, head_roles(subject))
    except InputError as err:
        print(f"attnlab show: no Roles tab: {err}", file=sys.stderr)
        return view


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
    parser.add_argument("run", type=Path, help="a training run or checkpoint folder (with "
                        "--roles, also a pretrained name: all-MiniLM-L6-v2)")
    parser.add_argument("--data", help="data set name (looked up under $ATTNLAB_DATA) or folder "
                        "[default: sst2; with --roles, a few fixed sentences]")
    parser.add_argument("--split", default="dev", help="split measured on (default dev)")
    parser.add_argument("--out", type=Path, help="report folder (default RUN/heads); with "
                        "--roles, a heat map of heads x roles (PNG unless another suffix)")
    parser.add_argument("--roles", action="store_true",
                        help="score every head on the roles of the literature (previous-token, "
                             "[CLS], [SEP], punctuation, broad, duplicate-token, induction) "
                             "instead of importance; needs no labelled data")
    parser.add_argument("--json", action="store_true", help="with --roles: print a JSON dict")
    parser.add_argument("--html", type=Path, help="with --roles: write the heat map of heads x "
                        "roles as one self-contained HTML page")
    parser.add_argument("--repeat-length", type=int, default=20,
                        help="with --roles: random tokens per half of a repeated sequence")
    parser.add_argument("--sequences", type=int, default=4,
                        help="with --roles: random repeated sequences averaged over")
    parser.add_argument("--seed", type=int, default=0, help="with --roles: seeds the tokens")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-examples", type=int,
                        help="use only the first N examples of the split")
    parser.add_argument("--prune", type=float, metavar="SHARE",
                        help="also prune this share of heads (least important first) for real "
                             "and save the smaller model to --pruned-out")
    parser.add_argument("--pruned-out", type=Path, help="folder for the pruned checkpoint")


def run_heads(args: argparse.Namespace) -> int:
    """Importance, statistics and pruning curve of every head.

    Per layer and head: importance (Michel et al. 2019), entropy, attention distance, accuracy
    with that head masked; accuracy against the share of heads pruned. Writes report.md,
    pruning_curve.png and heads.json; with --prune, prunes for real.

    With --roles: every head's role scores instead (see attnlab.inspect.roles), as a table,
    --json, a heat map to --out and an HTML page of it to --html.

    Example: attnlab heads runs/sst2 --data sst2; attnlab heads runs/sst2 --roles --out r.png
    """
    if args.roles:
        return _run_roles(args)
    for option, value in (("--json", args.json), ("--html", args.html)):
        if value:
            raise UsageError(f"{option} needs --roles")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.prune is not None and not (0 < args.prune < 1 and args.pruned_out):
        raise UsageError("--prune needs a share in (0, 1) and --pruned-out FOLDER")
    subject = open_subject(args.run)
    if subject.labels is None:
        raise UsageError(f"heads measures a classifier's heads on labelled data; {args.run} "
                         f"({subject.task}) has no classification head")
    data = load_split(args.data or "sst2", args.split)
    texts, labels = data.texts, data.labels
    if args.max_examples is not None:
        if args.max_examples < 1:
            raise UsageError(f"--max-examples must be >= 1, got {args.max_examples}")
        texts, labels = texts[:args.max_examples], labels[:args.max_examples]
    start = time.perf_counter()
    report = head_report(subject, texts, labels,
                         data_name=data_name(args.data or "sst2", args.split),
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
        pruned = open_subject(out)
        result = compare_pruned(subject, pruned, encode_batches(subject, texts, labels,
                                                                args.batch_size))
        print(f"pruned {len(heads)} heads -> {out}: accuracy {result.accuracy[0]:.4f} -> "
              f"{result.accuracy[1]:.4f}, parameters {result.parameters[0]:,} -> "
              f"{result.parameters[1]:,}, forward pass over the data {result.seconds[0]:.2f} s "
              f"-> {result.seconds[1]:.2f} s")
    return 0


def _run_roles(args: argparse.Namespace) -> int:
    """``attnlab heads RUN --roles``: the role table (or --json), the heat map to --out and
    as an HTML page to --html."""
    for option, value in (("--prune", args.prune), ("--pruned-out", args.pruned_out)):
        if value is not None:
            raise UsageError(f"{option} does not apply with --roles")
    for option, value, least in (("--repeat-length", args.repeat_length, 2),
                                 ("--sequences", args.sequences, 1),
                                 ("--max-examples", args.max_examples or 1, 1)):
        if value < least:
            raise UsageError(f"{option} must be >= {least}, got {value}")
    out = _picture_path(args.out) if args.out is not None else None
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name for the heat map")
    if args.html is not None and args.html.is_dir():
        raise UsageError(f"--html {args.html} is a folder; give a file name for the page")
    texts = None
    if args.data is not None:
        texts = load_split(args.data, args.split).texts[:args.max_examples or 8]
    subject = open_subject(args.run)
    table = head_roles(subject, texts, repeat_length=args.repeat_length,
                       sequences=args.sequences, seed=args.seed)
    print(json.dumps(table.to_dict(), indent=1) if args.json else format_roles(table))
    if out is not None:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            _save(roles_figure(table), out)  # "wrote" stays off a JSON stdout
    if args.html is not None:
        page = write_text_atomic(args.html, roles_page(table))
        print(f"wrote {page}", file=sys.stderr if args.json else sys.stdout)
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
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on (default 8000; 0: any free port)")
    parser.add_argument("--max-chars", type=int, default=MAX_CHARS,
                        help=f"longest text accepted (default {MAX_CHARS})")
    parser.add_argument("--example", metavar="TEXT",
                        help="the sentence the page opens on, already analysed (default: a "
                             "film review for a classifier, 'Ein Hund rennt durch den "
                             "Schnee.' for a translation run; '' opens on an empty box)")


def run_serve(args: argparse.Namespace) -> int:
    """Live attention explorer in the browser.

    Serve a page to type a sentence and see what the model makes of it and every head, until
    interrupted; JSON API at POST /api/attend. A client has 10 s to send a whole request (its
    head of at most 16 KiB, its body of at most 64 KiB), from connecting or from its last
    answer; an idle connection is closed 5 s after its last answer; from 64 open connections
    on, new requests get 503 (attnlab.inspect.server.ServeLimits).

    Example: attnlab serve runs/sst2 --port 8000
    """
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be in [0, 65535], got {args.port}")
    if args.max_chars < 1:
        raise UsageError(f"--max-chars must be >= 1, got {args.max_chars}")
    warning = non_loopback_warning(args.host, args.port)
    if warning is not None:
        print(f"attnlab serve: warning: {warning}", file=sys.stderr)
    hosts = allowed_hosts(args.host, args.allow_host)
    if args.example is not None and len(args.example) > args.max_chars:
        raise UsageError(f"--example is {len(args.example)} characters; --max-chars is "
                         f"{args.max_chars}")
    subject = open_subject(args.model)
    example = (subject.default_example if args.example is None
               else args.example if args.example.strip() else None)
    name = model_name(subject.name)
    serve(subject, host=args.host, port=args.port, max_chars=args.max_chars,
          allowed_hosts=hosts, example=example,
          announce=lambda url: print(f"attnlab: serving {name} on {url}", flush=True))
    return 0


SHOW = Command.of(run_show, add_show_arguments)
HEADS = Command.of(run_heads, add_heads_arguments)
SERVE = Command.of(run_serve, add_serve_arguments)
