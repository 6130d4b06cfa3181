"""The base class of task preprocessors and the capabilities they declare.

A preprocessor turns a batch of raw inputs (a 1-D `tf.Tensor` of strings: texts
or encoded files) into the backbone's input features. It runs inside tf.data
during training and inside the exported model, so it uses TensorFlow ops only.
What else it can do, it declares here; the engine reads these declarations
and never guesses.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar


class Preprocessor:
    """Raw inputs to backbone features.

    Class attributes (capabilities):
        per_example: inputs are loaded one by one before batching, with
            `load_example` (image files of different sizes are read, decoded
            and resized there); otherwise `__call__` works on whole batches.
        augments_batches: `augment_batch` transforms each training batch
            (mixup, cutmix).
        backbone_input: when features are a dict carrying more than the
            backbone takes (detection adds each image's original size), the
            key of what the backbone takes; the head and the postprocessor get
            the whole dict. None: the backbone takes all features.

    Instance attribute:
        augments: training inputs differ from epoch to epoch (train-time
            augmentation), so a frozen backbone's outputs cannot be cached.
    """

    per_example: ClassVar[bool] = False
    augments_batches: ClassVar[bool] = False
    backbone_input: ClassVar[str | None] = None
    augments: bool = False

    def __call__(self, inputs: Any) -> Any:
        """Features for a batch of raw inputs (what the export's signatures take)."""
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    def load_example(self, raw: Any, target: Any, seed: Any, training: bool) -> tuple[Any, Any]:
        """`(features, target)` of one example (used when `per_example`).

        `raw` is one raw input: a text, or a file's bytes when the task has
        `file_inputs` (the engine reads the file).

        `seed` is a `[2]` int64 tensor for stateless random ops, new for every
        example and epoch and derived from `train.seed`.
        """
        raise NotImplementedError(f"{type(self).__name__} sets per_example but does not "
                                  "define load_example")

    def augment_batch(self, features: Any, targets: Any, seed: Any) -> tuple[Any, Any]:
        """`(features, targets)` of a transformed training batch (used when
        `augments_batches`)."""
        raise NotImplementedError(f"{type(self).__name__} sets augments_batches but does "
                                  "not define augment_batch")

    def extra_inputs(self) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
        """More input forms for the export, by name: `(tf.TensorSpec, fn)`
        where `fn` maps such a batch to features. Each adds the signatures
        `serving_NAME` and `raw_outputs_NAME` (image tasks add `pixels`)."""
        return {}

    def tflite_input(self) -> tuple[str, dict[str, Any]]:
        """The input form a TFLite file of the export takes, and what its
        users need to know to make such inputs (written to the file's
        sidecar JSON).

        The form is `""` (the raw inputs of `serving_default`) or a name of
        `extra_inputs`. Its preprocessing must convert to TFLite builtin ops
        (or custom ops with a registrar); image tasks take `pixels`, since
        TFLite cannot decode files, and BERT-style text takes a tokenizer
        TFLite can run.
        """
        return "", {}

    def backbone_features(self, features: Any) -> Any:
        """The part of `features` the backbone takes."""
        if self.backbone_input is None:
            return features
        return features[self.backbone_input]

    def head_features(self, features: Any) -> Any:
        """`features` without the backbone's part: what a head trained on
        cached backbone outputs may still read."""
        if self.backbone_input is None:
            return features
        return {k: v for k, v in features.items() if k != self.backbone_input}


class StringPassthrough(Preprocessor):
    """For backbones that take raw strings (tf.hub text embeddings)."""

    def __call__(self, inputs: Any) -> Any:
        import tensorflow as tf

        return tf.reshape(inputs, [-1])
