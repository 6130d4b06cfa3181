"""Converts EfficientNet-Lite PyTorch weights to a TF Hub image SavedModel.

Input: a `state_dict` in the layout of the `efficientnet_pytorch` package
(`_conv_stem`, `_blocks.<i>._depthwise_conv`, `_conv_head`, `_fc`, ...), as
its EfficientNet-Lite fork publishes it. Output::

    output_dir/
        encoder/        SavedModel, TF Hub image feature-vector convention
        backbone.json   what was converted, for tools that pick up backbones

The encoder's `__call__(images, training=False)` takes float32
`[batch, height, width, 3]` images in [0, 1] and returns a dict with
`default` (pooled features), `stride_8`, `stride_16`, `stride_32` (feature
maps for detection necks) and `logits` (ImageNet classes, named in the
`imagenet_labels.txt` asset).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from ftk.errors import FtkError
from ftk.plugins.efficientnet_lite.model import (
    FEATURE_STRIDES, LITE0, EfficientNetLiteConfig, build_efficientnet_lite0)
from ftk.plugins.efficientnet_lite.torch_pickle import read_torch_state_dict
from ftk.atomic import building_dir

LABELS_FILE = Path(__file__).with_name("imagenet_labels.txt")
IMAGE_SIZE = 224
# Marks a finished conversion; only such a folder is ever replaced.
_MANIFEST = "backbone.json"
# PyTorch BatchNorm parameter names, and ours.
_BN_PARTS = (("weight", "gamma"), ("bias", "beta"),
             ("running_mean", "moving_mean"), ("running_var", "moving_variance"))


def convert_efficientnet_lite(checkpoint: str | Path, output_dir: str | Path,
                              *, config: EfficientNetLiteConfig = LITE0) -> Path:
    """Converts an EfficientNet-Lite `.pth` state dict into a Hub SavedModel.

    The result is built in a temporary folder next to `output_dir` and moved
    into place only when complete, so a failed run never leaves a partial
    `output_dir`, and an earlier conversion there survives until the new one
    is written.

    Args:
        checkpoint: A PyTorch `state_dict` file (`efficientnet_pytorch`
            layout). It is read without PyTorch and without running code.
        output_dir: Folder to create (or to replace, if it holds an earlier
            conversion).
        config: The architecture the checkpoint holds; EfficientNet-Lite0 by
            default. Strides are not stored in checkpoints, so they come from
            here.

    Returns:
        `output_dir` as a `Path`.

    Raises:
        FtkError: The checkpoint is unreadable, misses a tensor, has one too
            many or one of the wrong shape, or `output_dir` is something else
            than an earlier conversion.

    Example:

    ```python
    convert_efficientnet_lite("efficientnet-lite0.pth", "lite0")
    model = hub.KerasLayer("lite0/encoder", trainable=True)
    model(images)["default"].shape  # [batch, 1280]
    ```
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    weights = _load_weights(checkpoint, config)
    with building_dir(output_dir, _MANIFEST) as staging:
        _save_encoder(config, weights, staging / "encoder")
        features = config.feature_blocks()
        manifest = {
            "kind": "image",
            "architecture": "efficientnet-lite",
            "image_size": IMAGE_SIZE,
            "input_range": [0.0, 1.0],
            "output_dim": config.head_filters,
            "feature_strides": list(FEATURE_STRIDES),
            "feature_channels": [features[s].output_filters
                                 for s in FEATURE_STRIDES],
            "num_classes": config.num_classes,
            "labels": f"encoder/assets/{LABELS_FILE.name}",
            "source": str(checkpoint),
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n",
                                         encoding="utf-8")
    return output_dir


