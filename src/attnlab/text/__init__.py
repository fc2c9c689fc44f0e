"""Text: reading data sets, tokenizers, padding and length-grouped batches. Imports no other
attnlab package."""

from attnlab.text.batching import LengthGroupedBatches, pad_sequences
from attnlab.text.bert_tokenizer import BertTokenizer, TokenizedBatch
from attnlab.text.reading import (
    DataFormatError,
    TextDataset,
    load_split,
    read_labelled_file,
    read_table,
    resolve_source,
)
from attnlab.text.tokenizer import (
    SPECIAL_TOKENS,
    encode,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BertTokenizer",
    "TokenizedBatch",
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
