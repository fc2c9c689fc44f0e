"""The translation task's commands: ``attnlab train --task translation``, ``attnlab evaluate``
of a translation run, ``attnlab translate`` and ``attnlab experiment heads --task
translation``, and :data:`TRANSLATION`, the task object.

Options come from :class:`~attnlab.tasks.translation.config.TranslationDataConfig`,
:class:`~attnlab.models.seq2seq.Seq2SeqConfig` and :class:`~attnlab.train.TrainConfig`, one per
field; the handlers only take the parsed options and print.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from attnlab.errors import UsageError
from attnlab.inspect.alignment import pharaoh, word_alignment
from attnlab.models.seq2seq import Seq2SeqConfig
from attnlab.tasks.faithfulness import (
    Example,
    add_faithfulness_arguments,
    run_faithfulness_command,
    settings_of,
)
from attnlab.tasks.options import add_config_options, options_given
from attnlab.tasks.runs import add_run_folder_arguments, print_trained
from attnlab.tasks.task import Command, Task
from attnlab.tasks.translation.config import (
    DEFAULT_RECIPE,
    SMALL_RECIPE,
    TranslationDataConfig,
)
from attnlab.tasks.translation.experiment import HEADS, experiment_from_options
from attnlab.tasks.translation.launch import MODEL_FIXED, OPTION_NAMES, train_from_options
from attnlab.tasks.translation.subject import TranslationSubject
from attnlab.tasks.translation.translator import MODEL_TYPE, Translator
from attnlab.tasks.translation.use import evaluate_run
from attnlab.text.files import check_utf8
from attnlab.text.parallel import load_parallel_split, read_lines
from attnlab.train.config import TrainConfig

__all__ = ["TRANSLATION", "alignment_layer", "check_output", "texts_to_translate"]

TEST_SPLIT = "test_2016_flickr"  # the split evaluate scores by default
# faithfulness: cross-attention, attention × gradient and two gradient methods (random and
# leave-one-out always run)
FAITHFULNESS_METHODS = ("attention", "attention_grad", "grad_input", "integrated_gradients")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab train --task translation``."""
    add_run_folder_arguments(parser)
    recipe = DEFAULT_RECIPE  # the defaults shown are the recipe's
    add_config_options(parser.add_argument_group(
        "data (the default recipe's; --batch-size alone batches by pairs)"),
        TranslationDataConfig, "data", rename=OPTION_NAMES["data"], defaults=recipe["data"])
    add_config_options(parser.add_argument_group("model (the default recipe's)"),
                       Seq2SeqConfig, "model", rename=OPTION_NAMES["model"], skip=MODEL_FIXED,
                       defaults=recipe["model"])
    add_config_options(parser.add_argument_group("training (the default recipe's)"),
                       TrainConfig, "train", defaults=recipe["train"])


def run_train(args: argparse.Namespace) -> int:
    """Train a model (tokenizer included) into a run folder; --task picks the task.

    Train a joint subword tokenizer and an encoder-decoder Transformer on parallel text,
    evaluating dev loss and BLEU; keep the best/ and last/ checkpoints; print a summary. Runs
    under torchrun for data parallelism.

    Example: attnlab train --task translation --data multi30k --source de --target en --out
    runs/de-en
    """
    run = train_from_options(args.out, data=options_given(args, "data"),
                             model=options_given(args, "model"),
                             train=options_given(args, "train"), resume=args.resume,
                             overwrite=args.overwrite, progress=not args.quiet)
    print_trained(args.out, run.n_parameters, run.result,
                  f" ({run.dropped} long training pairs left out)")
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab evaluate`` for a translation run."""
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("--data", default=None,
                        help="data set name or folder [default: the one the run was trained on]")
    parser.add_argument("--split", default=TEST_SPLIT,
                        help=f"split to evaluate [default: {TEST_SPLIT}]")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy) [default: 1]")
    parser.add_argument("--out", type=Path, help="write the hypotheses to this file, one a line")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with keys bleu, chrf, n, signature")


def run_evaluate(args: argparse.Namespace) -> int:
    """A trained run on a split: its task's figures.

    Translate a split with a translation run's best checkpoint (greedy, or beam search with
    --beam) and print its cased sacreBLEU and chrF with their signatures.

    Example: attnlab evaluate runs/de-en --split test_2016_flickr --beam 5
    """
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    if args.out is not None:
        check_output(args.out, "--out")  # before the whole split is translated
    translator = Translator.load(args.run)
    source = args.data or translator.data_field("source", required=False)
    if not source:
        raise UsageError(f"{args.run} does not record its data set; pass --data")
    result = evaluate_run(args.run, source, args.split,
                          source_lang=translator.data_field("source_lang"),
                          target_lang=translator.data_field("target_lang"), beam=args.beam)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(h + "\n" for h in result.hypotheses), encoding="utf-8")
    score = result.score
    if args.json:
        print(json.dumps(score.to_dict()))
    else:
        print(f"{source} {args.split}: BLEU {score.bleu:.2f}  chrF {score.chrf:.2f}  n {score.n}"
              f"  ({'greedy' if args.beam == 1 else f'beam {args.beam}'})")
        print(score.signature)
    return 0


def add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab translate``."""
    parser.add_argument("run", type=Path, help="a translation run folder (best/, else last/)")
    parser.add_argument("texts", nargs="*", help="texts to translate (or lines of --file/stdin)")
    parser.add_argument("--file", type=Path, help="also translate each non-empty line of FILE")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy) [default: 1]")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object a line: text, translation, tokens (and "
                             "alignments)")
    parser.add_argument("--alignments", action="store_true",
                        help="after each translation, print its word alignment from the "
                             "cross-attention: Pharaoh 'i-j' pairs (source word i, target word "
                             "j, 0-based, whitespace-separated words), one per target word")
    parser.add_argument("--alignment-layer", metavar="LAYER",
                        help="decoder layer whose heads, averaged, align (negative counts from "
                             "the end), or 'mean' for all heads of all layers [default: the "
                             "penultimate layer, the only one of a one-layer decoder]")


