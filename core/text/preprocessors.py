"""Text preprocessing for both tf.hub text conventions.

Embedding models (nnlm, USE) take raw strings. BERT-style encoders take token
ids, made either by the matching preprocessor SavedModel or, when there is
none, by tensorflow-text's BertTokenizer over the encoder's vocab asset.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text as text

from ftk.errors import ConfigError, FtkError
from ftk.preprocessor import Preprocessor, StringPassthrough
from ftk.text.fast_bert import FastBertInput, lower_cases, read_vocab

_STRINGS = tf.TensorSpec([None], tf.string, name="inputs")


# Trimmed lengths are multiples of this, so XLA (train.jit_compile) compiles a
# few sequence lengths instead of one per batch.
LENGTH_STEP = 16


def trim_to_longest(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Cut padding beyond the longest text of the batch (rounded up to LENGTH_STEP).

    Packing pads to `max_seq_length`; short texts then pay for attention over
    padding that the mask discards anyway. Outputs at real tokens are the same.
    """
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(features["input_mask"], tf.int32), axis=1))
    length = tf.minimum(tf.shape(features["input_mask"])[1],
                        (longest + LENGTH_STEP - 1) // LENGTH_STEP * LENGTH_STEP)
    return {key: value[:, :length] for key, value in features.items()}


class _TfliteForm:
    """The `tflite` input form of a BERT preprocessor (`FastBertInput`)."""

    fast: FastBertInput | None = None

    def extra_inputs(self) -> dict[str, Any]:
        return {} if self.fast is None else {"tflite": (_STRINGS, self.fast)}

    def tflite_input(self) -> tuple[str, dict[str, Any]]:
        return ("", {}) if self.fast is None else ("tflite", self.fast.facts)


class HubBertPreprocessor(_TfliteForm, tf.Module, Preprocessor):
    """A tf.hub BERT preprocessor SavedModel: `tokenize`, then `bert_pack_inputs`."""

    def __init__(self, handle: str, seq_length: int):
        super().__init__(name="bert_preprocessor")
        self.model = hub.load(handle)
        self.seq_length = seq_length
        vocab = self._vocab(handle)
        if vocab is not None:
            lower = (bool(self.model.do_lower_case.numpy()) if hasattr(self.model, "do_lower_case")
                     else lower_cases(self.model.tokenize, vocab))
            self.fast = FastBertInput(vocab, lower, seq_length)

    def _vocab(self, handle: str) -> list[str] | None:
        """The WordPiece vocabulary: the `vocab_file` asset, else the
        SavedModel's `assets/vocab.txt` (TF Hub's BERT preprocessors)."""
        if hasattr(self.model, "vocab_file"):
            path = self.model.vocab_file.asset_path.numpy().decode()
        else:
            path = f"{hub.resolve(handle)}/assets/vocab.txt"
        if not tf.io.gfile.exists(path):
            return None
        vocab = read_vocab(path)
        return vocab if {"[CLS]", "[SEP]", "[UNK]"} <= set(vocab) else None

    def __call__(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        tokens = self.model.tokenize(tf.reshape(strings, [-1]))
        return trim_to_longest(self.model.bert_pack_inputs([tokens], seq_length=self.seq_length))


class VocabBertPreprocessor(_TfliteForm, tf.Module, Preprocessor):
    """WordPiece over a vocab file, packed as `[CLS] tokens [SEP]` and padded."""

    def __init__(self, vocab_file: str, lower_case: bool, seq_length: int):
        super().__init__(name="bert_preprocessor")
        vocab = read_vocab(vocab_file)
        ids = {token: i for i, token in enumerate(vocab)}
        missing = [t for t in ("[CLS]", "[SEP]") if t not in ids]
        if missing:
            raise FtkError(f"Vocab file {vocab_file} lacks {', '.join(missing)}; it is not a BERT vocab.")
        self.tokenizer = text.BertTokenizer(vocab_file, lower_case=lower_case,
                                            token_out_type=tf.int32)
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]
        self.seq_length = seq_length
        if "[UNK]" in ids:
            self.fast = FastBertInput(vocab, lower_case, seq_length)

    def __call__(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        tokens = self.tokenizer.tokenize(tf.reshape(strings, [-1])).merge_dims(-2, -1)
        trimmed = text.RoundRobinTrimmer(max_seq_length=self.seq_length - 2).trim([tokens])
        word_ids, type_ids = text.combine_segments(
            trimmed, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        word_ids, mask = text.pad_model_inputs(word_ids, max_seq_length=self.seq_length)
        type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=self.seq_length)
        return trim_to_longest({"input_word_ids": tf.cast(word_ids, tf.int32),
                                "input_mask": tf.cast(mask, tf.int32),
                                "input_type_ids": tf.cast(type_ids, tf.int32)})


def build_text_preprocessor(backbone: Any, seq_length: int, *, task: str) -> Preprocessor:
    """The preprocessor matching the backbone's tf.hub convention.

    Args:
        backbone: the run's backbone (`kind` text_embedding or text_encoder).
        seq_length: tokens per text for encoders (`backbone.max_seq_length`).
        task: the task's name, for error messages.
    """
    if backbone.kind == "text_embedding":
        return StringPassthrough()
    if backbone.kind != "text_encoder":
        raise FtkError(
            f"Backbone {backbone.name!r} is an {backbone.kind} backbone; {task} "
            "needs a text embedding or a BERT-style text encoder (e.g. --backbone minilm-l6)."
        )
    positions = backbone.metadata.get("max_position_embeddings")
    if positions and not 2 < seq_length <= positions:
        raise ConfigError(
            f"backbone.max_seq_length must be between 3 and {positions}, the positions "
            f"backbone {backbone.name!r} was trained with. Received: {seq_length}"
        )
    if backbone.preprocessor:
        return HubBertPreprocessor(backbone.preprocessor, seq_length)
    saved = backbone.saved_model
    if hasattr(saved, "vocab_file"):
        lower_case = bool(saved.do_lower_case.numpy()) if hasattr(saved, "do_lower_case") else True
        return VocabBertPreprocessor(saved.vocab_file.asset_path.numpy().decode(), lower_case, seq_length)
    raise FtkError(
        f"Backbone {backbone.name!r} is a BERT-style encoder with neither a preprocessor nor a "
        "vocab_file asset. Set backbone.preprocessor to its matching TF Hub preprocessor handle."
    )
