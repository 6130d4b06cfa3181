"""From the head's dense outputs to boxes in the input image's pixels."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from ftk.plugins.detection import boxes as box_ops
from ftk.plugins.detection.losses import DetectionLoss
from ftk.plugins.detection.model import STRIDES, unpack


class PackedDetectionLoss(DetectionLoss):
    """The FCOS loss over packed tensors: targets `[B, M, 6]` (corners, class,
    ignore) and head outputs `[B, L, classes + 5]`."""

    def __init__(self, num_classes: int, image_size: int, **kwargs: Any):
        points, level_ids, strides = box_ops.locations(image_size, STRIDES)
        super().__init__(points, level_ids, strides, **kwargs)
        self.num_classes = num_classes

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        targets = {"boxes": y_true[..., :4], "classes": tf.cast(y_true[..., 4], tf.int32),
                   "ignore": y_true[..., 5] > 0.5}
        return super().call(targets, unpack(y_pred, self.num_classes))


def build_detection_loss(space: Any, config: Mapping[str, Any]) -> PackedDetectionLoss:
    loss = config["loss"]
    return PackedDetectionLoss(space.num_classes, config["backbone"]["image_size"],
                               box_weight=loss["box_weight"],
                               centerness_weight=loss["centerness_weight"],
                               alpha=loss["focal_alpha"], gamma=loss["focal_gamma"])


def postprocess_detections(outputs: tf.Tensor, space: Any,
                           config: Mapping[str, Any], features: Mapping[str, tf.Tensor]) -> dict:
    """Decode boxes, score them, keep the best per class (non-maximum
    suppression across the batch in one op) and scale them to each input
    image's own pixels.

    Returns:
        `boxes` `[B, K, 4]` (x_min, y_min, x_max, y_max), `scores` `[B, K]`,
        `class_ids` `[B, K]` (-1 past the detections), `labels` `[B, K]`
        (class names, "" past the detections), `num_detections` `[B]`; K is
        `head.max_detections`.
    """
    size = config["backbone"]["image_size"]
    settings = config["head"]
    parts = unpack(outputs, space.num_classes)
    points, _, strides = box_ops.locations(size, STRIDES)
    corners = box_ops.decode(points, parts["box_regression"], strides) / size
    # FCOS ranks by the geometric mean of class score and centerness.
    scores = tf.sqrt(tf.sigmoid(parts["class_logits"]) * tf.sigmoid(parts["centerness"])[..., None])
    x_min, y_min, x_max, y_max = tf.unstack(corners, axis=-1)
    limit = settings["max_detections"]
    nms = tf.image.combined_non_max_suppression(
        tf.stack([y_min, x_min, y_max, x_max], axis=-1)[:, :, None, :], scores,
        max_output_size_per_class=limit, max_total_size=limit,
        iou_threshold=settings["iou_threshold"], score_threshold=settings["score_threshold"],
        clip_boxes=True)
    height, width = features["image_size"][:, 0:1], features["image_size"][:, 1:2]
    top, left, bottom, right = tf.unstack(nms.nmsed_boxes, axis=-1)
    pixels = tf.stack([left * width, top * height, right * width, bottom * height], axis=-1)
    valid = tf.range(limit)[None, :] < nms.valid_detections[:, None]
    class_ids = tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32), -1)
    names = tf.constant([*space.classes, ""])
    return {"boxes": pixels, "scores": nms.nmsed_scores, "class_ids": class_ids,
            "labels": tf.gather(names, tf.where(valid, class_ids, space.num_classes)),
            "num_detections": nms.valid_detections}


def format_detections(row: Mapping[str, Any], space: Any) -> dict:
    """One image's detections as JSON-ready values."""
    count = int(row["num_detections"])
    detections = [{"label": space.classes[int(row["class_ids"][i])],
                   "score": round(float(row["scores"][i]), 4),
                   "box": [round(float(v), 1) for v in np.asarray(row["boxes"][i])]}
                  for i in range(count)]
    return {"count": count, "detections": detections}
