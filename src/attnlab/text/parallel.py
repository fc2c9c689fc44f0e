"""Reading parallel text: pairs of sentences, line N of one language translating line N of the
other (Multi30k, WMT-style releases).

A split is found in a folder in one of two layouts:

* aligned plain-text files ``<split>.<lang>`` (``train.de`` and ``train.en``), one sentence a
  line, no header; the split is the file stem (``test_2016_flickr``);
* one table ``<split>.{tsv,csv,jsonl}`` with a header whose columns are the language codes
  (``de``, ``en``) or ``source`` and ``target``.

Lines are kept as written (tabs, inner and trailing spaces): only the line ending (``\\n`` or
``\\r\\n``) and a UTF-8 byte-order mark are removed, and lines are split on ``\\n`` alone, so
characters that :meth:`str.splitlines` would also break at (``\\x0c``, U+2028, ...) cannot shift
the alignment. A blank line (empty or only whitespace) holds no sentence: it is an error
naming file and line, or with ``on_empty="skip"`` its pair is left out and listed in
:attr:`ParallelDataset.skipped`; nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.errors import InputError
from attnlab.text.files import DataFormatError, read_text
from attnlab.text.reading import EXTENSIONS, candidate_dirs, read_table

__all__ = ["ParallelDataset", "load_parallel_split", "read_lines"]

PAIR_COLUMNS = ("source", "target")  # a table's columns when they are not language codes
ON_EMPTY = ("error", "skip")
# what a language suffix looks like (de, en, pt_br, zh-Hans); documentation files are not one
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?")
NOT_LANGUAGES = {"md", "txt", "rst", "log", "cfg", "ini", "py", "sh", "gz", "bz2", "xz", "zip",
                 "tar", "tgz", "pdf", "xml", "sgm", "yml", "json"}


@dataclass
class ParallelDataset:
    """Sentence pairs of one split.

    Attributes:
        sources: the input sentences, as written.
        targets: their translations, ``targets[i]`` translating ``sources[i]``.
        source: the files read (``<dir>/train.{de,en}``, or ``<dir>/train.tsv [de -> en]``).
        skipped: ``"file:line: reason"`` for each pair left out with ``on_empty="skip"``.
    """

    sources: list[str]
    targets: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise InputError(f"sources and targets differ in length: {len(self.sources)} "
                             f"sources, {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.sources)

    def summary(self) -> str:
        """One line: files, size, skipped pairs."""
        return f"{self.source}: {len(self)} pairs; {len(self.skipped)} pairs skipped"


def load_parallel_split(data: str | os.PathLike, split: str, *, source_lang: str,
                        target_lang: str, on_empty: str = "error") -> ParallelDataset:
    """Load the sentence pairs of one split of a parallel corpus.

    Args:
        data: a folder, or a name (``multi30k``) looked up under ``$ATTNLAB_DATA`` and then
            ``../shared/data`` (as :func:`~attnlab.text.load_split` does).
        split: the file stem: ``train``, ``val``, ``test_2016_flickr``.
        source_lang: language code of the inputs (``de``): a file suffix or a table column.
        target_lang: language code of the translations (``en``). A table with ``source`` and
            ``target`` columns is read as it stands, whatever the codes.
        on_empty: ``"error"`` (default) at the first blank line, or ``"skip"`` its pair.

    Returns:
        a :class:`ParallelDataset`; the plain-text files win if a table of the split exists too.

    Raises:
        FileNotFoundError: no folder holds the split; the message says where it looked and
            which splits exist there.
        ValueError: a language the split does not have (the message lists those it has).
        DataFormatError: files of different line counts (both files and counts named),
            undecodable bytes or a blank line (file and line named), a split without a pair.

    Example::

        >>> pairs = load_parallel_split("multi30k", "val", source_lang="de", target_lang="en")
        >>> len(pairs), pairs.targets[0]
        (1014, 'A group of men are loading cotton onto a truck')
    """
    if on_empty not in ON_EMPTY:
        raise InputError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")
    for name, value in (("source_lang", source_lang), ("target_lang", target_lang)):
        if not isinstance(value, str) or not value:
            raise InputError(f"{name} must be a non-empty language code, got {value!r}")
    if source_lang == target_lang:
        raise InputError(f"source_lang and target_lang must differ, both are {source_lang!r}")
    directory = _split_dir(data, split)
    src, tgt = directory / f"{split}.{source_lang}", directory / f"{split}.{target_lang}"
    if src.is_file() and tgt.is_file():
        return _read_aligned(src, tgt, on_empty)
    table = next((directory / f"{split}{ext}" for ext in EXTENSIONS
                  if (directory / f"{split}{ext}").is_file()), None)
    if table is not None:
        return _read_pair_table(table, source_lang, target_lang, on_empty)
    missing = source_lang if not src.is_file() else target_lang
    raise InputError(f"no {split}.{missing} in {directory}: language {missing!r} not found; "
                     f"languages of {split!r} there: {_languages(directory, split)}")


# --- finding the files ------------------------------------------------------------------------


def _split_dir(data: str | os.PathLike, split: str) -> Path:
    """The first candidate folder holding any file of ``split``."""
    looked = list(dict.fromkeys(d.resolve() for d in candidate_dirs(data)))  # once each
    for directory in looked:
        if directory.is_dir() and _stems(directory).get(split):
            return directory
    found = [f"{d}: {', '.join(sorted(_stems(d))) or 'none'}" for d in looked if d.is_dir()]
    raise FileNotFoundError(
        f"no {split!r} split of {str(data)!r}: looked for {split}.LANG or "
        f"{split}.tsv/.csv/.jsonl in {', '.join(str(d) for d in looked)}; splits found: "
        f"{'; '.join(found) if found else 'none (no such folder)'}. Pass a folder of parallel "
        f"files or set ATTNLAB_DATA to the folder holding {str(data)!r}.")


def _stems(directory: Path) -> dict[str, list[str]]:
    """``{split: [its language suffixes or table extensions]}`` of the data files in a folder."""
    stems: dict[str, list[str]] = {}
    for path in directory.iterdir():
        suffix = path.suffix.lower()
        language = suffix[1:] if (LANGUAGE.fullmatch(suffix[1:])
                                  and suffix[1:] not in NOT_LANGUAGES) else None
        if path.is_file() and path.stem and (suffix in EXTENSIONS or language):
            stems.setdefault(path.stem, []).append(path.suffix[1:])
    return stems


def _languages(directory: Path, split: str) -> str:
    found = sorted(s for s in _stems(directory).get(split, []) if f".{s.lower()}" not in EXTENSIONS)
    return ", ".join(found) if found else "none"


# --- reading them -----------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file as written, without line endings (and without a BOM)."""
    lines = read_text(path).split("\n")
    if lines[-1] == "":  # the final line ending ends the last line; it does not start one
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _read_aligned(src: Path, tgt: Path, on_empty: str) -> ParallelDataset:
    src_lines, tgt_lines = read_lines(src), read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise DataFormatError(f"{src} has {len(src_lines)} lines but {tgt} has "
                              f"{len(tgt_lines)}; aligned files must have one line per pair")
    sources, targets, skipped = [], [], []
    for number, (s, t) in enumerate(zip(src_lines, tgt_lines, strict=True), start=1):
        blank = [(path, text) for path, text in ((src, s), (tgt, t)) if not text.strip()]
        if blank:
            path, text = blank[0]
            what = "empty line" if not text else "line of only whitespace"
            also = f" (and in {blank[1][0]})" if len(blank) == 2 else ""
            message = f"{path}:{number}: {what}{also}"
            if on_empty == "error":
                raise DataFormatError(f"{message}; pass on_empty='skip' to leave its pair out")
            skipped.append(message)
            continue
        sources.append(s)
        targets.append(t)
    stem = src.with_suffix("")
    return _non_empty(ParallelDataset(
        sources, targets, f"{stem}.{{{src.suffix[1:]},{tgt.suffix[1:]}}}", skipped))


