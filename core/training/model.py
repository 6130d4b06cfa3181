"""The fine-tuning model: a Hub backbone, a task head, and a training step
that updates the head and only the selected backbone variables."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import tensorflow as tf
import tf_keras as keras

# Keys of a batch that carries cached backbone outputs instead of inputs
# (see ftk.training.feature_cache); the model then runs the head alone.
BACKBONE_OUTPUTS = "ftk_backbone_outputs"
HEAD_FEATURES = "ftk_head_features"


@contextlib.contextmanager
def precision_policy(name: str | None) -> Iterator[None]:
    """Build layers under a Keras mixed-precision policy (`mixed_float16` or
    `mixed_bfloat16`), restoring the previous policy after.

    Only the head is built under it: a Hub backbone is a SavedModel traced in
    float32, and task heads keep their output layer in float32.
    """
    if name is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class FineTuneModel(keras.Model):
    """`head(backbone(features), features)` with per-group optimisers.

    The head is trained by the compiled optimiser; the selected backbone
    variables by `backbone_optimizer`, which has its own (usually lower)
    learning rate. A frozen backbone layer (`trainable=False`) runs in
    inference mode, so dropout is off and normalisation statistics are fixed.

    With `freeze_batchnorm`, a backbone holding BatchNorm layers also runs in
    inference mode while it trains (as the Keras transfer-learning guide
    advises): its moving statistics stay those of pretraining instead of
    drifting with a few small fine-tuning batches, which would leave the
    evaluation-mode model worse than the training accuracy suggests.
    """

    def __init__(self, backbone: keras.layers.Layer, head: keras.layers.Layer, *,
                 backbone_features: Callable[[Any], Any] = lambda features: features,
                 freeze_batchnorm: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.backbone = backbone
        # What the backbone takes of a batch's features (the preprocessor declares it).
        self.backbone_features = backbone_features
        self.inference_backbone = freeze_batchnorm and any(
            "moving_mean" in weight.name for weight in backbone.weights)
        # Every variable the backbone could train, whatever the current phase.
        self.backbone_variables: list[tf.Variable] = list(backbone.trainable_weights)
        self.backbone.trainable = False  # until a training phase selects variables
        self.head = head
        self.backbone_train_variables: list[tf.Variable] = []
        self.backbone_optimizer: keras.optimizers.Optimizer | None = None

    def call(self, features: Any, training: bool | None = None) -> Any:
        if isinstance(features, Mapping) and BACKBONE_OUTPUTS in features:
            return self.head(features[BACKBONE_OUTPUTS], features.get(HEAD_FEATURES),
                             training=training)
        outputs = self.backbone(self.backbone_features(features),
                                training=False if self.inference_backbone else training)
        return self.head(outputs, features, training=training)

    def set_backbone_training(self, variables: list[tf.Variable],
                              optimizer: keras.optimizers.Optimizer | None) -> None:
        """Choose which backbone variables train, and with which optimiser."""
        self.backbone.trainable = bool(variables)
        self.backbone_train_variables = list(variables)
        self.backbone_optimizer = optimizer if variables else None

    def train_step(self, data: Any) -> dict[str, Any]:
        features, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        head_variables = self.head.trainable_variables
        scaling = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            predictions = self(features, training=True)
            loss = self.compute_loss(features, targets, predictions, sample_weight)
            if scaling:
                loss = self.optimizer.get_scaled_loss(loss)
        gradients = tape.gradient(loss, head_variables + self.backbone_train_variables)
        if scaling:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
            if self.backbone_train_variables:
                gradients = _poisoned_unless_finite(gradients)
        split = len(head_variables)
        self.optimizer.apply_gradients(zip(gradients[:split], head_variables))
        if self.backbone_train_variables:
            self.backbone_optimizer.apply_gradients(
                zip(gradients[split:], self.backbone_train_variables))
        return self.compute_metrics(features, targets, predictions, sample_weight)


def _poisoned_unless_finite(gradients: list) -> list:
    """All gradients NaN when any is not finite.

    Under float16 loss scaling both optimisers are loss-scale optimisers that
    skip a step with non-finite gradients and lower their scale. An overflow
    may show in the backbone's gradients only; marking every gradient lets both
    skip the same steps, so their scales stay equal and the step is all or none.
    """
    present = [g for g in gradients if g is not None]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(_values(g))) for g in present])

    def poison(values: tf.Tensor) -> tf.Tensor:
        return tf.where(finite, values, tf.fill(tf.shape(values), tf.constant(float("nan"), values.dtype)))

    return [g if g is None else
            tf.IndexedSlices(poison(g.values), g.indices, g.dense_shape)
            if isinstance(g, tf.IndexedSlices) else poison(g) for g in gradients]


def _values(gradient: Any) -> tf.Tensor:
    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


@dataclass
class ModelParts:
    """What a run trains and exports."""

    model: FineTuneModel
    preprocessor: Any
    loss: Any


def build_model(task: Any, backbone: Any, inputs: Any, strategy: Any = None) -> ModelParts:
    """Build the task's preprocessor, head and loss over `backbone` under
    `strategy` (default: the current one), check the settings that depend on
    them, and build the model on a first batch."""
    from ftk.data import make_dataset
    from ftk.errors import FtkError
    from ftk.preprocessor import Preprocessor
    from ftk.training.feature_cache import check_setting
    from ftk.training.trainer import check_monitor

    config = task.config
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        preprocessor = task.build_preprocessor(backbone)
        if not isinstance(preprocessor, Preprocessor):
            raise FtkError(f"Task {task.name!r} built a preprocessor that is not an "
                           f"ftk.Preprocessor: {type(preprocessor).__name__}. Fix the plugin.")
        with precision_policy(config["train"]["mixed_precision"]):
            head = task.build_head(backbone)
        model = FineTuneModel(backbone.keras_layer(trainable=True), head, name="ftk_model",
                              backbone_features=preprocessor.backbone_features,
                              freeze_batchnorm=config["backbone"]["freeze_batchnorm"])
        loss = task.build_loss()
    check_setting(config["train"]["cache_features"], preprocessor)
    if inputs.splits.validation is not None:
        check_monitor(config["train"]["monitor"], task.build_metrics(), True)
    # Build the head before optimisers and checkpoints, from an unshuffled batch:
    # iterating the training dataset would move its shuffling on by an epoch.
    first = make_dataset(*inputs.train, preprocessor, config["train"]["batch_size"],
                         read_files=task.file_inputs)
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype),
                                 next(iter(first))[0])
    with strategy.scope():
        # Traced, not run: the head's variables must be made under the strategy,
        # and a Hub layer called eagerly there fails ("cross-replica context").
        tf.function(model.__call__).get_concrete_function(spec)
    return ModelParts(model, preprocessor, loss)
