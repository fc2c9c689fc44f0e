"""Reading a text file, or a text typed by a user, with errors that name it: a file this user
may not read, a folder where a file belongs, bytes that are not UTF-8.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.errors import InputError

__all__ = ["DataFormatError", "check_utf8", "read_bytes", "read_text"]


class DataFormatError(InputError):
    """A data file that cannot be read as labelled text; the message names file and line."""


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a file this user may not read is an :class:`InputError` naming it."""
    try:
        return Path(path).read_bytes()
    except PermissionError:
        raise InputError(f"{path}: permission denied (this user may not read it)") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a file") from None


def check_utf8(text: str, where: str) -> str:
    """``text`` itself, if it is valid Unicode; else an :class:`InputError` naming ``where``.

    Python decodes undecodable bytes of command-line arguments and standard input to lone
    surrogates (``surrogateescape``); such a string cannot be encoded or tokenized.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise InputError(f"{where} is not valid UTF-8 ({byte} at character {err.start})") \
            from None
    return text


def read_text(path: Path) -> str:
    """A UTF-8 file's text (a byte-order mark dropped); bad bytes name the file and line."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataFormatError(f"{path}:{line}: bytes that are not valid UTF-8 "
                              f"({err.reason} at byte {err.start})") from None
