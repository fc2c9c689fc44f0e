"""Command-line options generated from config dataclasses: one option per field, its help the
field's ``metadata["help"]``, its default the dataclass default (so defaults live in one place).

Options not given stay out of the parsed namespace, so :func:`options_given` tells explicit
choices from defaults (needed to check a resumed run against its saved settings).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

__all__ = ["add_config_options", "options_given"]


def add_config_options(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    group: str,
    *,
    rename: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """Add ``--field-name`` for each field of dataclass ``cls`` to ``parser``.

    Args:
        parser: a parser or argument group.
        cls: the config dataclass.
        group: prefix of the destinations (``"train"`` -> ``args`` attribute ``train.lr``).
        rename: field -> option name without dashes (``{"n_heads": "heads"}``).
        skip: fields without an option.
        defaults: field -> the default shown in the help instead of the dataclass's (what a
            task's recipe puts in its place); nothing is parsed differently.

    Booleans become ``--x/--no-x``; ``T | None`` fields accept ``none``.
    """
    rename, defaults = rename or {}, defaults or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + rename.get(f.name, f.name).replace("_", "-")
        annotation = str(f.type)
        shown = f"default: {defaults[f.name]}" if f.name in defaults else _shown_default(f)
        help_text = f"{f.metadata.get('help', f.name)} [{shown}]".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f"{group}.{f.name}", "default": argparse.SUPPRESS,
                                  "help": help_text}
        if annotation == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _converter(annotation, flag)
            kwargs["metavar"] = annotation.split("|")[0].strip().upper()
        parser.add_argument(flag, **kwargs)


def options_given(args: argparse.Namespace, group: str) -> dict[str, Any]:
    """The options of ``group`` given on the command line, as ``{field: value}``."""
    prefix = group + "."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _shown_default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"default: {f.default}"
    if f.default_factory is not dataclasses.MISSING:
        return f"default: {f.default_factory()}"
    return "(required)"


def _converter(annotation: str, flag: str):
    """Text -> the field's type (``none`` -> None for optional fields), naming ``flag`` on error."""
    kinds = [part.strip() for part in annotation.split("|")]
    optional = "None" in kinds
    base = {"int": int, "float": float, "str": str}.get(kinds[0], str)

    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} expects {kinds[0]}{' or none' if optional else ''}, got {text!r}"
            ) from None

    convert.__name__ = kinds[0]
    return convert
