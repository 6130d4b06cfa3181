"""Box-aware augmentation of one detection example.

Images are float32 `[H, W, 3]` in [0, 1]; boxes `[M, 4]` are
`[x_min, y_min, x_max, y_max]` pixels, padded to a fixed `M` with class -1.
Every random op is stateless and seeded by a `[2]` int tensor from the data
pipeline, so a seeded run repeats exactly although tf.data maps in parallel.
Shapes stay static: a box pushed out of the image is dropped by setting its
class to -1, never by removing its row.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ftk.images import resize
from ftk.plugins.detection import boxes as box_ops

# A box cropped to less than this share of its area is dropped: what is left
# is usually too little of the object to name it.
MIN_VISIBLE = 0.3
# Mid grey: what [0, 1] images average to, so padding adds no strong edges.
PAD_VALUE = 0.5


def resize_with_boxes(image: Any, boxes: Any, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize to `size` x `size`, ignoring aspect ratio, and scale the boxes to match.

    Args:
        image: `[H, W, 3]` float pixels.
        boxes: `[M, 4]` boxes in pixels of `image`.
        size: output side.

    Returns:
        `(image [size, size, 3], boxes [M, 4])`.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    return resize(image, size), _scale_boxes(boxes, tf.shape(image), size, size)


def random_flip(image: Any, boxes: Any, seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror the image and its boxes left to right, half of the time.

    Args:
        image: `[H, W, 3]` pixels.
        boxes: `[M, 4]` boxes in pixels of `image`.
        seed: `[2]` int seed.

    Returns:
        `(image, boxes)`, same shapes.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    flip = tf.random.stateless_uniform([], seed) < 0.5
    width = tf.cast(tf.shape(image)[1], tf.float32)
    mirrored = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                        axis=-1)
    return (tf.where(flip, tf.reverse(image, axis=[1]), image),
            tf.where(flip, mirrored, boxes))


def random_scale_crop(image: Any, boxes: Any, classes: Any, ignore: Any, size: int, seed: Any,
                      scale_range: tuple[float, float] = (0.6, 1.4),
                      min_visible: float = MIN_VISIBLE, pad_value: float = PAD_VALUE
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Scale jitter, then a random `size` x `size` window: a crop or a padding.

    The image is resized to a square of side `round(size * scale)`, `scale`
    drawn uniformly from `scale_range`. A larger square is cropped at a random
    place; a smaller one is put at a random place on a `pad_value` canvas.
    Boxes move with the image and are clipped to it. A box with less than
    `min_visible` of its area left inside is dropped: class -1, ignore False,
    coordinates 0. Padding rows (class -1) are zeroed the same way.

    Args:
        image: `[H, W, 3]` float pixels.
        boxes: `[M, 4]` boxes in pixels of `image`.
        classes: `[M]` int class ids, -1 for padding.
        ignore: `[M]` bool crowd or difficult flags.
        size: output side.
        seed: `[2]` int seed.
        scale_range: smallest and largest scale, relative to `size`.
        min_visible: share of a box's area that must stay in the image.
        pad_value: grey level of the padding (0.5 by default; 0 for black).

    Returns:
        `(image [size, size, 3], boxes [M, 4], classes [M], ignore [M])`.
    """
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high. "
                         f"Received: scale_range={scale_range}")
    image = tf.convert_to_tensor(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), 3)
    scale = tf.random.stateless_uniform([], seeds[0], low, high)
    side = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    boxes = _scale_boxes(boxes, tf.shape(image), side, side)
    image = resize(image, side)

    # shift > 0 pads before the image, shift < 0 crops from its start.
    slack = size - side
    shift = tf.random.stateless_uniform([2], seeds[1], tf.minimum(slack, 0),
                                        tf.maximum(slack, 0) + 1, dtype=tf.int32)
    before = tf.maximum(shift, 0)
    after = tf.maximum(slack, 0) - before
    padded = tf.pad(image, [[before[1], after[1]], [before[0], after[0]], [0, 0]],
                    constant_values=pad_value)
    crop = tf.maximum(-shift, 0)
    image = tf.slice(padded, [crop[1], crop[0], 0], [size, size, 3])
    image.set_shape([size, size, 3])

    offset = tf.cast(tf.tile(shift, [2]), tf.float32)
    boxes, classes, ignore = _clip_and_drop(boxes + offset, classes, ignore, size, min_visible)
    return image, boxes, classes, ignore


def photometric(image: Any, seed: Any, strength: float = 0.2) -> tf.Tensor:
    """Brightness, contrast, saturation and hue jitter, clipped to [0, 1].

    Brightness moves by up to `strength`; contrast and saturation are scaled
    by a factor in `[1 - strength, 1 + strength]`; hue turns by up to
    `strength / 4` of the colour circle (a turn of `strength` would recolour
    the objects, not just the light). Boxes are unchanged.

    Args:
        image: `[H, W, 3]` pixels in [0, 1], or `[B, H, W, 3]`, all jittered alike.
        seed: `[2]` int seed.
        strength: jitter amount, from 0 (none) to 1.

    Returns:
        The jittered image, same shape.
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be between 0 and 1. Received: strength={strength}")
    image = tf.convert_to_tensor(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), 4)

    def uniform(index: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform([], seeds[index], low, high)

    image = image + uniform(0, -strength, strength)
    image = tf.image.adjust_contrast(image, uniform(1, 1 - strength, 1 + strength))
    # The colour ops expect [0, 1] inputs.
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = tf.image.adjust_saturation(image, uniform(2, 1 - strength, 1 + strength))
    image = tf.image.adjust_hue(image, uniform(3, -strength / 4, strength / 4))
    return tf.clip_by_value(image, 0.0, 1.0)


def _scale_boxes(boxes: Any, image_shape: tf.Tensor, height: Any, width: Any) -> tf.Tensor:
    """Boxes of an image of `image_shape` in pixels of a `height` x `width` resize."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scale_y = tf.cast(height, tf.float32) / tf.cast(image_shape[0], tf.float32)
    scale_x = tf.cast(width, tf.float32) / tf.cast(image_shape[1], tf.float32)
    return boxes * tf.stack([scale_x, scale_y, scale_x, scale_y])


def _clip_and_drop(boxes: tf.Tensor, classes: Any, ignore: Any, size: int,
                   min_visible: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Clip boxes to a `size` square; drop those with under `min_visible` left."""
    clipped = box_ops.clip_boxes(boxes, size, size)
    visible = tf.math.divide_no_nan(box_ops.area(clipped), box_ops.area(boxes))
    classes = tf.cast(classes, tf.int32)
    # An empty box has nothing visible, so it is dropped whatever min_visible is.
    kept = (classes >= 0) & (visible >= min_visible) & (box_ops.area(clipped) > 0)
    return (tf.where(kept[:, None], clipped, 0.0), tf.where(kept, classes, -1),
            kept & tf.cast(ignore, tf.bool))
