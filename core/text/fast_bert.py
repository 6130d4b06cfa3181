"""The TFLite form of BERT-style text input: the same WordPiece ids from ops a
TFLite interpreter runs.

tensorflow-text's `BertTokenizer` (what training uses, and what TF Hub BERT
preprocessors hold) converts only to TensorFlow "Flex" ops, which no Python
TFLite interpreter runs. `FastBertTokenizer` converts to two custom ops with
registrars in `tensorflow_text.tflite_registrar`; packing is done here with
builtin ops, because `combine_segments` leaves a `RaggedGather` op that has
no TFLite kernel.

The ids equal `BertTokenizer`'s except around some spaces, which
`FastBertTokenizer` treats as spaces and `BertTokenizer` keeps inside words:
U+2028 and U+2029, and for cased vocabularies the other non-ASCII spaces
(U+00A0, U+3000, ...). tests/plugins/text_classification compare the two.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf
import tensorflow_text as text


class FastBertInput(tf.Module):
    """Strings to `input_word_ids`, `input_mask` and `input_type_ids`, each
    int32 `[batch, seq_length]`: `[CLS] pieces [SEP]`, then padding.

    Args:
        vocab: the WordPiece vocabulary, one token per id.
        lower_case: lower-case and strip accents first (uncased models).
        seq_length: width of the outputs; longer texts are cut.
    """

    def __init__(self, vocab: Sequence[str], lower_case: bool, seq_length: int):
        super().__init__(name="fast_bert_input")
        ids = {token: i for i, token in enumerate(vocab)}
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]
        self.pad_id = 0  # what training's packing (pad_model_inputs) pads with
        self.seq_length = seq_length
        self.facts = {"tokenizer": "tensorflow_text.FastBertTokenizer (WordPiece)",
                      "lower_case": lower_case, "seq_length": seq_length,
                      "vocab_size": len(vocab)}
        self.tokenizer = text.FastBertTokenizer(
            vocab=list(vocab), lower_case_nfd_strip_accents=lower_case,
            token_out_type=tf.int32)

    def __call__(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        pieces = self.tokenizer.tokenize(tf.reshape(strings, [-1]))
        room = self.seq_length - 2  # [CLS] and [SEP]
        splits = tf.cast(pieces.row_splits, tf.int32)
        starts = splits[:-1]
        lengths = tf.minimum(splits[1:] - starts, room)
        position = tf.range(room)[None, :]
        inside = position < lengths[:, None]
        # Gathering from the flat ids with one padding id appended keeps every
        # index valid, so rows of any length become one dense block.
        padded_ids = tf.concat([pieces.flat_values, [self.pad_id]], axis=0)
        where = tf.where(inside, starts[:, None] + position, tf.size(pieces.flat_values))
        body = tf.gather(padded_ids, where)
        batch = tf.shape(body)[0]
        word_ids = tf.concat([tf.fill([batch, 1], self.cls_id), body,
                              tf.fill([batch, 1], self.pad_id)], axis=1)
        column = tf.range(self.seq_length)[None, :]
        separator = lengths[:, None] + 1
        word_ids = tf.where(column == separator, self.sep_id, word_ids)
        return {"input_word_ids": word_ids,
                "input_mask": tf.cast(column <= separator, tf.int32),
                "input_type_ids": tf.zeros_like(word_ids)}


def read_vocab(path: str) -> list[str]:
    """One token per line, lines split at "\\n" only, as TensorFlow's
    lookup tables read the file (a token may hold other line breaks)."""
    lines = tf.io.gfile.GFile(path).read().split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def lower_cases(tokenize: Any, vocab: Sequence[str]) -> bool:
    """Whether a tokenizer lower-cases, found by asking it: "A" becomes the
    id of "a" only when it does (for preprocessors that do not say)."""
    ids = tokenize(tf.constant(["A"])).flat_values.numpy().tolist()
    return ids[:1] == [vocab.index("a")] if "a" in vocab else True
