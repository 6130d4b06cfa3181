"""EfficientNet-Lite built from `tf_keras` layers that own their weights.

EfficientNet-Lite is EfficientNet made friendly to mobile accelerators: no
squeeze-and-excitation, ReLU6 instead of swish, and a fixed-size stem and
head. Every variable has a predictable name (``stem/conv/kernel``,
``block_<i>/depthwise_bn/gamma``, ``top/bn/moving_mean``,
``logits/kernel``): freezing policies group variables into blocks by the
``block_<i>`` part and find BatchNorm by ``bn``, and the converter assigns
each variable by this name.

The model takes float32 images in [0, 1] of any size and normalises them
itself, as TF Hub image modules do.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras as keras


@dataclasses.dataclass(frozen=True)
class Stage:
    """Blocks of one resolution: the first may downsample, the rest keep it."""

    expand_ratio: int
    kernel_size: int
    stride: int
    filters: int
    repeats: int


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MBConv block, as the stage table unrolls into it."""

    index: int
    input_filters: int
    output_filters: int
    expand_ratio: int
    kernel_size: int
    stride: int

    @property
    def expanded_filters(self) -> int:
        return self.input_filters * self.expand_ratio

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.input_filters == self.output_filters


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Architecture hyper-parameters; the defaults are EfficientNet-Lite0."""

    stages: tuple[Stage, ...] = (
        Stage(1, 3, 1, 16, 1),
        Stage(6, 3, 2, 24, 2),
        Stage(6, 5, 2, 40, 2),
        Stage(6, 3, 2, 80, 3),
        Stage(6, 5, 1, 112, 3),
        Stage(6, 5, 2, 192, 4),
        Stage(6, 3, 1, 320, 1),
    )
    stem_filters: int = 32
    head_filters: int = 1280
    num_classes: int = 1000
    # As in the reference implementation (TF's default is 1e-3 too).
    batchnorm_epsilon: float = 1e-3
    batchnorm_momentum: float = 0.99

    def blocks(self) -> list[BlockSpec]:
        """The stage table unrolled into blocks, numbered from 0."""
        blocks, filters = [], self.stem_filters
        for stage in self.stages:
            for repeat in range(stage.repeats):
                blocks.append(BlockSpec(
                    len(blocks), filters, stage.filters, stage.expand_ratio,
                    stage.kernel_size, stage.stride if repeat == 0 else 1))
                filters = stage.filters
        return blocks

    def feature_blocks(self) -> dict[int, BlockSpec]:
        """The last block at each output stride, keyed by that stride.

        Those are the multi-scale features a detection neck reads; for Lite0
        strides 8, 16 and 32 end in blocks of 40, 112 and 320 channels.
        """
        stride, last = 2, {}  # the stem halves the resolution
        for block in self.blocks():
            stride *= block.stride
            last[stride] = block
        return last


LITE0 = EfficientNetLiteConfig()
# The weights expect pixels scaled as (x*255 - 127) / 128, like TF's
# EfficientNet-Lite; with ImageNet mean/std instead, the stem's activations
# miss its BatchNorm statistics (variance off ~4x) and predictions degrade.
INPUT_MEAN = 127.0 / 255.0
INPUT_SCALE = 128.0 / 255.0
FEATURE_STRIDES = (8, 16, 32)


def _conv_initializer() -> keras.initializers.Initializer:
    # Overwritten by the checkpoint; EfficientNet's own init keeps a freshly
    # built model's activations in range.
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="truncated_normal")


class _ConvBnLayer(keras.layers.Layer):
    """Base with helpers that create and apply named conv and BN weights."""

    def __init__(self, config: EfficientNetLiteConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    def _conv(self, name: str, kernel_size: int, fan_in: int,
              fan_out: int) -> tf.Variable:
        return self.add_weight(name=f"{name}/kernel",
                               shape=(kernel_size, kernel_size, fan_in, fan_out),
                               initializer=_conv_initializer())

    def _depthwise(self, name: str, kernel_size: int,
                   channels: int) -> tf.Variable:
        return self.add_weight(name=f"{name}/depthwise_kernel",
                               shape=(kernel_size, kernel_size, channels, 1),
                               initializer=_conv_initializer())

    def _bn(self, name: str, channels: int) -> tuple[tf.Variable, ...]:
        def weight(part: str, initializer: str, trainable: bool) -> tf.Variable:
            return self.add_weight(name=f"{name}/{part}", shape=(channels,),
                                   initializer=initializer, trainable=trainable)

        return (weight("gamma", "ones", True), weight("beta", "zeros", True),
                weight("moving_mean", "zeros", False),
                weight("moving_variance", "ones", False))

    def _batch_norm(self, x: tf.Tensor, weights: tuple[tf.Variable, ...],
                    training) -> tf.Tensor:
        """Keras BatchNormalization semantics; `training` may be a tensor."""
        gamma, beta, moving_mean, moving_variance = weights
        epsilon = self.config.batchnorm_epsilon

        def with_moving_statistics() -> tf.Tensor:
            return tf.nn.batch_normalization(x, moving_mean, moving_variance,
                                             beta, gamma, epsilon)

        def with_batch_statistics() -> tf.Tensor:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            decay = 1.0 - self.config.batchnorm_momentum
            moving_mean.assign_sub((moving_mean - mean) * decay)
            moving_variance.assign_sub((moving_variance - variance) * decay)
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma,
                                             epsilon)

        if training is None or training is False:
            return with_moving_statistics()
        if training is True:
            return with_batch_statistics()
        return tf.cond(tf.cast(training, tf.bool), with_batch_statistics,
                       with_moving_statistics)


def _conv2d(x: tf.Tensor, kernel: tf.Variable, stride: int = 1) -> tf.Tensor:
    # TF "SAME" padding: for stride 2 it pads more at the bottom and right.
    # The weights were trained so (efficientnet_pytorch's "static same" convs
    # copy it); symmetric padding shifts every downsampled feature map.
    return tf.nn.conv2d(x, kernel, strides=stride, padding="SAME")


def _depthwise_conv2d(x: tf.Tensor, kernel: tf.Variable,
                      stride: int) -> tf.Tensor:
    return tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1],
                                  padding="SAME")


class Stem(_ConvBnLayer):
    """Input normalisation, then a stride-2 3x3 conv, BatchNorm and ReLU6."""

    def build(self, input_shape) -> None:
        self.conv = self._conv("conv", 3, 3, self.config.stem_filters)
        self.bn = self._bn("bn", self.config.stem_filters)
        super().build(input_shape)

    def call(self, images, training=None):
        x = (tf.cast(images, tf.float32) - INPUT_MEAN) / INPUT_SCALE
        x = self._batch_norm(_conv2d(x, self.conv, stride=2), self.bn, training)
        return tf.nn.relu6(x)


class MBConvBlock(_ConvBnLayer):
    """Inverted residual: 1x1 expand, depthwise conv, 1x1 project (linear)."""

    def __init__(self, config: EfficientNetLiteConfig, spec: BlockSpec,
                 **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.spec = spec

    def build(self, input_shape) -> None:
        s = self.spec
        if s.expand_ratio != 1:
            self.expand_conv = self._conv("expand_conv", 1, s.input_filters,
                                          s.expanded_filters)
            self.expand_bn = self._bn("expand_bn", s.expanded_filters)
        self.depthwise_conv = self._depthwise("depthwise_conv", s.kernel_size,
                                              s.expanded_filters)
        self.depthwise_bn = self._bn("depthwise_bn", s.expanded_filters)
        self.project_conv = self._conv("project_conv", 1, s.expanded_filters,
                                       s.output_filters)
        self.project_bn = self._bn("project_bn", s.output_filters)
        super().build(input_shape)

    def call(self, inputs, training=None):
        s, x = self.spec, inputs
        if s.expand_ratio != 1:
            x = _conv2d(x, self.expand_conv)
            x = tf.nn.relu6(self._batch_norm(x, self.expand_bn, training))
        x = _depthwise_conv2d(x, self.depthwise_conv, s.stride)
        x = tf.nn.relu6(self._batch_norm(x, self.depthwise_bn, training))
        x = self._batch_norm(_conv2d(x, self.project_conv), self.project_bn,
                             training)
        # No stochastic depth: it only matters when training from scratch.
        return x + inputs if s.has_residual else x


class Top(_ConvBnLayer):
    """1x1 conv to the head width, BatchNorm, ReLU6, global average pool."""

    def build(self, input_shape) -> None:
        self.conv = self._conv("conv", 1, int(input_shape[-1]),
                               self.config.head_filters)
        self.bn = self._bn("bn", self.config.head_filters)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self._batch_norm(_conv2d(inputs, self.conv), self.bn, training)
        return tf.reduce_mean(tf.nn.relu6(x), axis=[1, 2])


class Logits(keras.layers.Layer):
    """The ImageNet classifier: a dense layer over the pooled features."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(
            name="kernel", shape=(int(input_shape[-1]), self.num_classes),
            initializer=keras.initializers.RandomUniform(-0.01, 0.01))
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,),
                                    initializer="zeros")
        super().build(input_shape)

    def call(self, features):
        return tf.matmul(features, self.kernel) + self.bias


