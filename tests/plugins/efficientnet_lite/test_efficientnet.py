"""EfficientNet-Lite: converting a checkpoint, and the real preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftk.errors import FtkError
from ftk.plugins.efficientnet_lite.model import EfficientNetLiteConfig, Stage
from torch_checkpoints import write_legacy

# --- Conversion of a tiny random EfficientNet-Lite -------------------------

TINY = EfficientNetLiteConfig(
    stages=(Stage(1, 3, 1, 8, 1), Stage(2, 3, 2, 8, 2), Stage(2, 5, 2, 16, 1),
            Stage(2, 3, 2, 16, 1), Stage(3, 5, 2, 24, 1)),
    stem_filters=8, head_filters=32)
# Block index -> (input, output, expand, kernel, stride), unrolled by hand.
TINY_BLOCKS = [(8, 8, 1, 3, 1), (8, 8, 2, 3, 2), (8, 8, 2, 3, 1),
               (8, 16, 2, 5, 2), (16, 16, 2, 3, 2), (16, 24, 3, 5, 2)]


def _random_lite_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """TINY's weights under efficientnet_pytorch's names and layouts."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def conv(name: str, shape: tuple[int, ...]) -> None:
        fan_in = int(np.prod(shape[1:]))
        state[f"{name}.weight"] = (rng.standard_normal(shape)
                                   * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bn(name: str, channels: int) -> None:
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        state[f"{name}.bias"] = rng.uniform(-0.2, 0.2, channels).astype(np.float32)
        state[f"{name}.running_mean"] = rng.uniform(-0.5, 0.5, channels).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, channels).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(100, dtype=np.int64)

    conv("_conv_stem", (8, 3, 3, 3))
    bn("_bn0", 8)
    for index, (fan_in, fan_out, expand, kernel, _) in enumerate(TINY_BLOCKS):
        block, middle = f"_blocks.{index}", fan_in * expand
        if expand != 1:
            conv(f"{block}._expand_conv", (middle, fan_in, 1, 1))
            bn(f"{block}._bn0", middle)
        conv(f"{block}._depthwise_conv", (middle, 1, kernel, kernel))
        bn(f"{block}._bn1", middle)
        conv(f"{block}._project_conv", (fan_out, middle, 1, 1))
        bn(f"{block}._bn2", fan_out)
    conv("_conv_head", (32, 24, 1, 1))
    bn("_bn1", 32)
    state["_fc.weight"] = (rng.standard_normal((1000, 32)) * 0.1).astype(np.float32)
    state["_fc.bias"] = (rng.standard_normal(1000) * 0.1).astype(np.float32)
    return state


def _reference_forward(state: dict[str, np.ndarray],
                       images: np.ndarray) -> dict[str, np.ndarray]:
    """The same network written directly on the PyTorch-layout weights."""
    import tensorflow as tf

    def same_pad(x, kernel: int, stride: int):
        # TF/TFLite "same": total padding by output size, extra at the end.
        padding = []
        for size in x.shape[1:3]:
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            padding.append([total // 2, total - total // 2])
        return tf.pad(x, [[0, 0], *padding, [0, 0]])

    def conv(x, name: str, stride: int = 1, depthwise: bool = False):
        weight = state[f"{name}.weight"]
        x = same_pad(x, weight.shape[-1], stride)
        if depthwise:
            return tf.nn.depthwise_conv2d(
                x, weight.transpose(2, 3, 0, 1), [1, stride, stride, 1], "VALID")
        return tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), stride, "VALID")

    def bn(x, name: str):
        scale = state[f"{name}.weight"] / np.sqrt(state[f"{name}.running_var"] + 1e-3)
        return (x - state[f"{name}.running_mean"]) * scale + state[f"{name}.bias"]

    x = (images * 255.0 - 127.0) / 128.0
    x = tf.nn.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    outputs, stride_so_far = {}, 2
    for index, (fan_in, fan_out, expand, _, stride) in enumerate(TINY_BLOCKS):
        block, inputs = f"_blocks.{index}", x
        if expand != 1:
            x = tf.nn.relu6(bn(conv(x, f"{block}._expand_conv"), f"{block}._bn0"))
        x = conv(x, f"{block}._depthwise_conv", stride, depthwise=True)
        x = tf.nn.relu6(bn(x, f"{block}._bn1"))
        x = bn(conv(x, f"{block}._project_conv"), f"{block}._bn2")
        if stride == 1 and fan_in == fan_out:
            x = x + inputs
        stride_so_far *= stride
        outputs[f"stride_{stride_so_far}"] = x
    x = tf.nn.relu6(bn(conv(x, "_conv_head"), "_bn1"))
    pooled = tf.reduce_mean(x, axis=[1, 2])
    outputs["default"] = pooled
    outputs["logits"] = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    return {k: np.asarray(v) for k, v in outputs.items()
            if k in ("stride_8", "stride_16", "stride_32", "default", "logits")}


