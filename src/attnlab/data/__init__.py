"""Data: reading labelled text files, tokenizers, and length-grouped batches."""

from attnlab.data.batching import LengthGroupedBatches, pad_sequences
from attnlab.data.reading import (
    DataFormatError,
    TextDataset,
    load_split,
    read_labelled_file,
    read_table,
    resolve_source,
)
from attnlab.data.tokenization import (
    SPECIAL_TOKENS,
    encode,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = [
    "SPECIAL_TOKENS",
    "DataFormatError",
    "LengthGroupedBatches",
    "TextDataset",
    "encode",
    "encode_batch",
    "load_split",
    "load_tokenizer",
    "pad_sequences",
    "read_labelled_file",
    "read_table",
    "resolve_source",
    "save_tokenizer",
    "train_tokenizer",
]
