"""The image input pipeline, augmentation, focal loss and BatchNorm freezing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftk.data import make_dataset

AUGMENTATION = {"crop_area": 0.5, "flip": "horizontal", "color_jitter": 0.2,
                "mixup_alpha": 0.0, "cutmix_alpha": 0.0}


@pytest.fixture
def images(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(6):
        path = tmp_path / f"image_{index}.png"
        Image.fromarray(rng.integers(0, 256, (30 + index, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _batches(preprocessor, paths, *, training, seed=0):
    dataset = make_dataset(paths, np.arange(len(paths), dtype=np.int32), preprocessor, 3,
                           training=training, seed=seed, read_files=True)
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_evaluation_only_resizes_and_training_augments_repeatably(images):
    from ftk.images import decode_image, resize
    from ftk.plugins.image_classification.preprocessor import ClassificationPreprocessor

    preprocessor = ClassificationPreprocessor(16, AUGMENTATION)
    plain = _batches(preprocessor, images, training=False)
    expected = resize(decode_image(open(images[0], "rb").read()), 16).numpy()
    np.testing.assert_allclose(plain[0][0][0], expected, atol=1e-6)
    first = _batches(preprocessor, images, training=True, seed=3)
    again = _batches(preprocessor, images, training=True, seed=3)
    other = _batches(preprocessor, images, training=True, seed=4)
    assert first[0][0].shape == (3, 16, 16, 3)
    assert 0.0 <= first[0][0].min() and first[0][0].max() <= 1.0
    np.testing.assert_array_equal(first[0][0], again[0][0])  # same seed, same pixels
    assert not np.allclose(first[0][0], plain[0][0])
    assert not np.allclose(first[0][0], other[0][0])


def test_augment_false_turns_every_transform_off(images):
    from ftk.plugins.image_classification.preprocessor import ClassificationPreprocessor

    preprocessor = ClassificationPreprocessor(16, None)
    trained = _batches(preprocessor, images, training=True)
    evaluated = _batches(preprocessor, images, training=False)
    np.testing.assert_array_equal(trained[0][0], evaluated[0][0])


def _epochs(dataset, count):
    return [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(count)]


def test_decoded_images_are_kept_in_memory_when_they_fit(images):
    from ftk.plugins.image_classification.preprocessor import ClassificationPreprocessor

    preprocessor = ClassificationPreprocessor(16, None)
    targets = np.arange(len(images), dtype=np.int32)
    cached = make_dataset(images, targets, preprocessor, 4, training=True, shuffle=True,
                          seed=5, cache_mb=1, read_files=True)
    streamed = make_dataset(images, targets, preprocessor, 4, training=True, shuffle=True,
                            seed=5, read_files=True)
    first = _epochs(cached, 1)
    expected = _epochs(streamed, 3)
    assert _has_cache(cached) and not _has_cache(streamed)
    for path in images:  # the files are gone; only the in-memory copies remain
        Path(path).unlink()
    later = _epochs(cached, 2)
    # Shuffled after the cache, with the same seed: the uncached pipeline's batches.
    for got, want in zip(first + later, expected):
        for (x, y), (wx, wy) in zip(got, want):
            np.testing.assert_array_equal(y, wy)
            np.testing.assert_allclose(x, wx, atol=1e-6)
    with pytest.raises(Exception, match="No such file"):
        _epochs(streamed, 1)


def test_augmented_or_oversized_inputs_are_streamed(images):
    from ftk.plugins.image_classification.preprocessor import ClassificationPreprocessor

    targets = np.arange(len(images), dtype=np.int32)
    for preprocessor, cache_mb in ((ClassificationPreprocessor(16, AUGMENTATION), 100),
                                   (ClassificationPreprocessor(512, None), 1)):
        dataset = make_dataset(images, targets, preprocessor, 3, training=True, cache_mb=cache_mb,
                               read_files=True)
        assert not _has_cache(dataset)


def _has_cache(dataset) -> bool:
    """Whether a tf.data pipeline holds a cache stage."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor).numpy())
    return any(node.op.startswith("CacheDataset") for node in graph.node)


def test_horizontal_flip_mirrors_the_image():
    import tensorflow as tf

    from ftk.plugins.image_classification.preprocessor import ClassificationPreprocessor

    ramp = tf.tile(tf.linspace(0.0, 1.0, 8)[None, :, None], [8, 1, 3])
    options = {**AUGMENTATION, "crop_area": 1.0, "color_jitter": 0.0}
    preprocessor = ClassificationPreprocessor(8, options)
    outcomes = set()
    for seed in range(12):
        # crop_area 1.0 still lets the crop change aspect ratio; compare rows' order only.
        image, _ = preprocessor.augment(ramp, 0, tf.constant([seed, 0], tf.int64))
        row = image.numpy()[0, :, 0]
        outcomes.add("left-to-right" if row[0] < row[-1] else "right-to-left")
    assert outcomes == {"left-to-right", "right-to-left"}