@pytest.fixture(scope="module")
def tiny_lite(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    from ftk.plugins.efficientnet_lite.convert import convert_efficientnet_lite

    folder = tmp_path_factory.mktemp("tiny_lite")
    state = _random_lite_state_dict()
    checkpoint = write_legacy(folder / "tiny.pth", state)
    return convert_efficientnet_lite(checkpoint, folder / "out", config=TINY), state


@pytest.fixture(scope="module")
def tiny_loaded(tiny_lite) -> Any:
    """The tiny conversion loaded once, for tests that only run inference."""
    import tensorflow_hub as hub

    return hub.load(str(tiny_lite[0] / "encoder"))


def test_converted_model_matches_a_reference_forward_pass(tiny_lite, tiny_loaded):
    import tensorflow as tf

    _, state = tiny_lite
    model = tiny_loaded
    rng = np.random.default_rng(1)
    widths = {"stride_8": 16, "stride_16": 16, "stride_32": 24,
              "default": 32, "logits": 1000}
    # Odd sizes too: they are where "same" padding is asymmetric.
    for height, width in [(64, 64), (96, 128), (45, 67)]:
        images = rng.uniform(0, 1, (2, height, width, 3)).astype(np.float32)
        outputs = model(tf.constant(images))
        assert set(outputs) == set(widths)
        for name, size in widths.items():
            assert outputs[name].dtype == tf.float32
            if name.startswith("stride_"):
                step = int(name.split("_")[1])
                shape = [2, -(-height // step), -(-width // step), size]
            else:
                shape = [2, size]
            assert outputs[name].shape == shape, (name, height, width)
        expected = _reference_forward(state, images)
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[name].numpy(), value,
                                       atol=1e-4, rtol=1e-4, err_msg=name)
    served = model.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["logits"].numpy(),
                               outputs["logits"].numpy(), atol=1e-6)
    assert set(served) == set(widths)


def test_conversion_writes_manifest_labels_and_image_signature(tiny_lite, tiny_loaded):
    from ftk.hub.resolve import infer_kind

    folder, _ = tiny_lite
    manifest = json.loads((folder / "backbone.json").read_text())
    assert manifest["kind"] == "image" and manifest["image_size"] == 224
    assert manifest["feature_strides"] == [8, 16, 32]
    assert manifest["feature_channels"] == [16, 16, 24]
    labels = (folder / manifest["labels"]).read_text().splitlines()
    assert len(labels) == 1000
    assert (labels[0], labels[1], labels[985]) == ("tench", "goldfish", "daisy")
    model = tiny_loaded
    assert model.labels_file.asset_path.numpy().decode().endswith("imagenet_labels.txt")
    assert infer_kind(model, str(folder)) == "image"


def test_keras_layer_trains_with_block_numbered_variables(tiny_lite):
    import tensorflow as tf
    import tensorflow_hub as hub

    from ftk.training.freezing import BLOCK_PATTERN, is_batchnorm, variable_name

    folder, _ = tiny_lite
    layer = hub.KerasLayer(str(folder / "encoder"), trainable=True)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[0, 1])
    layer(images, training=False)  # builds the layer
    names = [variable_name(v) for v in layer.variables]
    assert "stem/conv/kernel" in names and "logits/bias" in names
    assert "block_3/depthwise_conv/depthwise_kernel" in names
    blocks = {int(m.group(1)) for n in names if (m := BLOCK_PATTERN.search(n))}
    assert blocks == set(range(len(TINY_BLOCKS)))
    gammas = [n for n in names if n.endswith("/gamma")]
    assert gammas and all(is_batchnorm(v) for v in layer.variables
                          if variable_name(v) in gammas)
    assert not any(variable_name(v).endswith("moving_mean")
                   for v in layer.trainable_variables)

    moving = {variable_name(v): v for v in layer.variables}["block_4/depthwise_bn/moving_mean"]
    before = moving.numpy().copy()
    frozen = layer(images, training=False)["default"]
    np.testing.assert_array_equal(moving.numpy(), before)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(images, training=True)["default"] ** 2)
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None for g in gradients)
    assert not np.allclose(moving.numpy(), before)
    assert frozen.shape == [2, 32]


