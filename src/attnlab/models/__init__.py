"""Models built on attnlab's attention: encoder blocks, a Transformer text classifier, BERT
encoders and their heads. Knows only :mod:`attnlab.attention` (weights are loaded by
:mod:`attnlab.io`)."""

from attnlab.models.bert import BertConfig, BertModel, BertOutput, mean_pool
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.classifier import ClassifierConfig, ClassifierOutput, TextClassifier
from attnlab.models.prediction import Prediction
from attnlab.models.sentence_encoder import SentenceEncoder

__all__ = [
    "Prediction",
    "BertClassifierConfig",
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "BertOutput",
    "ClassifierConfig",
    "ClassifierOutput",
    "SentenceEncoder",
    "TextClassifier",
    "mean_pool",
]
