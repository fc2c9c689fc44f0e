"""Text: reading data sets (labelled and parallel), the tokenizer wrapper, padding and
length-grouped batches. Imports no other attnlab package."""

from attnlab.text.batching import (
    LengthGroupedBatches,
    TokenBudgetBatches,
    by_length,
    pad_sequences,
)
from attnlab.text.parallel import ParallelDataset, load_parallel_split, read_lines
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
    TOKENIZER_KINDS,
    TextTokenizer,
    TokenizedBatch,
    TokenizedText,
)

__all__ = [
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "DataFormatError",
    "LengthGroupedBatches",
    "ParallelDataset",
    "TextDataset",
    "TextTokenizer",
    "TokenBudgetBatches",
    "TokenizedBatch",
    "TokenizedText",
    "by_length",
    "load_parallel_split",
    "load_split",
    "pad_sequences",
    "read_labelled_file",
    "read_lines",
    "read_table",
    "resolve_source",
]
