"""The FCOS detection loss: focal classification, GIoU boxes, centerness.

The three terms follow Tian et al. (2019). Each is normalised over the whole
batch, not per image, so an image with many objects counts for more than one
with few, as in FCOS.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from ftk.plugins.detection import boxes as box_ops
from ftk.plugins.detection.targets import (
    DEFAULT_CENTER_RADIUS,
    DEFAULT_SCALE_RANGES,
    assign_fcos_targets,
)

# Keys of the model outputs and of the assigned targets the loss reads.
OUTPUT_KEYS = ("class_logits", "box_regression", "centerness")
TARGET_KEYS = ("class_targets", "box_targets", "centerness_targets", "positive", "weight")


def sigmoid_focal_loss(labels_onehot: Any, logits: Any, alpha: float = 0.25,
                       gamma: float = 2.0) -> tf.Tensor:
    """Elementwise sigmoid focal loss (Lin et al., 2017).

    Binary cross-entropy scaled by `(1 - p_t)^gamma`, `p_t` being the
    probability given to the true state, so the many easy background
    locations of a detector count for little; `alpha` weighs positives and
    `1 - alpha` negatives.

    Args:
        labels_onehot: 0/1 targets, the shape of `logits`.
        logits: raw scores.
        alpha: weight of the positive targets.
        gamma: focusing exponent; 0 gives alpha-weighted cross-entropy.

    Returns:
        The loss of each element, the shape of `logits`, not reduced.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels_onehot, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    probability = tf.sigmoid(logits)
    true_probability = labels * probability + (1 - labels) * (1 - probability)
    alpha_weight = labels * alpha + (1 - labels) * (1 - alpha)
    return alpha_weight * tf.pow(1.0 - true_probability, gamma) * cross_entropy


def giou_loss(pred_boxes: Any, target_boxes: Any) -> tf.Tensor:
    """Elementwise `1 - GIoU` of matching `[..., 4]` boxes, in [0, 2]."""
    return 1.0 - box_ops.giou(pred_boxes, target_boxes)


