"""Models built on attnlab's attention: BERT encoders (pretrained or fresh) and their heads,
and a Transformer text classifier trained from scratch."""

from attnlab.models.bert import BertConfig, BertModel, BertOutput, mean_pool
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.classifier import ClassifierConfig, ClassifierOutput, TextClassifier
from attnlab.models.pretrained import KNOWN_MODELS, load_pretrained
from attnlab.models.sentence_encoder import SentenceEncoder
from attnlab.models.tokenizer import BertTokenizer, TokenizedBatch

__all__ = [
    "KNOWN_MODELS",
    "BertClassifierConfig",
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "BertOutput",
    "BertTokenizer",
    "ClassifierConfig",
    "ClassifierOutput",
    "SentenceEncoder",
    "TextClassifier",
    "TokenizedBatch",
    "load_pretrained",
    "mean_pool",
]