def test_mixup_and_cutmix_mix_targets_by_what_they_mix():
    import tensorflow as tf

    from ftk.plugins.image_classification.preprocessor import MixingPreprocessor

    images = tf.concat([tf.zeros([1, 10, 10, 3]), tf.ones([1, 10, 10, 3])], 0)
    targets = tf.constant([0, 1])
    for key in ("mixup_alpha", "cutmix_alpha"):
        preprocessor = MixingPreprocessor(10, {**AUGMENTATION, key: 1.0}, num_classes=3)
        for seed in range(5):
            mixed, soft = preprocessor.augment_batch(images, targets, tf.constant([seed, 1], tf.int64))
            soft = soft.numpy()
            np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
            assert soft[:, 2].max() == 0.0
            # Image 1 is all ones, image 0 all zeros: each mixed image's mean is
            # the share of image 1 in it, which is its target for class 1.
            np.testing.assert_allclose(mixed.numpy().mean(axis=(1, 2, 3)), soft[:, 1], atol=1e-5)


def test_mixup_runs_through_training(tmp_path):
    from ftk import testing
    from helpers import write_colour_folder

    data = write_colour_folder(tmp_path / "data", 6, seed=0, classes=("red", "blue"))
    backbone = testing.tiny_image_backbone(tmp_path / "tiny")
    result = testing.smoke_run("image_classification", data=data, backbone=backbone,
                               output_dir=tmp_path / "run", backbone__image_size=32,
                               data__augmentation__mixup_alpha=0.4,
                               data__augmentation__cutmix_alpha=1.0)
    assert np.isfinite(result.history["loss"][0])
    assert 0.0 <= result.history["accuracy"][0] <= 1.0


def test_focal_loss_matches_hand_computation():
    import tensorflow as tf

    from ftk.classification.losses import WeightedCrossEntropy

    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    p_true = probabilities[[0, 1], labels]
    expected = np.mean(-((1 - p_true) ** 2) * np.log(p_true))
    loss = WeightedCrossEntropy(3, focal_gamma=2.0)(tf.constant(labels), tf.constant(logits))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Soft targets (mixup) give the same as the matching hard ones.
    soft = WeightedCrossEntropy(3, focal_gamma=2.0)(tf.one_hot(labels, 3), tf.constant(logits))
    assert float(soft) == pytest.approx(expected, rel=1e-5)


def test_top5_metric_counts_true_class_among_five_best():
    from ftk.classification import (ClassSpace, build_classification_metrics,
                                    evaluate_classification)

    space = ClassSpace(tuple("abcdefg"))
    logits = np.tile(np.arange(7, dtype=np.float32), (2, 1))  # ranking g, f, e, d, c, b, a
    metrics = evaluate_classification(np.array([2, 1]), logits, space)
    assert metrics["top5_accuracy"] == 0.5  # class c is 5th best, class b 6th
    names = [m.name for m in build_classification_metrics(space)]
    assert names == ["accuracy", "top5_accuracy"]


def _checkpointed_backbone(reader, pattern):
    """Backbone variables in a run's checkpoint, by their variable name
    (the checkpoint spells `block_1_bn/gamma:0` as `block_1_bn.Sgamma:0`)."""
    prefix = "model/backbone/"
    named = {key[len(prefix):].split("/.ATTRIBUTES")[0].replace(".S", "/"): key
             for key in reader.get_variable_to_shape_map() if key.startswith(prefix)}
    return {name: reader.get_tensor(key) for name, key in named.items() if pattern in name}


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_batchnorm_keeps_statistics_and_scales(tmp_path, freeze):
    """A BatchNorm backbone fine-tuned through `ftk.run`: with freezing, its
    statistics and scales stay pretrained while the convolutions train;
    without, the backbone runs in training mode and its statistics move."""
    import tensorflow as tf

    from ftk import testing
    from helpers import write_colour_folder

    data = write_colour_folder(tmp_path / "data", 4, seed=0, classes=("red", "blue"))
    backbone = testing.tiny_image_backbone(tmp_path / "bn")
    result = testing.smoke_run("image_classification", data=data, backbone=backbone,
                               output_dir=tmp_path / "run", backbone__image_size=32,
                               backbone__trainable=True, backbone__freeze_batchnorm=freeze,
                               train__head_epochs=0, train__learning_rate=0.05,
                               train__optimizer="sgd", data__augment=False)
    pretrained = tf.saved_model.load(backbone)
    trained = tf.train.load_checkpoint(str(Path(result.run_dir) / "checkpoints/last/ckpt"))

    def changed(pattern):
        before = {v.name: v.numpy() for v in pretrained.variables if pattern in v.name}
        after = _checkpointed_backbone(trained, pattern)
        assert sorted(before) == sorted(after) and len(after) == 5, (pattern, sorted(after))
        return any(not np.allclose(before[name], after[name], atol=1e-7) for name in after)

    assert changed("conv/kernel")
    assert changed("moving_mean") is not freeze
    assert changed("moving_variance") is not freeze
    assert changed("gamma") is not freeze
