"""The language-model task's commands: ``attnlab train --task lm``, ``attnlab evaluate`` of a
language-model run, ``attnlab generate`` (a run or a Hugging Face decoder folder) and
``attnlab experiment induction``, and :data:`LANGUAGE_MODEL`, the task object.

Options come from :class:`~attnlab.tasks.lm.config.LMDataConfig`,
:class:`~attnlab.models.language_model.LMConfig` and :class:`~attnlab.train.TrainConfig`, one
per field; the handlers only take the parsed options and print.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from attnlab.inspect.causal_subject import CausalSubject
from attnlab.io.registry import LANGUAGE_MODEL as LANGUAGE_MODEL_TYPE
from attnlab.models.language_model import LMConfig
from attnlab.tasks.lm.config import DEFAULT_RECIPE, INDUCTION_RECIPE, LMDataConfig
from attnlab.tasks.lm.experiment import EXPERIMENTS, experiment_from_options
from attnlab.tasks.lm.launch import MODEL_FIXED, OPTION_NAMES, train_from_options
from attnlab.tasks.lm.use import evaluate_lm, generate_text, open_language_model
from attnlab.tasks.options import add_config_options, options_given
from attnlab.tasks.runs import add_run_folder_arguments, print_trained
from attnlab.tasks.task import Command, Task
from attnlab.text.files import check_utf8
from attnlab.train.config import TrainConfig

__all__ = ["LANGUAGE_MODEL", "open_lm_subject"]


def _add_recipe_options(parser: argparse.ArgumentParser, recipe: dict, what: str,
                        skip_model: tuple[str, ...] = (), skip_train: tuple[str, ...] = ()
                        ) -> None:
    """The data, model and training options, their defaults shown as ``recipe``'s."""
    add_config_options(parser.add_argument_group(f"data ({what})"), LMDataConfig, "data",
                       rename=OPTION_NAMES["data"], defaults=recipe["data"])
    add_config_options(parser.add_argument_group(f"model ({what})"), LMConfig, "model",
                       rename=OPTION_NAMES["model"], skip=(*MODEL_FIXED, *skip_model),
                       defaults=recipe["model"])
    add_config_options(parser.add_argument_group(f"training ({what})"), TrainConfig, "train",
                       skip=skip_train, defaults=recipe["train"])


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab train --task lm``."""
    add_run_folder_arguments(parser)
    _add_recipe_options(parser, DEFAULT_RECIPE, "the default recipe's")


def run_train(args: argparse.Namespace) -> int:
    """Train a model (tokenizer included) into a run folder; --task picks the task.

    Train a character or byte-level BPE tokenizer and a decoder-only Transformer on a text,
    on random windows of --context tokens, for --time-limit seconds; score the validation text
    (loss, perplexity, bits per character or byte); keep the best/ and last/ checkpoints; print
    a summary. Runs under torchrun for data parallelism.

    Example: attnlab train --task lm --data tinyshakespeare --out runs/shakespeare
    """
    run = train_from_options(args.out, data=options_given(args, "data"),
                             model=options_given(args, "model"),
                             train=options_given(args, "train"), resume=args.resume,
                             overwrite=args.overwrite, progress=not args.quiet)
    print_trained(args.out, run.n_parameters, run.result,
                  f" on {run.train_tokens:,} training tokens")
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab evaluate`` for a language-model run."""
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("--data", default=None,
                        help="data name, text file or folder [default: the run's own]")
    parser.add_argument("--split", choices=("valid", "test"), default="valid",
                        help="split scored; test needs a folder with test.txt [default: valid]")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: loss, perplexity, bits, unit, tokens, "
                             "units, bits_per_char (or bits_per_byte)")