def run_translate(args: argparse.Namespace) -> int:
    """Translate texts with a translation run.

    Translate texts given as arguments, lines of --file, or standard input (greedy, or beam
    search with --beam).

    Example: attnlab translate runs/de-en "Ein Hund rennt." --beam 5
    """
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    if args.alignment_layer is not None and not args.alignments:
        raise UsageError("--alignment-layer needs --alignments")
    texts = texts_to_translate(args.texts, args.file)
    translator = Translator.load(args.run)
    layer = alignment_layer(args.alignment_layer, translator.model.config.n_decoder_layers)
    found = translator.translate(texts, beam=args.beam, attention=args.alignments)
    cut = [n for n, t in enumerate(found, start=1) if t.truncated]
    if cut:  # one line, however many
        which = f"text {cut[0]} was" if len(cut) == 1 else (
            f"{len(cut)} texts (the first: text {cut[0]}) were")
        print(f"attnlab translate: warning: {which} cut to the model's longest input "
              f"({translator.tokenizer.max_length} tokens)", file=sys.stderr)
    for t in found:
        pairs = (word_alignment(translator.tokenizer, t.text, t.ids, t.attention, layer=layer)
                 if args.alignments else None)
        if args.json:
            record = t.to_dict() | ({} if pairs is None else {"alignments": [list(p)
                                                                              for p in pairs]})
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(t.translation)
            if pairs is not None:
                print(pharaoh(pairs))
    return 0


def texts_to_translate(given: list[str], file: Path | None) -> list[str]:
    """The texts given as arguments, then the non-blank lines of ``file``; with neither, those
    of standard input (none when it is closed or a terminal). Each must be valid UTF-8; an
    argument must not be blank."""
    texts = [check_utf8(text, f"TEXT {n}") for n, text in enumerate(given, start=1)]
    blank = next((n for n, text in enumerate(texts, start=1) if not text.strip()), None)
    if blank is not None:
        raise UsageError(f"TEXT {blank} is empty; give a sentence to translate")
    if file is not None:
        if not file.is_file():
            raise UsageError(f"--file not found: {file}")
        texts += [line for line in read_lines(file) if line.strip()]
    stdin = sys.stdin
    if not texts and stdin is not None and not stdin.closed and not stdin.isatty():
        texts = [check_utf8(line.rstrip("\n"), f"standard input, line {n}")
                 for n, line in enumerate(stdin, start=1) if line.strip()]
    if not texts:
        raise UsageError("no texts: give them as arguments, with --file, or on standard input")
    return texts


