"""Optional fallback: a split from the Hugging Face hub, when ``datasets`` is installed and online.

Nothing here runs unless local files are missing; offline it reports unavailable quickly.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Sequence

from attnlab.errors import InputError

__all__ = ["hub_available", "load_from_hub"]

HUB_HOST = "huggingface.co"
# Local names that live under another name on the hub: name -> (path, config).
HUB_NAMES = {"sst2": ("glue", "sst2"), "sst-2": ("glue", "sst2")}


def hub_available(timeout: float = 2.0) -> bool:
    """``True`` when the ``datasets`` package is importable and the hub answers on port 443."""
    if importlib.util.find_spec("datasets") is None:
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_from_hub(name: str, split: str, *, text_columns: Sequence[str],
                  label_columns: Sequence[str]) -> tuple[list[str], list[int], str]:
    """Download ``split`` of ``name`` with ``datasets.load_dataset``: its texts, labels and
    ``hf://`` address. The first of ``text_columns`` / ``label_columns`` present is read."""
    import datasets  # optional dependency

    path, config = HUB_NAMES.get(name.lower(), (name, None))
    hub_split = "validation" if split == "dev" else split
    data = datasets.load_dataset(path, config, split=hub_split)
    columns = data.column_names
    text_col = next((c for c in text_columns if c in columns), None)
    label_col = next((c for c in label_columns if c in columns), None)
    if text_col is None or label_col is None:
        raise InputError(f"hub data set {name!r} has columns {columns}; pass text_column and "
                         f"label_column")
    labels = [int(x) for x in data[label_col]]
    if any(x < 0 for x in labels):
        raise InputError(f"hub split {name}/{hub_split} has no labels (label -1); use a local copy")
    return list(data[text_col]), labels, f"hf://{path}/{config or ''}/{hub_split}"