def run_evaluate(args: argparse.Namespace) -> int:
    """A trained run on a split: its task's figures.

    Score a language-model run on consecutive windows of a split of its text: the mean loss
    per token (nats), the perplexity, and bits per character (char tokenizer) or per UTF-8 byte
    (byte-bpe).

    Example: attnlab evaluate runs/shakespeare --split valid
    """
    metrics = evaluate_lm(args.run, args.split, data=args.data)
    if args.json:
        print(json.dumps(metrics.to_dict()))
    else:
        print(f"{args.split}: {metrics.describe()} ({metrics.tokens:,} tokens, "
              f"{metrics.units:,} {metrics.unit}s)")
    return 0


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab generate``."""
    parser.add_argument("run", type=Path,
                        help="a language-model run folder, or a Hugging Face decoder folder "
                             "(GPT-2, the Llama layout) with tokenizer.json")
    parser.add_argument("prompt", help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=200,
                        help="tokens added at most [default: 200]")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divides the logits before sampling [default: 1.0]")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample among the K most likely tokens [default: all]")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample in the nucleus of probability P [default: all]")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the sampling: the same seed, the same text [default: 0]")
    parser.add_argument("--greedy", action="store_true",
                        help="the most likely token each step (no sampling)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: prompt, continuation, tokens, prompt_tokens")


def run_generate(args: argparse.Namespace) -> int:
    """Continue a prompt with a language model.

    Continue PROMPT with a language-model run or a Hugging Face decoder folder: sampled after
    --temperature, --top-k and --top-p with --seed, or greedy; print the prompt and its
    continuation.

    Example: attnlab generate runs/shakespeare "ROMEO:" --max-new-tokens 300 --top-k 40
    """
    found = generate_text(args.run, check_utf8(args.prompt, "PROMPT"), args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed, greedy=args.greedy)
    if args.json:
        print(json.dumps(found.to_dict(), ensure_ascii=False))
    else:
        print(found.prompt + found.continuation)
    return 0


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab experiment induction``: the default recipe's settings, each
    overridable."""
    parser.add_argument("kind", choices=EXPERIMENTS,
                        help="induction: when and where induction heads form")
    parser.add_argument("--out", required=True, type=Path,
                        help="experiment folder: run folders, report.md, summary.json")
    parser.add_argument("--seeds", type=int, default=3, help="runs per variant [default: 3]")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here [default 0]")
    parser.add_argument("--probe-every", type=int, default=100,
                        help="optimizer steps between two probes of the heads [default: 100]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_recipe_options(parser, INDUCTION_RECIPE, "the induction recipe's",
                        skip_model=("n_layers",), skip_train=("seed",))


def run_experiment(args: argparse.Namespace) -> int:
    """Induction heads: a one-layer vs a two-layer attention-only model, over seeds.

    Train both (equal width and heads) on windows with repeated spans and probe them every
    --probe-every steps on random tokens repeated twice: the best head's induction and
    previous-token scores, the loss of each half, the in-context score. Write report.md,
    summary.json, curves.png and induction.png (the phase change, one line per seed); print the
    table and findings.

    Example: attnlab experiment induction --data tinyshakespeare --out runs/exp-induction
    """
    report = experiment_from_options(
        args.kind, args.out, data=options_given(args, "data"),
        model=options_given(args, "model"), train=options_given(args, "train"),
        seeds=args.seeds, first_seed=args.first_seed, probe_every=args.probe_every,
        progress=not args.quiet,
        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.describe())
    return 0


def open_lm_subject(path: str | os.PathLike) -> CausalSubject:
    """A language-model run opened for show, explain, serve and heads (causal masks)."""
    lm = open_language_model(path)
    return CausalSubject(lm.model, lm.tokenizer, lm.name)


LANGUAGE_MODEL = Task(
    name="lm",
    summary="language modelling (one text): a decoder-only Transformer on characters or "
            "byte-level BPE, sampled or greedy",
    model_types=(LANGUAGE_MODEL_TYPE,),
    commands={
        "train": Command.of(run_train, add_train_arguments),
        "evaluate": Command.of(run_evaluate, add_evaluate_arguments, takes_run=True),
        "generate": Command.of(run_generate, add_generate_arguments, takes_run=True),
        "experiment": Command.of(run_experiment, add_experiment_arguments),
    },
    open_subject=open_lm_subject,
    experiments=EXPERIMENTS,
)
