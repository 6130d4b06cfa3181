"""Classification head over an image backbone: dropout and dense logits."""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

import ftk

# Keys under which image backbones return their pooled vector.
VECTOR_KEYS = ("default", "pooled_output", "pooled", "feature_vector")


def image_vector(outputs: Any) -> tf.Tensor:
    """The `[B, D]` feature vector of an image backbone's outputs.

    A tensor is used as it is (a rank-4 map is averaged over space); a dict
    gives its `default` (or pooled) vector, else the average of its coarsest
    feature map.
    """
    if not isinstance(outputs, Mapping):
        return _pool(outputs)
    for key in VECTOR_KEYS:
        if key in outputs:
            return _pool(outputs[key])
    maps = [v for v in outputs.values() if v.shape.rank == 4]
    if maps:
        return _pool(min(maps, key=lambda m: (m.shape[1] or 0) * (m.shape[2] or 0)))
    raise ftk.FtkError(
        f"The image backbone returned {', '.join(sorted(outputs))}; image_classification "
        f"needs a pooled vector ({', '.join(VECTOR_KEYS)}) or a rank-4 feature map."
    )


def _pool(tensor: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tensor, axis=[1, 2]) if tensor.shape.rank == 4 else tensor


class ImageClassificationHead(keras.layers.Layer):
    """Dropout and a dense output layer over the backbone's feature vector."""

    def __init__(self, num_classes: int, dropout: float = 0.2, **kwargs: Any):
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout)
        # float32 logits keep the softmax stable under mixed precision.
        self.classifier = keras.layers.Dense(num_classes, dtype="float32", name="logits")

    def call(self, outputs: Any, features: Any = None, training: bool | None = None) -> tf.Tensor:
        return self.classifier(self.dropout(image_vector(outputs), training=training))