def check_output(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, a path through
    a file, a folder this user may not write in."""
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if existing == path and path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    if existing != path and not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing if existing != path else path, os.W_OK):
        raise UsageError(f"{option} {path}: permission denied (this user may not write it)")


def alignment_layer(value: str | None, n_layers: int) -> int | str | None:
    """``--alignment-layer``: ``None`` (the default layer), ``"mean"`` or a layer index."""
    if value is None or value == "mean":
        return value
    try:
        layer = int(value)
    except ValueError:
        raise UsageError(f"--alignment-layer must be an integer or 'mean', got {value!r}") \
            from None
    if not -n_layers <= layer < n_layers:
        raise UsageError(f"--alignment-layer must be in [{-n_layers}, {n_layers}) for this "
                         f"{n_layers}-layer decoder, or 'mean', got {layer}")
    return layer


# --- experiment -------------------------------------------------------------------------------


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab experiment heads --task translation``: the small recipe's
    settings (SMALL_RECIPE on top of DEFAULT_RECIPE), each overridable."""
    parser.add_argument("kind", choices=("heads",),
                        help="heads: one head vs several at the same d_model (--heads)")
    parser.add_argument("--out", required=True, type=Path,
                        help="experiment folder: a run folder h{H}/seed{seed} per head count and "
                             "seed, report.md, summary.json, curves.png")
    parser.add_argument("--heads", type=_head_counts, default=HEADS, metavar="H,H,...",
                        help=f"head counts compared, 1 among them [default: "
                             f"{','.join(map(str, HEADS))}]")
    parser.add_argument("--seeds", type=int, default=3, help="runs per head count [default: 3]")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here [default 0]")
    parser.add_argument("--beam", type=int, default=1,
                        help="test translations: beam size (1: greedy) [default: 1]")
    parser.add_argument("--test-sentences", type=int, default=None, metavar="N",
                        help="score only the first N test sentences [default: all]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    recipe = {group: {**DEFAULT_RECIPE[group], **SMALL_RECIPE[group]}  # the defaults shown
              for group in SMALL_RECIPE}
    add_config_options(parser.add_argument_group("data (the small recipe's)"),
                       TranslationDataConfig, "data", rename=OPTION_NAMES["data"],
                       defaults=recipe["data"])
    add_config_options(parser.add_argument_group("model (the small recipe's)"),
                       Seq2SeqConfig, "model", rename=OPTION_NAMES["model"],
                       skip=(*MODEL_FIXED, "n_heads"), defaults=recipe["model"])
    add_config_options(parser.add_argument_group("training (the small recipe's)"),
                       TrainConfig, "train", skip=("seed",), defaults=recipe["train"])


def _head_counts(text: str) -> tuple[int, ...]:
    """``--heads 1,4,8`` -> ``(1, 4, 8)``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--heads expects integers separated by commas, e.g. "
                                         f"1,4,8, got {text!r}") from None


def run_experiment(args: argparse.Namespace) -> int:
    """One head vs several of a translator, over seeds.

    One head vs 4 vs 8 of a translator on the small recipe, scored by test BLEU and chrF over
    seeds, with paired differences, beside Vaswani et al. (2017) Table 3; print the table and
    findings.

    Example: attnlab experiment heads --task translation --seeds 3 --out runs/exp-mt-heads
    """
    report = experiment_from_options(
        args.out, data=options_given(args, "data"), model=options_given(args, "model"),
        train=options_given(args, "train"), heads=args.heads, seeds=args.seeds,
        first_seed=args.first_seed, beam=args.beam, test_sentences=args.test_sentences,
        progress=not args.quiet, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.describe())
    return 0


# --- faithfulness -----------------------------------------------------------------------------


def add_faithfulness_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab faithfulness`` for a translation run."""
    add_faithfulness_arguments(parser, split=TEST_SPLIT, methods=FAITHFULNESS_METHODS,
                               measure="log_probability")


def run_faithfulness(args: argparse.Namespace) -> int:
    """How faithful each attribution method is, per reference token, over the source.

    Force-decode the references of a split; for every reference token, attribute it over the
    source and the target prefix with each method (random with several seeds), remove the top
    source tokens (deleted; the prefix and specials stay) and measure the drop in the reference
    token's log-probability: comprehensiveness and sufficiency as AOPC over the bins 1, 5, 10,
    20, 50 % of the source tokens, deletion and insertion curves, the normalised AOPC, Kendall
    τ against leave-one-out. Writes faithfulness.json, curves.png and report.md to --out.

    Example: attnlab faithfulness runs/de-en --data multi30k --split test_2016_flickr --limit 100
    """
    settings = settings_of(args)
    subject = TranslationSubject.load(args.run)
    translator = subject.translator
    source = args.data or translator.data_field("source", required=False)
    if not source:
        raise UsageError(f"{args.run} does not record its data set; pass --data")
    pairs = load_parallel_split(source, args.split,
                                source_lang=translator.data_field("source_lang"),
                                target_lang=translator.data_field("target_lang"))
    examples = [Example(text, reference=reference) for text, reference in
                zip(pairs.sources, pairs.targets, strict=True)]
    return run_faithfulness_command(args, settings, subject, examples, data=source,
                                    target="each reference token, force-decoded")


TRANSLATION = Task(
    name="translation",
    summary="translation (parallel text): an encoder-decoder Transformer with a joint subword "
            "tokenizer, decoded greedily or by beam search",
    model_types=(MODEL_TYPE,),
    commands={
        "train": Command.of(run_train, add_train_arguments),
        "evaluate": Command.of(run_evaluate, add_evaluate_arguments, takes_run=True),
        "translate": Command.of(run_translate, add_translate_arguments, takes_run=True),
        "experiment": Command.of(run_experiment, add_experiment_arguments),
        "faithfulness": Command.of(run_faithfulness, add_faithfulness_options, takes_run=True),
    },
    open_subject=TranslationSubject.load,
    experiments=("heads",),
    family_kinds=("encoder-decoder",),  # a Marian (opus-mt) folder
)