class DetectionLoss(keras.losses.Loss):
    """The FCOS loss of a batch, from padded boxes and the head's outputs.

    `y_true` is the padded ground truth: `boxes` `[B, M, 4]` pixels,
    `classes` `[B, M]` int (-1 for padding) and `ignore` `[B, M]` bool; the
    targets are assigned here, inside the training step. Already assigned
    targets (the dict `assign_fcos_targets` returns, e.g. made in tf.data)
    are used as they are. `y_pred` holds `class_logits` `[B, L, C]`,
    `box_regression` `[B, L, 4]` (positive ltrb distances in strides, e.g.
    `exp` or `softplus` of the head; prefer those to `relu`, as a box with all
    four distances at exactly 0 is a point, where GIoU has no gradient) and
    `centerness` `[B, L]` logits.

    The value is already normalised: focal loss summed over all weighted
    locations and classes, over `max(positives, 1)`; plus `box_weight` times
    the GIoU loss of the positives weighted by their centerness targets, over
    the sum of those targets; plus `centerness_weight` times the centerness
    cross-entropy summed over positives, over `max(positives, 1)`. Positives
    are counted over the whole batch (one replica's part of it under a
    `tf.distribute` strategy). `call` returns that scalar; calling the loss
    returns it unchanged, and in `Model.compile` Keras averages it over the
    replicas.
    Per-example `sample_weight` is not supported.

    Args:
        points: `[L, 2]` location centres, from `boxes.locations`.
        level_ids: `[L]` level of each location.
        strides: `[L]` stride of each location.
        box_weight: weight of the GIoU term.
        centerness_weight: weight of the centerness term.
        alpha: focal loss weight of positives.
        gamma: focal loss focusing exponent.
        scale_ranges: one `(low, high)` pixel range per level.
        center_radius: centre sampling radius, in strides.

    Example:

    ```python
    points, level_ids, point_strides = boxes.locations(256)
    loss = DetectionLoss(points, level_ids, point_strides)
    value = loss({"boxes": b, "classes": c, "ignore": i}, model(images))
    parts = loss.components({"boxes": b, "classes": c, "ignore": i}, model(images))
    ```
    """

    def __init__(self, points: Any, level_ids: Any, strides: Any, box_weight: float = 1.0,
                 centerness_weight: float = 1.0, alpha: float = 0.25, gamma: float = 2.0,
                 scale_ranges: Sequence[Sequence[float]] = DEFAULT_SCALE_RANGES,
                 center_radius: float = DEFAULT_CENTER_RADIUS, name: str = "detection_loss",
                 **kwargs: Any):
        # The value is one scalar, so averaging it over its one element leaves it
        # as it is; under a tf.distribute strategy Keras then divides it by the
        # replica count, so that the replicas' summed gradients are their mean.
        kwargs.setdefault("reduction", keras.losses.Reduction.SUM_OVER_BATCH_SIZE)
        super().__init__(name=name, **kwargs)
        self.points = np.asarray(points, np.float32)
        self.level_ids = np.asarray(level_ids, np.int32)
        self.strides = np.asarray(strides, np.float32)
        self.box_weight = box_weight
        self.centerness_weight = centerness_weight
        self.alpha = alpha
        self.gamma = gamma
        self.scale_ranges = tuple(tuple(float(bound) for bound in pair) for pair in scale_ranges)
        self.center_radius = center_radius

    def call(self, y_true: Mapping[str, Any], y_pred: Mapping[str, Any]) -> tf.Tensor:
        return self.components(y_true, y_pred)["loss"]

    def targets(self, y_true: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """The assigned targets of `y_true`, assigning them unless given."""
        if all(key in y_true for key in TARGET_KEYS):
            return {key: y_true[key] for key in TARGET_KEYS}
        missing = [key for key in ("boxes", "classes", "ignore") if key not in y_true]
        if missing:
            raise ValueError("y_true must hold boxes, classes and ignore, or the assigned "
                             f"targets {', '.join(TARGET_KEYS)}. Received keys: {sorted(y_true)}")
        return assign_fcos_targets(y_true["boxes"], y_true["classes"], y_true["ignore"],
                                   self.points, self.level_ids, self.strides,
                                   self.scale_ranges, self.center_radius)

    def components(self, y_true: Mapping[str, Any],
                   y_pred: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """Each term of the loss, for logging.

        Returns:
            A dict of scalars: `classification`, `box` and `centerness` (each
            normalised, before `box_weight` and `centerness_weight`),
            `num_positives`, and `loss`, the weighted total `call` returns.
        """
        missing = [key for key in OUTPUT_KEYS if key not in y_pred]
        if missing:
            raise ValueError(f"y_pred must hold {', '.join(OUTPUT_KEYS)}. "
                             f"Received keys: {sorted(y_pred)}")
        targets = self.targets(y_true)
        logits = tf.cast(y_pred["class_logits"], tf.float32)
        regression = tf.cast(y_pred["box_regression"], tf.float32)
        centerness_logits = tf.cast(y_pred["centerness"], tf.float32)
        positive = tf.cast(targets["positive"], tf.float32)
        num_positives = tf.reduce_sum(positive)
        normaliser = tf.maximum(num_positives, 1.0)

        num_classes = logits.shape[-1] or tf.shape(logits)[-1]
        labels = tf.one_hot(targets["class_targets"], num_classes)  # -1 gives a row of zeros
        focal = sigmoid_focal_loss(labels, logits, self.alpha, self.gamma)
        classification = tf.reduce_sum(focal * targets["weight"][..., None]) / normaliser

        centerness_targets = targets["centerness_targets"]
        box = tf.reduce_sum(_ltrb_giou_loss(regression, targets["box_targets"])
                            * centerness_targets * positive)
        box = box / tf.maximum(tf.reduce_sum(centerness_targets * positive), box_ops.EPSILON)

        centerness_bce = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=centerness_targets, logits=centerness_logits)
        centerness = tf.reduce_sum(centerness_bce * positive) / normaliser

        total = (classification + self.box_weight * box
                 + self.centerness_weight * centerness)
        return {"classification": classification, "box": box, "centerness": centerness,
                "num_positives": num_positives, "loss": total}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(points=self.points.tolist(), level_ids=self.level_ids.tolist(),
                      strides=self.strides.tolist(), box_weight=self.box_weight,
                      centerness_weight=self.centerness_weight, alpha=self.alpha,
                      gamma=self.gamma, scale_ranges=[list(pair) for pair in self.scale_ranges],
                      center_radius=self.center_radius)
        return config


def _ltrb_giou_loss(predicted: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """`1 - GIoU` of two boxes given as ltrb distances from the same point.

    GIoU ignores where the shared point is and the unit, so both boxes are
    placed around the origin in strides rather than decoded to pixels.
    """
    def around_origin(ltrb: tf.Tensor) -> tf.Tensor:
        return tf.concat([-ltrb[..., :2], ltrb[..., 2:]], axis=-1)

    return giou_loss(around_origin(predicted), around_origin(target))
