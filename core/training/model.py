"""The fine-tuning model: a Hub backbone, a task head, and a training step
that updates the head and only the selected backbone variables."""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras


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
                 freeze_batchnorm: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.inference_backbone = freeze_batchnorm and any(
            "moving_mean" in weight.name for weight in backbone.weights)
        # Every variable the backbone could train, whatever the current phase.
        self.backbone_variables: list[tf.Variable] = list(backbone.trainable_weights)
        self.backbone.trainable = False  # until a training phase selects variables
        self.head = head
        self.backbone_train_variables: list[tf.Variable] = []
        self.backbone_optimizer: keras.optimizers.Optimizer | None = None

    def call(self, features: Any, training: bool | None = None) -> Any:
        # Image tasks may pass more than pixels (e.g. original image sizes);
        # the backbone then takes `features["images"]`, the head everything.
        inputs = features["images"] if isinstance(features, Mapping) and "images" in features \
            else features
        outputs = self.backbone(inputs, training=False if self.inference_backbone else training)
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
        with tf.GradientTape() as tape:
            predictions = self(features, training=True)
            loss = self.compute_loss(features, targets, predictions, sample_weight)
        gradients = tape.gradient(loss, head_variables + self.backbone_train_variables)
        split = len(head_variables)
        self.optimizer.apply_gradients(zip(gradients[:split], head_variables))
        if self.backbone_train_variables:
            self.backbone_optimizer.apply_gradients(
                zip(gradients[split:], self.backbone_train_variables))
        return self.compute_metrics(features, targets, predictions, sample_weight)
