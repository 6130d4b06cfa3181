"""FCOS training targets: which box, if any, each feature location predicts.

Tian et al. (2019), "FCOS: Fully Convolutional One-Stage Object Detection",
with centre sampling. Everything is vectorised over the batch and the padded
boxes, so it runs in a tf.function training step or after `batch` in tf.data.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

# Which sizes each level learns, as the largest ltrb distance in pixels, one
# `[low, high)` range per stride (8, 16, 32). Fixed pixels rather than shares
# of the image: the receptive fields of the levels are fixed in pixels too.
DEFAULT_SCALE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, math.inf))
DEFAULT_CENTER_RADIUS = 1.5


def assign_fcos_targets(boxes: Any, classes: Any, ignore: Any, points: Any, level_ids: Any,
                        strides: Any,
                        scale_ranges: Sequence[Sequence[float]] = DEFAULT_SCALE_RANGES,
                        center_radius: float = DEFAULT_CENTER_RADIUS) -> dict[str, tf.Tensor]:
    """Match every location of every image to at most one ground-truth box.

    A location is a candidate for a box when its centre lies strictly inside
    the box, strictly within `center_radius * stride` of the box centre on both
    axes, and its largest distance to the box edges is in `[low, high)` of its
    level's scale range. Of several candidates it takes the box of smallest
    area (the first such box on an exact tie). Boxes of class -1 (padding) and
    ignore boxes never match; a location whose centre lies inside an ignore box
    (of class >= 0) and that matched no other box gets weight 0, so it is
    neither a positive nor a negative.

    Args:
        boxes: `[B, M, 4]` float boxes in pixels.
        classes: `[B, M]` int class ids, -1 for padding.
        ignore: `[B, M]` bool, True for crowd or difficult boxes.
        points: `[L, 2]` `(x, y)` location centres, from `boxes.locations`.
        level_ids: `[L]` int level of each location.
        strides: `[L]` stride of each location.
        scale_ranges: one `(low, high)` pixel range per level.
        center_radius: half side of the centre region, in strides.

    Returns:
        A dict of
        `class_targets` `[B, L]` int32, the matched class or -1 for background;
        `box_targets` `[B, L, 4]` float32 `(l, t, r, b)` distances to the
        matched box in units of the location's stride, 0 where not positive;
        `centerness_targets` `[B, L]` float32, 0 where not positive;
        `positive` `[B, L]` bool;
        `weight` `[B, L]` float32 classification weight, 0 where ignored.

    Example:

    ```python
    points, level_ids, point_strides = locations(64)
    targets = assign_fcos_targets(
        [[[6, 10, 38, 42]]], [[2]], [[False]], points, level_ids, point_strides)
    ```
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    classes = tf.cast(classes, tf.int32)
    ignore = tf.cast(ignore, tf.bool)
    strides = tf.cast(strides, tf.float32)
    # Everything below is [B, L, M]: image, location, box.
    distances = _distances(points, boxes)
    inside = tf.reduce_min(distances, axis=-1) > 0
    real = (classes >= 0)[:, None, :]
    candidate = (inside & _in_centre_region(points, boxes, strides, center_radius)
                 & _in_scale_range(distances, level_ids, scale_ranges)
                 & real & ~ignore[:, None, :])

    box_area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    candidate_area = tf.where(candidate, box_area[:, None, :], np.inf)
    matched = tf.argmin(candidate_area, axis=-1, output_type=tf.int32)  # [B, L]
    positive = tf.reduce_any(candidate, axis=-1)

    matched_distances = tf.gather(distances, matched, axis=2, batch_dims=2)  # [B, L, 4]
    matched_class = tf.gather(classes, matched, axis=1, batch_dims=1)
    in_ignore_box = tf.reduce_any(inside & real & ignore[:, None, :], axis=-1)
    box_targets = tf.where(positive[..., None], matched_distances / strides[:, None], 0.0)
    return {
        "class_targets": tf.where(positive, matched_class, -1),
        "box_targets": box_targets,
        "centerness_targets": tf.where(positive, centerness(box_targets), 0.0),
        "positive": positive,
        "weight": tf.cast(positive | ~in_ignore_box, tf.float32),
    }


def centerness(ltrb: Any) -> tf.Tensor:
    """How central a location is in its box, from `[..., 4]` ltrb distances.

    `sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`: 1 at the centre,
    towards 0 at an edge; 0 where a distance is not positive.
    """
    ltrb = tf.convert_to_tensor(ltrb, tf.float32)
    left, top, right, bottom = ltrb[..., 0], ltrb[..., 1], ltrb[..., 2], ltrb[..., 3]
    horizontal = tf.math.divide_no_nan(tf.minimum(left, right), tf.maximum(left, right))
    vertical = tf.math.divide_no_nan(tf.minimum(top, bottom), tf.maximum(top, bottom))
    return tf.sqrt(tf.maximum(horizontal * vertical, 0.0))


def _distances(points: Any, boxes: tf.Tensor) -> tf.Tensor:
    """`[B, L, M, 4]` pixel distances from each location to each box's edges."""
    points = tf.convert_to_tensor(points, tf.float32)[None, :, None, :]
    boxes = boxes[:, None, :, :]
    return tf.concat([points - boxes[..., :2], boxes[..., 2:] - points], axis=-1)


def _in_centre_region(points: Any, boxes: tf.Tensor, strides: tf.Tensor,
                      center_radius: float) -> tf.Tensor:
    """Whether each location is within `center_radius` strides of each box centre.

    Only locations near the centre become positives (FCOS centre sampling):
    those near the edges of a box see more background than object.
    """
    points = tf.convert_to_tensor(points, tf.float32)[None, :, None, :]
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    offset = tf.abs(points - centres[:, None, :, :])
    radius = center_radius * strides[None, :, None]
    return tf.reduce_all(offset < radius[..., None], axis=-1)


def _in_scale_range(distances: tf.Tensor, level_ids: Any,
                    scale_ranges: Sequence[Sequence[float]]) -> tf.Tensor:
    """Whether each box's size suits the level of each location."""
    ranges = tf.constant(scale_ranges, tf.float32)
    bounds = tf.gather(ranges, tf.cast(level_ids, tf.int32))[None, :, None, :]  # [1, L, 1, 2]
    largest = tf.reduce_max(distances, axis=-1)
    return (largest >= bounds[..., 0]) & (largest < bounds[..., 1])