def _read_pair_table(path: Path, source_lang: str, target_lang: str,
                     on_empty: str) -> ParallelDataset:
    columns, rows = read_table(path)
    if source_lang in columns and target_lang in columns:
        src_col, tgt_col = source_lang, target_lang
    elif all(c in columns for c in PAIR_COLUMNS):
        src_col, tgt_col = PAIR_COLUMNS
    else:
        missing = source_lang if source_lang not in columns else target_lang
        raise InputError(f"{path}: no column {missing!r}: language {missing!r} not found; "
                         f"expected columns {source_lang!r} and {target_lang!r} (or "
                         f"'source' and 'target'), got {columns}")
    sources, targets, skipped = [], [], []
    for line, row in rows:
        absent = [c for c in (src_col, tgt_col) if c not in row]
        if absent:  # a JSONL record without one of the keys
            raise DataFormatError(f"{path}:{line}: missing field {absent[0]!r}")
        blank = [c for c in (src_col, tgt_col) if not row[c].strip()]
        if blank:
            message = f"{path}:{line}: empty field {' and '.join(map(repr, blank))}"
            if on_empty == "error":
                raise DataFormatError(f"{message}; pass on_empty='skip' to leave its pair out")
            skipped.append(message)
            continue
        sources.append(row[src_col])
        targets.append(row[tgt_col])
    return _non_empty(ParallelDataset(sources, targets, f"{path} [{src_col} -> {tgt_col}]",
                                      skipped))


def _non_empty(pairs: ParallelDataset) -> ParallelDataset:
    """``pairs``, unless it holds none: a split without a pair is an error naming its files."""
    if not pairs.sources:
        why = f"all {len(pairs.skipped)} skipped" if pairs.skipped else "the files are empty"
        raise DataFormatError(f"{pairs.source}: no sentence pairs ({why})")
    return pairs
