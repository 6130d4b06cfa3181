"""One vector per text from a text backbone's outputs."""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

POOLINGS = ("auto", "pooled", "cls", "mean")


def pool_text_outputs(outputs: Any, features: Any, pooling: str = "auto") -> tf.Tensor:
    """The `[B, D]` vector of each text.

    Args:
        outputs: an embedding model's `[B, D]` (returned as it is), or a
            BERT-style encoder's dict.
        features: the batch's features (`input_mask` for masked mean pooling).
        pooling: `pooled` (pooled_output), `cls` (first token of
            sequence_output), `mean` (masked mean of sequence_output) or
            `auto` (mean_pooled_output when the encoder has one, else pooled).
    """
    if not isinstance(outputs, Mapping):
        return outputs
    if pooling == "auto":
        pooling = "mean" if "mean_pooled_output" in outputs else "pooled"
    if pooling == "pooled":
        return outputs["pooled_output"]
    if pooling == "cls":
        return outputs["sequence_output"][:, 0]
    if "mean_pooled_output" in outputs:
        return outputs["mean_pooled_output"]
    mask = tf.cast(features["input_mask"], outputs["sequence_output"].dtype)[..., None]
    total = tf.reduce_sum(outputs["sequence_output"] * mask, axis=1)
    return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
