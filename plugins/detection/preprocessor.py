"""Detection inputs: images resized to a square, with their boxes.

Targets travel as one float32 array per image, `[M, 6]`: box corners in
pixels, class id (-1 for padding rows) and an ignore flag (crowd or
difficult boxes). Features are `{"images", "image_size"}`, the original
height and width, which the postprocessor needs to scale boxes back.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

import ftk
from ftk.images import ImagePreprocessor, decode_image, image_size, resize
from ftk.plugins.detection import augment


class DetectionPreprocessor(ImagePreprocessor):
    """Square resize; with augmentation, flip, scale jitter with crop/pad and
    photometric jitter, moving the boxes with the pixels.

    Args:
        size: side of the model's input.
        augmentation: the `data.augmentation` section, or None for none.
    """

    # The backbone takes the pixels; the head and postprocessor also read
    # each image's original size.
    backbone_input = "images"

    def __call__(self, encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        def one(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image = decode_image(data)
            return resize(image, self.size), tf.cast(tf.shape(image)[:2], tf.float32)

        images, sizes = tf.map_fn(one, tf.reshape(encoded, [-1]), fn_output_signature=(
            tf.TensorSpec([self.size, self.size, 3], tf.float32), tf.TensorSpec([2], tf.float32)))
        return {"images": images, "image_size": sizes}

    def from_pixels(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.cast(tf.shape(images)[1:3], tf.float32)
        return {"images": resize(images, self.size),
                "image_size": tf.tile(shape[None], [tf.shape(images)[0], 1])}

    def from_resized(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # An image size of 1 x 1 makes the postprocessor's boxes fractions
        # of the image, as TFLite detectors give them.
        return {"images": images, "image_size": tf.ones([tf.shape(images)[0], 2])}

    def tflite_input(self) -> tuple[str, dict[str, Any]]:
        form, facts = super().tflite_input()
        return form, {**facts, "boxes": "fractions of the image's width and height "
                      "(x_min, y_min, x_max, y_max): multiply by the image's own size"}

    def load_example(self, encoded: Any, target: Any, seed: Any, training: bool) -> tuple[dict, Any]:
        image = decode_image(encoded)
        original = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes, classes = target[:, :4], tf.cast(target[:, 4], tf.int32)
        ignore = target[:, 5] > 0.5
        if training and self.augmentation is not None:
            options = self.augmentation
            seeds = tf.random.experimental.stateless_split(seed, 3)
            if options["flip"] == "horizontal":
                image, boxes = augment.random_flip(image, boxes, seeds[0])
            image, boxes, classes, ignore = augment.random_scale_crop(
                image, boxes, classes, ignore, self.size, seeds[1],
                scale_range=(options["scale_min"], options["scale_max"]))
            if options["photometric"] > 0:
                image = augment.photometric(image, seeds[2], options["photometric"])
        else:
            image, boxes = augment.resize_with_boxes(image, boxes, self.size)
        packed = tf.concat([boxes, tf.cast(classes, tf.float32)[:, None],
                            tf.cast(ignore, tf.float32)[:, None]], axis=-1)
        return {"images": image, "image_size": original}, packed


def build_detection_preprocessor(backbone: Any, config: Mapping[str, Any]) -> DetectionPreprocessor:
    if backbone.kind != "image":
        raise ftk.FtkError(
            f"Backbone {backbone.name!r} is a {backbone.kind} backbone; detection needs an image "
            "backbone with feature maps (e.g. --backbone efficientnet-lite0)."
        )
    data = config["data"]
    return DetectionPreprocessor(image_size(backbone, config),
                                 data["augmentation"] if data["augment"] else None)


def check_augmentation(options: Mapping[str, Any]) -> None:
    """Value checks of `data.augmentation`, before any data is read."""
    if not 0 < options["scale_min"] <= options["scale_max"]:
        raise ftk.ConfigError(
            "data.augmentation.scale_min must be above 0 and at most scale_max. Received: "
            f"scale_min={options['scale_min']}, scale_max={options['scale_max']}")
    if not 0 <= options["photometric"] <= 1:
        raise ftk.ConfigError("data.augmentation.photometric must be between 0 and 1. "
                              f"Received: {options['photometric']}")
