"""Classification head over a text backbone: pooling, dropout, dense logits."""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

import ftk

POOLINGS = ("auto", "pooled", "cls", "mean")


class TextClassificationHead(keras.layers.Layer):
    """Pools a text backbone's outputs and maps them to class logits.

    Args:
        num_classes: width of the output layer.
        pooling: for BERT-style encoders, `pooled` (pooled_output), `cls` (first
            token of sequence_output), `mean` (masked mean of sequence_output) or
            `auto` (mean_pooled_output when the encoder has one, else pooled).
            Ignored for embedding models, which return one vector per text.
        dropout: dropout rate before the output layer.
    """

    def __init__(self, num_classes: int, pooling: str = "auto", dropout: float = 0.1, **kwargs: Any):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ftk.ConfigError(f"head.pooling must be one of {', '.join(POOLINGS)}. "
                                  f"Received: pooling={pooling!r}")
        self.pooling = pooling
        self.dropout = keras.layers.Dropout(dropout)
        # float32 logits keep the softmax stable under mixed precision.
        self.classifier = keras.layers.Dense(num_classes, dtype="float32", name="logits")

    def call(self, outputs: Any, features: Any = None, training: bool | None = None) -> tf.Tensor:
        vector = self.pool(outputs, features)
        return self.classifier(self.dropout(vector, training=training))

    def pool(self, outputs: Any, features: Any) -> tf.Tensor:
        if not isinstance(outputs, Mapping):
            return outputs
        pooling = self.pooling
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


def build_text_head(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> TextClassificationHead:
    return TextClassificationHead(label_space.num_classes, pooling=config["head"]["pooling"],
                                  dropout=config["head"]["dropout"], name="head")
