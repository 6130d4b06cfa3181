"""A BERT text preprocessor saved in the TF Hub preprocessor convention.

The saved object offers what TF Hub BERT preprocessors offer:

* ``__call__(strings[B])`` -> dict of int32 ``[B, default_seq_length]``
  tensors ``input_word_ids``, ``input_mask``, ``input_type_ids``;
* ``tokenize(strings[B])`` -> int32 ``RaggedTensor`` ``[B, words, pieces]``;
* ``bert_pack_inputs(segments, seq_length=N)`` -> the same dict as
  ``__call__`` for a list of one or two tokenized segments, ``N`` wide.

so ``hub.KerasLayer(hub.load(path).tokenize)`` and
``hub.KerasLayer(hub.load(path).bert_pack_inputs, arguments=...)`` work as
in the TF Hub BERT tutorials.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_text as text

# Segment counts for which `bert_pack_inputs` is traced before saving; a
# restored function can only be called with structures traced here. Single
# texts and pairs cover BERT tasks, and every extra trace costs about two
# seconds of conversion time and some load time.
MAX_SEGMENTS = 2

_STRINGS = tf.TensorSpec([None], tf.string, name="strings")


class BertPreprocessor(tf.Module):
    """Tokenizes and packs text for a BERT encoder, with the vocab as asset.

    Args:
        vocab_path: The WordPiece `vocab.txt`, one token per line.
        do_lower_case: Lower-case and strip accents before WordPiece.
        default_seq_length: Width of the tensors `__call__` returns.
        cls_id: Id of `[CLS]`, put before the first segment.
        sep_id: Id of `[SEP]`, put after every segment.
        pad_id: Id that fills positions after the packed tokens.
    """

    def __init__(self, vocab_path: str | Path, *, do_lower_case: bool,
                 default_seq_length: int, cls_id: int, sep_id: int,
                 pad_id: int) -> None:
        super().__init__(name="bert_preprocessor")
        # Attributes TF Hub BERT models carry, so consumers can inspect them.
        self.vocab_file = tf.saved_model.Asset(str(vocab_path))
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False,
                                         name="do_lower_case")
        self.default_seq_length = tf.Variable(
            default_seq_length, trainable=False, dtype=tf.int32,
            name="default_seq_length")
        # Building the table from the Asset (not a plain path) is what makes
        # the saved model read the copy under assets/ after it is moved.
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_file, key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE, value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
        self._vocab_table = tf.lookup.StaticHashTable(initializer, -1)
        self._tokenizer = text.BertTokenizer(
            self._vocab_table, token_out_type=tf.int32,
            lower_case=do_lower_case)
        self._seq_length = default_seq_length
        self._cls_id, self._sep_id, self._pad_id = cls_id, sep_id, pad_id
        self._trace_pack_signatures()

    @tf.function(input_signature=[_STRINGS], autograph=False)
    def __call__(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        """Tokenizes one segment per string and packs it to the default width."""
        return self._pack([self._tokenizer.tokenize(strings)], self._seq_length)

    @tf.function(input_signature=[_STRINGS], autograph=False)
    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """Splits `strings[B]` into int32 word pieces `[B, words, pieces]`."""
        return self._tokenizer.tokenize(strings)

    @tf.function(autograph=False)
    def bert_pack_inputs(self, inputs, seq_length) -> dict[str, tf.Tensor]:
        """Trims, packs with [CLS]/[SEP] and pads a list of segments.

        Args:
            inputs: A list of 1 to `MAX_SEGMENTS` int32 ragged tensors, each
                `[B, words, pieces]` (as from `tokenize`) or `[B, pieces]`.
            seq_length: Width of the returned tensors; scalar int32.

        Returns:
            Dict of int32 `[B, seq_length]` tensors `input_word_ids`,
            `input_mask` and `input_type_ids`.
        """
        return self._pack(list(inputs), seq_length)

    def _pack(self, segments, seq_length) -> dict[str, tf.Tensor]:
        segments = [s.merge_dims(-2, -1) if s.shape.rank == 3 else s
                    for s in segments]
        # One [CLS] plus one [SEP] per segment share the budget.
        budget = seq_length - (len(segments) + 1)
        trimmed = text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        word_ids, type_ids = text.combine_segments(
            trimmed, start_of_sequence_id=self._cls_id,
            end_of_segment_id=self._sep_id)
        word_ids, mask = text.pad_model_inputs(
            word_ids, max_seq_length=seq_length, pad_value=self._pad_id)
        type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=seq_length)
        return {"input_word_ids": tf.cast(word_ids, tf.int32),
                "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(type_ids, tf.int32)}

    def _trace_pack_signatures(self) -> None:
        # Both the rank-3 output of `tokenize` and already merged rank-2
        # segments are accepted, for every supported segment count.
        seq_length = tf.TensorSpec([], tf.int32, name="seq_length")
        for rank in (3, 2):
            spec = tf.RaggedTensorSpec([None] * rank, tf.int32,
                                       ragged_rank=rank - 1)
            for count in range(1, MAX_SEGMENTS + 1):
                self.bert_pack_inputs.get_concrete_function(
                    [spec] * count, seq_length)


def save_preprocessor(preprocessor: BertPreprocessor, path: str | Path) -> None:
    """Saves `preprocessor` as a SavedModel at `path`."""
    tf.saved_model.save(preprocessor, str(path))