def test_a_mismatched_checkpoint_fails_and_leaves_nothing(tmp_path):
    from ftk.plugins.efficientnet_lite.convert import convert_efficientnet_lite

    state = _random_lite_state_dict()
    del state["_blocks.2._bn1.running_var"]
    checkpoint = write_legacy(tmp_path / "broken.pth", state)
    with pytest.raises(FtkError, match=r"_blocks\.2\._bn1\.running_var"):
        convert_efficientnet_lite(checkpoint, tmp_path / "out", config=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth"]

    state = _random_lite_state_dict()
    state["_blocks.0._se_reduce.weight"] = np.zeros((2, 8, 1, 1), np.float32)
    checkpoint = write_legacy(tmp_path / "broken.pth", state)
    with pytest.raises(FtkError, match="_se_reduce"):
        convert_efficientnet_lite(checkpoint, tmp_path / "out", config=TINY)


def test_conversion_never_replaces_a_foreign_folder(tmp_path):
    from ftk.plugins.efficientnet_lite.convert import convert_efficientnet_lite

    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    checkpoint = write_legacy(tmp_path / "tiny.pth", _random_lite_state_dict())
    with pytest.raises(FtkError, match="not an earlier output"):
        convert_efficientnet_lite(checkpoint, target, config=TINY)
    assert (target / "notes.txt").read_text() == "keep me"


# --- The real preset -------------------------------------------------------

# Photos of a palace on a lake; which of these buildings the model sees varies
# with the crop, all are right.
BUILDINGS = {"palace", "monastery", "bell cote", "castle", "church", "mosque",
             "dome", "stupa", "boathouse", "tile roof"}


@pytest.fixture(scope="module")
def lite0(lite0_home) -> Path:
    return lite0_home / "backbones" / "efficientnet-lite0"


def _sample_photos() -> dict[str, np.ndarray]:
    """scikit-learn's two sample photos, centre-cropped and resized to 224."""
    import tensorflow as tf
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    batch = {}
    for filename, image in zip(photos.filenames, photos.images):
        height, width, _ = image.shape
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[top:top + side, left:left + side].astype(np.float32) / 255.0
        batch[Path(filename).name] = tf.image.resize(
            square[None], [224, 224], antialias=True)[0].numpy()
    return batch


@pytest.mark.slow
def test_real_lite0_recognises_sample_photos(lite0):
    import tensorflow as tf
    import tensorflow_hub as hub

    assert (lite0 / "encoder" / "saved_model.pb").exists()
    manifest = json.loads((lite0 / "backbone.json").read_text())
    assert manifest["kind"] == "image" and manifest["image_size"] == 224
    labels = (lite0 / manifest["labels"]).read_text().splitlines()
    photos = _sample_photos()
    outputs = hub.KerasLayer(str(lite0 / "encoder"))(
        tf.constant(np.stack(list(photos.values()))))
    assert outputs["default"].shape == [2, 1280]
    assert outputs["stride_32"].shape == [2, 7, 7, 320]
    top5 = {name: [labels[i] for i in np.argsort(-row)[:5]]
            for name, row in zip(photos, outputs["logits"].numpy())}
    assert "daisy" in top5["flower.jpg"], top5
    assert BUILDINGS & set(top5["china.jpg"]), top5


def test_the_converter_claims_efficientnet_state_dicts_by_their_layout(tmp_path):
    from torch_checkpoints import write_zip

    from ftk.plugins.efficientnet_lite import claims

    state = _random_lite_state_dict()
    assert claims(write_legacy(tmp_path / "legacy.pth", state))
    assert claims(write_zip(tmp_path / "zipped.pt", state))
    other = {"conv1.weight": np.zeros((2, 2), np.float32)}
    assert not claims(write_legacy(tmp_path / "resnet.pth", other))
    assert not claims(tmp_path)
