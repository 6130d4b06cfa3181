"""Classification head over a text backbone: pooling, dropout, dense logits."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

import ftk
from ftk.text.pooling import POOLINGS, pool_text_outputs


class TextClassificationHead(keras.layers.Layer):
    """Pools a text backbone's outputs and maps them to class logits.

    Args:
        num_classes: width of the output layer.
        pooling: how BERT-style encoder outputs become one vector (see
            `ftk.text.pooling.pool_text_outputs`); embedding models return one
            vector per text already.
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
        vector = pool_text_outputs(outputs, features, self.pooling)
        return self.classifier(self.dropout(vector, training=training))
