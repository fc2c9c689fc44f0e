"""Models built on attnlab's attention: encoder and decoder blocks, a Transformer text
classifier, BERT encoders and their heads, the encoder-decoder Transformer and its decoding.
Knows only :mod:`attnlab.attention` (weights are loaded by :mod:`attnlab.io`)."""

from attnlab.models.bert import BertConfig, BertModel, BertOutput, mean_pool
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.causal_generation import greedy_generate, sample_generate
from attnlab.models.causal_lm import CausalCache
from attnlab.models.classifier import ClassifierConfig, ClassifierOutput, TextClassifier
from attnlab.models.generation import (
    Hypothesis,
    beam_search,
    beam_search_nbest,
    greedy,
    greedy_search,
    sequence_scores,
)
from attnlab.models.gpt2 import GPT2Config, GPT2LMHeadModel
from attnlab.models.language_model import LMConfig, TransformerLM
from attnlab.models.llama import LlamaConfig, LlamaForCausalLM
from attnlab.models.prediction import Prediction
from attnlab.models.sentence_encoder import SentenceEncoder
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqOutput, Seq2SeqTransformer
from attnlab.models.transformer_decoder import DecoderCache, DecoderLayer, TransformerDecoder

__all__ = [
    "Prediction",
    "BertClassifierConfig",
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "BertOutput",
    "CausalCache",
    "ClassifierConfig",
    "ClassifierOutput",
    "DecoderCache",
    "DecoderLayer",
    "GPT2Config",
    "GPT2LMHeadModel",
    "Hypothesis",
    "LMConfig",
    "LlamaConfig",
    "LlamaForCausalLM",
    "SentenceEncoder",
    "Seq2SeqConfig",
    "Seq2SeqOutput",
    "Seq2SeqTransformer",
    "TextClassifier",
    "TransformerDecoder",
    "TransformerLM",
    "beam_search",
    "beam_search_nbest",
    "greedy",
    "greedy_generate",
    "greedy_search",
    "mean_pool",
    "sample_generate",
    "sequence_scores",
]
