"""Image classification inputs: resize, and train-time augmentation.

Every random op is stateless and takes its seed from the data pipeline, so a
seeded run repeats exactly although tf.data maps in parallel. Evaluation and
the exported model only resize.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

import ftk
from ftk.images import ImagePreprocessor, image_size, resize

FLIPS = ("horizontal", "vertical", "both", "none")


class ClassificationPreprocessor(ImagePreprocessor):
    """Random resized crop, flip and colour jitter on each training image.

    Args:
        size: output side length.
        augmentation: the `data.augmentation` config section, or None for no
            augmentation at all.
    """

    def augment(self, image: tf.Tensor, target: Any, seed: tf.Tensor) -> tuple[tf.Tensor, Any]:
        if self.augmentation is None:
            return resize(image, self.size), target
        options = self.augmentation
        seeds = tf.random.experimental.stateless_split(seed, 6)
        image = resize(_random_crop(image, options["crop_area"], seeds[0]), self.size)
        if options["flip"] in ("horizontal", "both"):
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        if options["flip"] in ("vertical", "both"):
            image = tf.image.stateless_random_flip_up_down(image, seeds[2])
        jitter = options["color_jitter"]
        if jitter > 0:
            image = tf.image.stateless_random_brightness(image, jitter, seeds[3])
            image = tf.image.stateless_random_contrast(image, 1 - jitter, 1 + jitter, seeds[4])
            image = tf.image.stateless_random_saturation(image, 1 - jitter, 1 + jitter, seeds[5])
        return tf.clip_by_value(image, 0.0, 1.0), target


class MixingPreprocessor(ClassificationPreprocessor):
    """Adds mixup and/or cutmix on whole batches; targets become class
    probabilities. With both on, each batch uses one of them at random."""

    augments_batches = True

    def __init__(self, size: int, augmentation: Mapping[str, Any], num_classes: int):
        super().__init__(size, augmentation)
        self.num_classes = num_classes

    def augment_batch(self, images: tf.Tensor, targets: tf.Tensor,
                      seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(seed, 4)
        targets = tf.one_hot(tf.cast(targets, tf.int32), self.num_classes)
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(images)[0]), seeds[0])
        mixup, cutmix = self.augmentation["mixup_alpha"], self.augmentation["cutmix_alpha"]
        if mixup > 0 and cutmix > 0:
            use_cutmix = tf.random.stateless_uniform([], seeds[1]) < 0.5
            return tf.cond(use_cutmix,
                           lambda: _cutmix(images, targets, order, cutmix, seeds[2]),
                           lambda: _mixup(images, targets, order, mixup, seeds[3]))
        if cutmix > 0:
            return _cutmix(images, targets, order, cutmix, seeds[2])
        return _mixup(images, targets, order, mixup, seeds[3])


def _random_crop(image: tf.Tensor, min_area: float, seed: tf.Tensor) -> tf.Tensor:
    """A crop covering `min_area`..1 of the image, aspect ratio 3/4..4/3."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.slice(image, begin, size)


def _beta(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """One draw from Beta(alpha, alpha), from two gamma draws."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    first = tf.random.stateless_gamma([], seeds[0], alpha=alpha)
    second = tf.random.stateless_gamma([], seeds[1], alpha=alpha)
    return first / (first + second)


def _mixup(images: tf.Tensor, targets: tf.Tensor, order: tf.Tensor, alpha: float,
           seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    share = _beta(alpha, seed)
    mixed = share * images + (1 - share) * tf.gather(images, order)
    return mixed, share * targets + (1 - share) * tf.gather(targets, order)


def _cutmix(images: tf.Tensor, targets: tf.Tensor, order: tf.Tensor, alpha: float,
            seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Paste a box of the partner image; targets mix by the pasted area."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    share = _beta(alpha, seeds[0])
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.sqrt(1.0 - share)
    box_h = tf.cast(tf.cast(height, tf.float32) * side, tf.int32)
    box_w = tf.cast(tf.cast(width, tf.float32) * side, tf.int32)
    centre = tf.random.stateless_uniform([2], seeds[1])
    cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    top, bottom = tf.maximum(cy - box_h // 2, 0), tf.minimum(cy + box_h // 2, height)
    left, right = tf.maximum(cx - box_w // 2, 0), tf.minimum(cx + box_w // 2, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    mask = tf.cast(inside, images.dtype)[None, :, :, None]
    mixed = images * (1 - mask) + tf.gather(images, order) * mask
    kept = 1.0 - tf.reduce_mean(mask)
    return mixed, kept * targets + (1 - kept) * tf.gather(targets, order)


def check_augmentation(options: Mapping[str, Any]) -> None:
    """Value checks of `data.augmentation`, before any data is read."""
    if not 0 < options["crop_area"] <= 1:
        raise ftk.ConfigError("data.augmentation.crop_area must be above 0 and at most 1. "
                              f"Received: {options['crop_area']}")
    for key in ("color_jitter", "mixup_alpha", "cutmix_alpha"):
        if options[key] < 0:
            raise ftk.ConfigError(f"data.augmentation.{key} must be 0 or more. "
                                  f"Received: {options[key]}")


def build_image_preprocessor(backbone: Any, config: Mapping[str, Any],
                             num_classes: int) -> ClassificationPreprocessor:
    """The preprocessor for `backbone` under the `data` config section."""
    if backbone.kind != "image":
        raise ftk.FtkError(
            f"Backbone {backbone.name!r} is a {backbone.kind} backbone; image_classification "
            "needs an image backbone (e.g. --backbone efficientnet-lite0 or a TF Hub image "
            "feature-vector handle)."
        )
    data = config["data"]
    options = data["augmentation"]
    size = image_size(backbone, config)
    if not data["augment"]:
        return ClassificationPreprocessor(size, None)
    if options["mixup_alpha"] > 0 or options["cutmix_alpha"] > 0:
        return MixingPreprocessor(size, options, num_classes)
    return ClassificationPreprocessor(size, options)
