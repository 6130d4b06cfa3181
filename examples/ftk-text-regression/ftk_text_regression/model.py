"""The regression head and loss (TensorFlow; imported only when a run builds them)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from ftk.text.pooling import pool_text_outputs


class RegressionHead(keras.layers.Layer):
    """Pooling, dropout and one dense unit predicting the standardised target,
    mapped back to the target's units with the training mean and spread."""

    def __init__(self, mean: float, std: float, pooling: str = "auto", dropout: float = 0.1,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.mean, self.std, self.pooling = float(mean), float(std), pooling
        self.dropout = keras.layers.Dropout(dropout)
        self.dense = keras.layers.Dense(1, dtype="float32", name="standardised")

    def call(self, outputs: Any, features: Any = None, training: bool | None = None) -> tf.Tensor:
        vector = pool_text_outputs(outputs, features, self.pooling)
        return self.dense(self.dropout(vector, training=training)) * self.std + self.mean


class StandardisedLoss(keras.losses.Loss):
    """MSE or Huber between standardised targets and predictions, so the loss
    and its learning rate do not depend on the targets' units."""

    def __init__(self, mean: float, std: float, kind: str = "mse", delta: float = 1.0,
                 **kwargs: Any):
        super().__init__(name=kind, **kwargs)
        self.mean, self.std, self.kind, self.delta = float(mean), float(std), kind, float(delta)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        truth = (tf.reshape(tf.cast(y_true, tf.float32), [-1, 1]) - self.mean) / self.std
        predicted = (tf.reshape(tf.cast(y_pred, tf.float32), [-1, 1]) - self.mean) / self.std
        if self.kind == "huber":
            return keras.losses.huber(truth, predicted, delta=self.delta)
        return tf.reduce_mean(tf.square(truth - predicted), axis=-1)