def _weight_plan(config: EfficientNetLiteConfig
                 ) -> list[tuple[str, str, tuple[int, ...]]]:
    """Lists (checkpoint tensor, model variable, checkpoint shape) triples.

    Shapes are PyTorch's: convolutions [out, in, k, k], depthwise ones
    [channels, 1, k, k], the classifier [classes, features].
    """
    plan = []

    def conv(torch_name: str, ours: str, fan_out: int, fan_in: int,
             kernel_size: int) -> None:
        plan.append((f"{torch_name}.weight", f"{ours}/kernel",
                     (fan_out, fan_in, kernel_size, kernel_size)))

    def bn(torch_name: str, ours: str, channels: int) -> None:
        for theirs, mine in _BN_PARTS:
            plan.append((f"{torch_name}.{theirs}", f"{ours}/{mine}", (channels,)))

    conv("_conv_stem", "stem/conv", config.stem_filters, 3, 3)
    bn("_bn0", "stem/bn", config.stem_filters)
    for block in config.blocks():
        theirs, ours = f"_blocks.{block.index}", f"block_{block.index}"
        middle = block.expanded_filters
        if block.expand_ratio != 1:
            conv(f"{theirs}._expand_conv", f"{ours}/expand_conv", middle,
                 block.input_filters, 1)
            bn(f"{theirs}._bn0", f"{ours}/expand_bn", middle)
        plan.append((f"{theirs}._depthwise_conv.weight",
                     f"{ours}/depthwise_conv/depthwise_kernel",
                     (middle, 1, block.kernel_size, block.kernel_size)))
        bn(f"{theirs}._bn1", f"{ours}/depthwise_bn", middle)
        conv(f"{theirs}._project_conv", f"{ours}/project_conv",
             block.output_filters, middle, 1)
        bn(f"{theirs}._bn2", f"{ours}/project_bn", block.output_filters)
    last = config.blocks()[-1].output_filters
    conv("_conv_head", "top/conv", config.head_filters, last, 1)
    bn("_bn1", "top/bn", config.head_filters)
    plan.append(("_fc.weight", "logits/kernel",
                 (config.num_classes, config.head_filters)))
    plan.append(("_fc.bias", "logits/bias", (config.num_classes,)))
    return plan


def _to_tf_layout(value: np.ndarray, var_name: str) -> np.ndarray:
    if var_name.endswith("depthwise_kernel"):
        return value.transpose(2, 3, 0, 1)  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
    if value.ndim == 2:
        return value.T  # Linear [out, in] -> Dense [in, out]
    return value


def _load_weights(path: Path, config: EfficientNetLiteConfig
                  ) -> dict[str, np.ndarray]:
    """Reads and checks every needed tensor; returns them by variable name."""
    tensors = read_torch_state_dict(path)
    weights, used = {}, set()
    for torch_name, var_name, shape in _weight_plan(config):
        if torch_name not in tensors:
            raise FtkError(f"{path}: tensor '{torch_name}' is missing (expected "
                           f"shape {list(shape)}); is this an EfficientNet-Lite "
                           "checkpoint of the configured size?")
        value = tensors[torch_name]
        if tuple(value.shape) != shape:
            raise FtkError(f"{path}: tensor '{torch_name}' has shape "
                           f"{list(value.shape)}, expected {list(shape)}; the "
                           "checkpoint is another EfficientNet variant.")
        weights[var_name] = _to_tf_layout(value.astype(np.float32), var_name)
        used.add(torch_name)
    # Batch counters only matter to PyTorch's cumulative-average BatchNorm.
    unused = sorted(name for name in set(tensors) - used
                    if not name.endswith(".num_batches_tracked"))
    if unused:
        raise FtkError(f"{path}: {len(unused)} tensor(s) this architecture has "
                       f"no place for, e.g. {', '.join(unused[:3])}; the "
                       "checkpoint is another EfficientNet variant (one with "
                       "squeeze-excite, or more blocks).")
    return weights


def _save_encoder(config: EfficientNetLiteConfig,
                  weights: dict[str, np.ndarray], path: Path) -> None:
    # Fixes the (overwritten) initial values, so a conversion is repeatable.
    tf.random.set_seed(0)
    model = build_efficientnet_lite0(config)
    variables = {v.name.split(":")[0]: v for v in model.weights}
    if set(variables) != set(weights):
        # Means the layer code and _weight_plan disagree: a bug, not user input.
        raise RuntimeError("model variables do not match the weight plan: "
                           f"{sorted(set(variables) ^ set(weights))}")
    for name, value in weights.items():
        variables[name].assign(value)
    model.labels_file = tf.saved_model.Asset(str(LABELS_FILE))

    # Keras' automatic serving signature names outputs after layers; this
    # one keeps the documented keys.
    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve(images):
        return model(images, training=False)

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
