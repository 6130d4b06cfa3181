"""The classification loss: cross-entropy with label smoothing, class weights and a focal term."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras


class WeightedCrossEntropy(keras.losses.Loss):
    """Cross-entropy on logits with label smoothing, per-class weights and an
    optional focal term.

    Single-label targets are class indices, or rows of class probabilities
    (mixup and cutmix make those); softmax cross-entropy. Multi-label targets
    are multi-hot rows; sigmoid binary cross-entropy. Keras's sparse
    cross-entropy has no label smoothing, hence this class.

    With `focal_gamma` > 0 each example's loss is scaled by `(1 - p)^gamma`,
    `p` being the probability given to its true class(es) (Lin et al., 2017),
    so well-classified examples count less.
    """

    def __init__(self, num_classes: int, multi_label: bool = False, label_smoothing: float = 0.0,
                 class_weights: np.ndarray | None = None, focal_gamma: float = 0.0,
                 name: str = "cross_entropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.class_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(y_pred, tf.float32)
        y_true = tf.convert_to_tensor(y_true)
        if self.multi_label:
            targets = tf.cast(y_true, tf.float32)
            losses = keras.losses.binary_crossentropy(
                targets, logits, from_logits=True, label_smoothing=self.label_smoothing)
            weights = None if self.class_weights is None else tf.reduce_max(
                targets * self.class_weights, axis=-1) + tf.cast(
                tf.reduce_sum(targets, -1) == 0, tf.float32)
            # Mean probability of each label's true state, as for the loss.
            probability = tf.reduce_mean(
                targets * tf.sigmoid(logits) + (1 - targets) * tf.sigmoid(-logits), -1)
        else:
            if y_true.shape.rank == 2 and y_true.shape[-1] == self.num_classes:
                targets = tf.cast(y_true, tf.float32)
            else:
                targets = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), self.num_classes)
            losses = keras.losses.categorical_crossentropy(
                targets, logits, from_logits=True, label_smoothing=self.label_smoothing)
            weights = None if self.class_weights is None else tf.reduce_sum(
                targets * self.class_weights, -1)
            probability = tf.reduce_sum(targets * tf.nn.softmax(logits, -1), -1)
        if self.focal_gamma > 0:
            losses = losses * tf.pow(1.0 - probability, self.focal_gamma)
        return losses if weights is None else losses * weights
