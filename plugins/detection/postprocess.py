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
    suppression) and scale them to each input image's own pixels.

    Returns:
        `boxes` `[B, K, 4]` (x_min, y_min, x_max, y_max), `scores` `[B, K]`,
        `class_ids` `[B, K]` (-1 past the detections), `labels` `[B, K]`
        (class names, "" past the detections), `num_detections` `[B]`; K is
        `head.max_detections`.
    """
    size = config["backbone"]["image_size"]
    settings = config["head"]
    points, _, strides = box_ops.locations(size, STRIDES)
    # The static location count lets every later slice be a TFLite builtin.
    outputs = tf.reshape(outputs, [-1, points.shape[0], space.num_classes + 5])
    parts = unpack(outputs, space.num_classes)
    corners = box_ops.decode(points, parts["box_regression"], strides) / size
    # FCOS ranks by the geometric mean of class score and centerness.
    scores = tf.sqrt(tf.sigmoid(parts["class_logits"]) * tf.sigmoid(parts["centerness"])[..., None])
    x_min, y_min, x_max, y_max = tf.unstack(corners, axis=-1)
    limit = settings["max_detections"]
    boxes, kept_scores, class_ids, counts = per_class_nms(
        tf.stack([y_min, x_min, y_max, x_max], axis=-1), scores, limit,
        settings["iou_threshold"], settings["score_threshold"])
    height, width = features["image_size"][:, 0:1], features["image_size"][:, 1:2]
    top, left, bottom, right = tf.unstack(boxes, axis=-1)
    pixels = tf.stack([left * width, top * height, right * width, bottom * height], axis=-1)
    valid = tf.range(limit)[None, :] < counts[:, None]
    class_ids = tf.where(valid, class_ids, -1)
    names = tf.constant([*space.classes, ""])
    return {"boxes": pixels, "scores": kept_scores, "class_ids": class_ids,
            "labels": tf.gather(names, tf.where(valid, class_ids, space.num_classes)),
            "num_detections": counts}


def per_class_nms(boxes: tf.Tensor, scores: tf.Tensor, limit: int, iou_threshold: float,
                  score_threshold: float) -> tuple[tf.Tensor, ...]:
    """Non-maximum suppression within each class, best `limit` boxes over all
    classes, per image: what `tf.image.combined_non_max_suppression` gives
    for boxes clipped to the image, from ops TFLite has kernels for.

    Each (location, class) pair is one candidate; shifting every class's
    boxes to a region of its own keeps boxes of different classes from
    suppressing each other in one suppression pass.

    Args:
        boxes: `[B, L, 4]` (y_min, x_min, y_max, x_max), fractions of the image.
        scores: `[B, L, C]`.

    Returns:
        boxes `[B, limit, 4]` clipped to [0, 1], scores `[B, limit]`, class
        ids `[B, limit]` and the count of real detections `[B]`; rows past
        the count are zero.
    """
    classes = scores.shape[-1]

    def one_image(image: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        image_boxes, image_scores = image
        # Clipped first, so every class's region is the same 2-wide square
        # whatever an untrained head predicts.
        image_boxes = tf.clip_by_value(image_boxes, 0.0, 1.0)
        flat_boxes = tf.reshape(tf.tile(image_boxes[:, None, :], [1, classes, 1]), [-1, 4])
        flat_classes = tf.tile(tf.range(classes), [tf.shape(image_boxes)[0]])
        shifted = flat_boxes + (tf.cast(flat_classes, tf.float32) * 2.0)[:, None]
        chosen, chosen_scores, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=shifted, scores=tf.reshape(image_scores, [-1]), max_output_size=limit,
            iou_threshold=iou_threshold, score_threshold=score_threshold,
            soft_nms_sigma=0.0, pad_to_max_output_size=True)
        kept = tf.range(limit) < count
        kept_boxes = tf.gather(flat_boxes, chosen)
        return (tf.where(kept[:, None], kept_boxes, 0.0), tf.where(kept, chosen_scores, 0.0),
                tf.where(kept, tf.gather(flat_classes, chosen), 0), count)

    return tf.map_fn(one_image, (boxes, scores), fn_output_signature=(
        tf.TensorSpec([limit, 4], tf.float32), tf.TensorSpec([limit], tf.float32),
        tf.TensorSpec([limit], tf.int32), tf.TensorSpec([], tf.int32)))


def format_detections(row: Mapping[str, Any], space: Any) -> dict:
    """One image's detections as JSON-ready values."""
    count = int(row["num_detections"])
    detections = [{"label": space.classes[int(row["class_ids"][i])],
                   "score": round(float(row["scores"][i]), 4),
                   "box": [round(float(v), 1) for v in np.asarray(row["boxes"][i])]}
                  for i in range(count)]
    return {"count": count, "detections": detections}
