"""Losses the built-in tasks share."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras


class WeightedCrossEntropy(keras.losses.Loss):
    """Cross-entropy on logits with label smoothing and per-class weights.

    Single-label targets are class indices (softmax cross-entropy); multi-label
    targets are multi-hot rows (sigmoid binary cross-entropy). Keras's sparse
    cross-entropy has no label smoothing, hence this class.
    """

    def __init__(self, num_classes: int, multi_label: bool = False, label_smoothing: float = 0.0,
                 class_weights: np.ndarray | None = None, name: str = "cross_entropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(y_pred, tf.float32)
        if self.multi_label:
            targets = tf.cast(y_true, tf.float32)
            losses = keras.losses.binary_crossentropy(
                targets, logits, from_logits=True, label_smoothing=self.label_smoothing)
            weights = None if self.class_weights is None else tf.reduce_max(
                targets * self.class_weights, axis=-1) + tf.cast(
                tf.reduce_sum(targets, -1) == 0, tf.float32)
        else:
            indices = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
            targets = tf.one_hot(indices, self.num_classes)
            losses = keras.losses.categorical_crossentropy(
                targets, logits, from_logits=True, label_smoothing=self.label_smoothing)
            weights = None if self.class_weights is None else tf.gather(self.class_weights, indices)
        return losses if weights is None else losses * weights
