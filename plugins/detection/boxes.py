"""Box geometry for detection: areas, overlaps and the FCOS location grid.

Boxes are `[x_min, y_min, x_max, y_max]` in pixels of the resized square
image. Every function takes NumPy arrays or tensors with any leading batch
dimensions and returns float32 tensors (call `.numpy()` for arrays), except
`locations`, which is static and returns NumPy arrays.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

# Guards divisions by the area of degenerate boxes (padding, or a predicted box
# with all four distances at zero) so that neither the value nor its gradient
# becomes NaN; negligible next to areas measured in pixels or strides.
EPSILON = 1e-7

DEFAULT_STRIDES = (8, 16, 32)


def _corners(boxes: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def area(boxes: Any) -> tf.Tensor:
    """Area of each box `[..., 4]` -> `[...]`; inverted boxes count as empty."""
    x_min, y_min, x_max, y_max = _corners(boxes)
    return tf.maximum(x_max - x_min, 0.0) * tf.maximum(y_max - y_min, 0.0)


def _intersection(a: Any, b: Any) -> tf.Tensor:
    """Intersection area of `a` and `b`, broadcast against each other."""
    a_x0, a_y0, a_x1, a_y1 = _corners(a)
    b_x0, b_y0, b_x1, b_y1 = _corners(b)
    width = tf.maximum(tf.minimum(a_x1, b_x1) - tf.maximum(a_x0, b_x0), 0.0)
    height = tf.maximum(tf.minimum(a_y1, b_y1) - tf.maximum(a_y0, b_y0), 0.0)
    return width * height


def pairwise_iou(a: Any, b: Any) -> tf.Tensor:
    """Intersection over union of every box in `a` with every box in `b`.

    Args:
        a: `[..., N, 4]` boxes.
        b: `[..., M, 4]` boxes, with the same leading dimensions as `a`.

    Returns:
        `[..., N, M]` IoU in [0, 1]; 0 where both boxes are empty.

    Example:

    ```python
    pairwise_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [4, 4, 5, 5]])  # [[1/3, 0]]
    ```
    """
    a = tf.convert_to_tensor(a, tf.float32)[..., :, None, :]
    b = tf.convert_to_tensor(b, tf.float32)[..., None, :, :]
    overlap = _intersection(a, b)
    union = area(a) + area(b) - overlap
    return overlap / (union + EPSILON)


def giou(a: Any, b: Any) -> tf.Tensor:
    """Generalised IoU of matching boxes (Rezatofighi et al., 2019).

    IoU minus the share of the smallest enclosing box that neither box covers,
    so it is in [-1, 1] and, unlike IoU, still tells how far apart two
    disjoint boxes are.

    Args:
        a: `[..., 4]` boxes.
        b: `[..., 4]` boxes, broadcastable against `a`.

    Returns:
        `[...]` GIoU of each pair: 1 for identical boxes, towards -1 for small
        boxes far apart.
    """
    overlap = _intersection(a, b)
    union = area(a) + area(b) - overlap
    a_x0, a_y0, a_x1, a_y1 = _corners(a)
    b_x0, b_y0, b_x1, b_y1 = _corners(b)
    enclosing = ((tf.maximum(a_x1, b_x1) - tf.minimum(a_x0, b_x0))
                 * (tf.maximum(a_y1, b_y1) - tf.minimum(a_y0, b_y0)))
    enclosing = tf.maximum(enclosing, 0.0)
    return overlap / (union + EPSILON) - (enclosing - union) / (enclosing + EPSILON)


def clip_boxes(boxes: Any, height: Any, width: Any) -> tf.Tensor:
    """Clip `[..., 4]` boxes to an image of `height` x `width` pixels."""
    x_min, y_min, x_max, y_max = _corners(boxes)
    width = tf.cast(width, tf.float32)
    height = tf.cast(height, tf.float32)
    return tf.stack([tf.clip_by_value(x_min, 0.0, width), tf.clip_by_value(y_min, 0.0, height),
                     tf.clip_by_value(x_max, 0.0, width), tf.clip_by_value(y_max, 0.0, height)],
                    axis=-1)


def locations(size: int, strides: Sequence[int] = DEFAULT_STRIDES
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centres of every feature-map cell of a square `size` x `size` input.

    A level of stride `s` has `ceil(size / s)` cells a side (what a "same"
    padded backbone gives); cell `(i, j)` is centred on pixel
    `(s * (j + 0.5), s * (i + 0.5))`. Cells run level by level, then row by
    row, so a head's `[B, H, W, C]` maps, reshaped to `[B, H * W, C]` and
    concatenated in stride order, line up with these points.

    Args:
        size: side of the input image in pixels.
        strides: the feature levels' strides, finest first.

    Returns:
        `(points, level_ids, strides_per_point)`: `[L, 2]` float32 `(x, y)`
        centres, `[L]` int32 level indices into `strides`, and `[L]` float32
        strides.

    Example:

    ```python
    points, level_ids, point_strides = locations(64)  # L = 8*8 + 4*4 + 2*2 = 84
    ```
    """
    all_points, all_levels, all_strides = [], [], []
    for level, stride in enumerate(strides):
        side = math.ceil(size / stride)
        centres = stride * (np.arange(side, dtype=np.float32) + 0.5)
        xs, ys = np.meshgrid(centres, centres)  # ys vary along rows, xs along columns
        all_points.append(np.stack([xs.ravel(), ys.ravel()], axis=-1))
        all_levels.append(np.full(side * side, level, np.int32))
        all_strides.append(np.full(side * side, stride, np.float32))
    return (np.concatenate(all_points).astype(np.float32), np.concatenate(all_levels),
            np.concatenate(all_strides))


def decode(points: Any, ltrb: Any, strides: Any) -> tf.Tensor:
    """Boxes from distances to the left, top, right and bottom edges.

    Args:
        points: `[L, 2]` `(x, y)` location centres.
        ltrb: `[..., L, 4]` distances in units of each location's stride.
        strides: `[L]` stride of each location.

    Returns:
        `[..., L, 4]` boxes in pixels.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    distances = tf.convert_to_tensor(ltrb, tf.float32) * tf.cast(strides, tf.float32)[:, None]
    return tf.concat([points - distances[..., :2], points + distances[..., 2:]], axis=-1)


def encode(points: Any, boxes: Any, strides: Any) -> tf.Tensor:
    """The inverse of `decode`: `[..., L, 4]` boxes to ltrb distances in strides."""
    points = tf.convert_to_tensor(points, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    distances = tf.concat([points - boxes[..., :2], boxes[..., 2:] - points], axis=-1)
    return distances / tf.cast(strides, tf.float32)[:, None]
