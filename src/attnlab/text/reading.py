"""Reading labelled text from TSV, CSV or JSONL files with a header.

A split is one file, ``<dir>/<split>.{tsv,csv,jsonl}``; the text and label columns are found by
name (text: ``sentence``, ``text`` or ``content``; label: ``label``) so that files whose headers
differ per split (SST-2: ``sentence`` in train, ``content`` in dev/test) read the same way.

Bad rows raise :class:`DataFormatError` naming the file and line, unless ``on_error="skip"``,
in which case they are counted and listed in :attr:`TextDataset.skipped`; nothing is dropped
silently. CSV quoting is strict: a quote left open (which would swallow the lines after it) is an
error at the line where the record began. A column named twice is an error. Labels are ASCII
digits (``0``, ``1``, ...) or, given ``label_names``, those names; nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.errors import InputError
from attnlab.text import hub
from attnlab.text.files import DataFormatError, read_text

__all__ = [
    "LABEL_COLUMNS",
    "TEXT_COLUMNS",
    "DataFormatError",
    "TextDataset",
    "candidate_dirs",
    "load_split",
    "read_labelled_file",
    "read_table",
    "resolve_source",
]

TEXT_COLUMNS = ("sentence", "text", "content")  # tried in this order
LABEL_COLUMNS = ("label",)
EXTENSIONS = (".tsv", ".csv", ".jsonl")
SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "dev": "validation"}


@dataclass
class TextDataset:
    """Labelled texts of one split.

    Attributes:
        texts: one string per example.
        labels: class index per example, in ``0 .. n_classes-1``.
        source: the file read (or ``hf://<name>/<split>`` for the Hugging Face hub).
        skipped: ``"file:line: reason"`` for each row left out with ``on_error="skip"``.
        lines: the line of :attr:`source` where each example's row begins (empty when not
            known, as for the hub).
    """

    texts: list[str]
    labels: list[int]
    source: str
    skipped: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise InputError(f"texts and labels differ in length: {len(self.texts)} texts, "
                             f"{len(self.labels)} labels")
        if self.lines and len(self.lines) != len(self.texts):
            raise InputError(f"lines and texts differ in length: {len(self.lines)} lines, "
                             f"{len(self.texts)} texts")

    def where(self, index: int) -> str:
        """``"file:line"`` of example ``index`` (``"file, example N"`` when lines are unknown)."""
        if self.lines:
            return f"{self.source}:{self.lines[index]}"
        return f"{self.source}, example {index}"

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_counts(self) -> dict[int, int]:
        """Examples per class, ``{label: count}`` sorted by label."""
        return dict(sorted(Counter(self.labels).items()))

    def summary(self) -> str:
        """One line: source, size, per-class counts, skipped rows."""
        counts = ", ".join(f"{k}: {v}" for k, v in self.label_counts.items())
        return (f"{self.source}: {len(self)} examples ({counts}); "
                f"{len(self.skipped)} rows skipped")


def read_table(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a TSV/CSV/JSONL file with a header.

    Returns:
        ``(columns, rows)`` where each row is ``(line_number, {column: value})``.

    Raises:
        DataFormatError: undecodable bytes, a column named twice, a row with the wrong number
            of fields, a CSV quote left open, a field over the csv module's size limit, a JSONL
            line that is not a JSON object (or has a key twice).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataFormatError(f"{path}: unsupported file type {suffix!r}; expected one of "
                              f"{', '.join(EXTENSIONS)}")
    text = read_text(path)
    if suffix == ".jsonl":
        return _read_jsonl(path, text)
    return _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")


def _read_delimited(path: Path, text: str, delimiter: str):
    # TSV: no quoting (text may contain quote characters); CSV: standard quoting, strict, so
    # that a quote left open is an error rather than a field that swallows the lines after it.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting,
                        strict=True)
    start = 1  # line where the next record begins
    header = _next_record(path, reader, start, delimiter)
    if not header:
        raise DataFormatError(f"{path}:1: empty file; expected a header line")
    columns = [c.strip() for c in header]
    _check_unique(path, columns)
    rows = []
    start = reader.line_num + 1
    while (values := _next_record(path, reader, start, delimiter)) is not None:
        if values:  # blank lines are not rows
            if len(values) != len(columns):
                raise DataFormatError(
                    f"{path}:{start}: expected {len(columns)} fields ({', '.join(columns)}), "
                    f"got {len(values)}{_quote_hint(delimiter, reader.line_num - start)}")
            rows.append((start, dict(zip(columns, values, strict=True))))
        start = reader.line_num + 1
    return columns, rows


QUOTE_ADVICE = ('a quote left open? a field that begins with " must end with " followed by the '
                'delimiter or the line\'s end; write a quote inside a quoted field as ""')


def _quote_hint(delimiter: str, extra_lines: int) -> str:
    if delimiter == "\t" or extra_lines < 1:
        return ""
    return f" in a record of {extra_lines + 1} lines ({QUOTE_ADVICE})"


def _next_record(path: Path, reader, start: int, delimiter: str) -> list[str] | None:
    """The next record of ``reader`` (``None`` at the end), csv errors as DataFormatError."""
    try:
        return next(reader, None)
    except csv.Error as err:
        message = str(err)
        advice = "" if delimiter == "\t" else f"; {QUOTE_ADVICE}"
        if "field larger than field limit" in message:
            raise DataFormatError(
                f"{path}:{start}: a field longer than {csv.field_size_limit():,} characters "
                f"(the csv module's limit); shorten it{advice}") from None
        if reader.line_num > start:
            message += f" (in the record that begins there and runs to line {reader.line_num})"
        raise DataFormatError(f"{path}:{start}: {message}{advice}") from None


def _check_unique(path: Path, columns: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for number, name in enumerate(columns, start=1):
        if name in seen:
            raise DataFormatError(f"{path}:1: column {name!r} appears twice in the header "
                                  f"(fields {seen[name]} and {number}); rename one")
        seen[name] = number


def _read_jsonl(path: Path, text: str):
    rows, columns = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        except _DuplicateKey as err:
            raise DataFormatError(f"{path}:{number}: column {err.args[0]!r} appears twice in "
                                  f"the record; rename one") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got "
                                  f"{type(obj).__name__}")
        for key, value in obj.items():
            if isinstance(value, (bool, list, dict)):
                raise DataFormatError(f"{path}:{number}: field {key!r} must be a string (or a "
                                      f"number), got {json.dumps(value)[:60]}")
            if key not in columns:
                columns.append(key)
        rows.append((number, {k: "" if v is None else str(v) for k, v in obj.items()}))
    if not rows:
        raise DataFormatError(f"{path}: no records")
    return columns, rows


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _pick_column(path, columns, given, candidates, what) -> str:
    if given is not None:
        if given not in columns:
            raise DataFormatError(f"{path}: no {what} column {given!r}; columns are {columns}")
        return given
    for name in candidates:
        if name in columns:
            return name
    raise DataFormatError(f"{path}: no {what} column; looked for {list(candidates)} among "
                          f"{columns}; pass the name explicitly")


_ASCII_INTEGER = re.compile(r"[0-9]+")


def _parse_label(value: str, label_names: Sequence[str] | None, n_classes: int) -> int:
    value = value.strip()
    if label_names is not None and value in label_names:
        return list(label_names).index(value)
    # ASCII digits only: int() also takes "١" (Arabic-Indic), "１" (full-width), "+1", "1_0".
    label = int(value) if _ASCII_INTEGER.fullmatch(value) else -1
    if not 0 <= label < n_classes:
        known = list(range(n_classes)) if label_names is None else list(label_names)
        raise InputError(f"label {value!r} is not a known class {known}")
    return label


def read_labelled_file(
    path: str | os.PathLike,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    n_classes: int = 2,
    on_error: str = "raise",
) -> TextDataset:
    """Read one labelled file; see :func:`load_split`."""
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    n_classes = len(label_names) if label_names is not None else n_classes
    columns, rows = read_table(path)
    text_col = _pick_column(path, columns, text_column, TEXT_COLUMNS, "text")
    label_col = _pick_column(path, columns, label_column, LABEL_COLUMNS, "label")
    texts, labels, skipped, lines = [], [], [], []
    for line, row in rows:
        try:
            if text_col not in row or label_col not in row:
                missing = text_col if text_col not in row else label_col
                raise InputError(f"missing field {missing!r}")
            text = row[text_col].strip()
            if not text:
                raise InputError(f"empty text in column {text_col!r}")
            label = _parse_label(row[label_col], label_names, n_classes)
        except ValueError as err:
            message = f"{path}:{line}: {err}"
            if on_error == "raise":
                raise DataFormatError(message) from None
            skipped.append(message)
            continue
        texts.append(text)
        labels.append(label)
        lines.append(line)
    if not texts:
        raise DataFormatError(f"{path}: no usable rows ({len(skipped)} skipped)")
    return TextDataset(texts, labels, str(path), skipped, lines)


def _split_file(directory: Path, split: str) -> Path | None:
    for name in (split, SPLIT_ALIASES.get(split)):
        for ext in EXTENSIONS:
            if name and (directory / f"{name}{ext}").is_file():
                return directory / f"{name}{ext}"
    return None


def candidate_dirs(source: str | os.PathLike) -> list[Path]:
    """Where a source is looked for: itself, then ``$ATTNLAB_DATA/<source>``,
    then ``../shared/data/<source>`` relative to the current directory."""
    source_path = Path(source).expanduser()
    candidates = [source_path]
    if not source_path.is_absolute():
        env = os.environ.get("ATTNLAB_DATA")
        if env:
            candidates.append(Path(env).expanduser() / source_path)
        candidates.append(Path.cwd().parent / "shared" / "data" / source_path)
    return candidates


def resolve_source(source: str | os.PathLike, split: str) -> Path | None:
    """The file holding ``split`` of ``source``, or ``None`` if no local candidate has it."""
    for directory in candidate_dirs(source):
        if directory.is_file():
            return directory
        if directory.is_dir():
            found = _split_file(directory, split)
            if found is not None:
                return found
    return None


def load_split(
    source: str | os.PathLike,
    split: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    n_classes: int = 2,
    on_error: str = "raise",
) -> TextDataset:
    """Load one split (``train``, ``dev``/``validation``, ``test``) of a labelled text data set.

    Args:
        source: a directory holding ``<split>.{tsv,csv,jsonl}``, a file, or a name (``sst2``)
            looked up under ``$ATTNLAB_DATA`` and then ``../shared/data``; if none has it and the
            ``datasets`` package is installed and the network answers, the Hugging Face hub.
        split: split name; ``validation`` and ``dev`` are aliases.
        text_column: text column; default the first of ``sentence``, ``text``, ``content``.
        label_column: label column; default ``label``.
        label_names: class names, if labels are written as names (index = class id).
        n_classes: number of classes when labels are integers; others are errors.
        on_error: ``"raise"`` (default) a :class:`DataFormatError` at the first bad row, or
            ``"skip"`` it and record it in :attr:`TextDataset.skipped`.

    Raises:
        FileNotFoundError: no local file and no hub access; the message lists where it looked.
        DataFormatError: a bad file or row (file and line in the message).
    """
    path = resolve_source(source, split)
    if path is not None:
        return read_labelled_file(path, text_column=text_column, label_column=label_column,
                                  label_names=label_names, n_classes=n_classes,
                                  on_error=on_error)
    looked = [str(d) for d in candidate_dirs(source)]
    if hub.hub_available():
        texts, labels, address = hub.load_from_hub(
            str(source), split,
            text_columns=[text_column] if text_column else TEXT_COLUMNS,
            label_columns=[label_column] if label_column else LABEL_COLUMNS)
        return TextDataset(texts, labels, address)
    raise FileNotFoundError(
        f"no {split!r} split of {str(source)!r}: looked for {split}.tsv/.csv/.jsonl in "
        f"{', '.join(looked)} (and the Hugging Face hub is unavailable: the `datasets` package "
        f"is not installed or the network does not answer). Pass --data DIR (a folder with "
        f"train/dev/test files) or set ATTNLAB_DATA to the folder holding {str(source)!r}."
    )
