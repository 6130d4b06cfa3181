"""The detector on top of the backbone: a light FPN neck and an FCOS head.

FCOS (Tian et al., 2019) predicts, at every feature-map location, class
scores, the distances to the four sides of the object's box, and a
"centerness" that ranks boxes predicted near an object's centre first. It
needs no anchor boxes, so there are no anchor sizes or ratios to tune for a
new dataset, which suits fine-tuning on small custom data sets.

The head's outputs for all levels are packed into one tensor
`[B, L, classes + 5]` (class logits, ltrb distances in strides, centerness
logit), so Keras sees a single output and a single loss.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

import ftk

STRIDES = (8, 16, 32)
# Class logits start at this probability, so the many background locations
# do not swamp the first steps (FCOS and RetinaNet initialise the same way).
PRIOR_PROBABILITY = 0.01


def feature_maps(outputs: Any, image_size: int, where: str) -> list[tf.Tensor]:
    """The backbone's feature maps at strides 8, 16 and 32, finest first."""
    if isinstance(outputs, Mapping):
        named = [outputs.get(f"stride_{stride}") for stride in STRIDES]
        if all(m is not None for m in named):
            return named
        by_stride = {}
        for tensor in outputs.values():
            if tensor.shape.rank == 4 and tensor.shape[1]:
                by_stride[round(image_size / tensor.shape[1])] = tensor
        if all(stride in by_stride for stride in STRIDES):
            return [by_stride[stride] for stride in STRIDES]
    raise ftk.FtkError(
        f"Backbone {where} gives no feature maps at strides 8, 16 and 32, which detection "
        "needs: use an image backbone returning a dict of rank-4 maps, e.g. "
        "--backbone efficientnet-lite0 (stride_8, stride_16, stride_32)."
    )


class FcosHead(keras.layers.Layer):
    """FPN over the stride 8/16/32 maps, then a class tower and a box tower
    shared across levels, each `depth` 3x3 convolutions of `width` channels
    with group normalisation.

    Args:
        num_classes: classes to score.
        image_size: side of the (square) input image.
        width: channels of the neck and towers.
        depth: convolutions per tower.
        backbone_name: for error messages.
    """

    def __init__(self, num_classes: int, image_size: int, width: int = 64, depth: int = 2,
                 backbone_name: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.image_size = image_size
        self.backbone_name = backbone_name
        self.laterals = [keras.layers.Conv2D(width, 1, name=f"lateral_{s}") for s in STRIDES]
        self.smooth = [keras.layers.Conv2D(width, 3, padding="same", name=f"fpn_{s}")
                       for s in STRIDES]
        self.class_tower = _tower(width, depth, "class_tower")
        self.box_tower = _tower(width, depth, "box_tower")
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.class_logits = keras.layers.Conv2D(
            num_classes, 3, padding="same", name="class_logits",
            bias_initializer=keras.initializers.Constant(prior))
        self.box_regression = keras.layers.Conv2D(4, 3, padding="same", name="box_regression")
        self.centerness = keras.layers.Conv2D(1, 3, padding="same", name="centerness")
        # One learnt scale per level, as FCOS: the levels' boxes differ in size.
        self.level_scales = [self.add_weight(name=f"scale_{s}", shape=[], initializer="ones")
                             for s in STRIDES]

    def call(self, outputs: Any, features: Any = None, training: bool | None = None) -> tf.Tensor:
        maps = feature_maps(outputs, self.image_size, repr(self.backbone_name))
        pyramid = self._neck([tf.cast(m, self.compute_dtype) for m in maps])
        levels = []
        for level, feature in enumerate(pyramid):
            classes = self.class_logits(self.class_tower(feature, training=training))
            box_features = self.box_tower(feature, training=training)
            # exp keeps distances positive; the clip keeps an early step from overflowing.
            distances = tf.exp(tf.clip_by_value(
                self.level_scales[level] * self.box_regression(box_features), -8.0, 8.0))
            packed = tf.concat([classes, distances, self.centerness(box_features)], axis=-1)
            levels.append(tf.reshape(packed, [tf.shape(packed)[0], -1, self.num_classes + 5]))
        return tf.cast(tf.concat(levels, axis=1), tf.float32)

    def _neck(self, maps: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Top-down FPN: each level adds the upsampled coarser one."""
        laterals = [layer(m) for layer, m in zip(self.laterals, maps)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            coarser = tf.image.resize(merged[0], tf.shape(lateral)[1:3], method="nearest")
            merged.insert(0, lateral + tf.cast(coarser, lateral.dtype))
        return [layer(m) for layer, m in zip(self.smooth, merged)]


class GroupNorm(keras.layers.GroupNormalization):
    """tf_keras's group normalisation, computed with ops a TFLite file runs
    at any batch size (the parent's broadcast mask fails there)."""

    def call(self, inputs: tf.Tensor, mask: Any = None) -> tf.Tensor:
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        grouped = tf.reshape(tf.cast(inputs, tf.float32), tf.concat(
            [shape[:-1], [self.groups, channels // self.groups]], axis=0))
        mean, variance = tf.nn.moments(grouped, axes=[1, 2, 4], keepdims=True)
        normalised = tf.reshape((grouped - mean) * tf.math.rsqrt(variance + self.epsilon), shape)
        scaled = normalised * tf.cast(self.gamma, tf.float32) + tf.cast(self.beta, tf.float32)
        return tf.cast(scaled, inputs.dtype)


def _tower(width: int, depth: int, name: str) -> keras.Sequential:
    layers = []
    for index in range(depth):
        layers += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                       name=f"{name}_conv_{index}"),
                   GroupNorm(groups=min(32, width // 4), name=f"{name}_norm_{index}"),
                   keras.layers.ReLU()]
    return keras.Sequential(layers, name=name)


def unpack(outputs: tf.Tensor, num_classes: int) -> dict[str, tf.Tensor]:
    """The packed head output as the loss's dict."""
    return {"class_logits": outputs[..., :num_classes],
            "box_regression": outputs[..., num_classes:num_classes + 4],
            "centerness": outputs[..., num_classes + 4]}