def build_efficientnet_lite0(config: EfficientNetLiteConfig = LITE0
                             ) -> keras.Model:
    """Builds EfficientNet-Lite0 (or a variant) as a functional model.

    Args:
        config: The architecture; a smaller stage table or narrower stem and
            head give quick variants for tests.

    Returns:
        A `tf_keras` Model taking float32 `[batch, height, width, 3]` images
        in [0, 1], any height and width, and returning a dict:
        `default` (`[batch, head_filters]` pooled features), `stride_8`,
        `stride_16`, `stride_32` (the last block's output at each stride)
        and `logits` (`[batch, num_classes]`).

    Example:

    ```python
    model = build_efficientnet_lite0()
    outputs = model(tf.zeros([1, 224, 224, 3]))
    outputs["stride_32"].shape  # [1, 7, 7, 320]
    ```
    """
    if set(FEATURE_STRIDES) - set(config.feature_blocks()):
        raise ValueError("the stage table must reach output strides "
                         f"{FEATURE_STRIDES}. Received: {config.stages}")
    images = keras.Input(shape=(None, None, 3), dtype=tf.float32, name="images")
    x = Stem(config, name="stem")(images)
    features = {block.index: f"stride_{stride}"
                for stride, block in config.feature_blocks().items()
                if stride in FEATURE_STRIDES}
    outputs = {}
    for spec in config.blocks():
        x = MBConvBlock(config, spec, name=f"block_{spec.index}")(x)
        if spec.index in features:
            outputs[features[spec.index]] = x
    outputs["default"] = Top(config, name="top")(x)
    outputs["logits"] = Logits(config.num_classes, name="logits")(
        outputs["default"])
    return keras.Model(inputs=images, outputs=outputs,
                       name="efficientnet_lite")
