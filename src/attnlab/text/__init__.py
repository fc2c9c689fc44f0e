"""Text: reading data sets, the tokenizer wrapper, padding and length-grouped batches.
Imports no other attnlab package."""

from attnlab.text.batching import LengthGroupedBatches, by_length, pad_sequences
from attnlab.text.reading import (
    DataFormatError,
    TextDataset,
    load_split,
    read_labelled_file,
    read_table,
    resolve_source,
)
from attnlab.text.tokenizer import SPECIAL_TOKENS, TextTokenizer, TokenizedBatch, TokenizedText

__all__ = [
    "SPECIAL_TOKENS",
    "DataFormatError",
    "LengthGroupedBatches",
    "TextDataset",
    "TextTokenizer",
    "TokenizedBatch",
    "TokenizedText",
    "by_length",
    "load_split",
    "pad_sequences",
    "read_labelled_file",
    "read_table",
    "resolve_source",
]
