"""Box-aware augmentation: boxes must keep covering what they covered.

Each box is painted in its own pure colour on a black image; after a
transform, the pixels of that colour must fill the transformed box to within
a pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ftk.plugins.detection import augment

# Red, green and blue boxes on a 96x128 image, apart from each other; a
# padding row last.
BOXES = np.array([[10, 12, 50, 40], [60, 30, 120, 90], [20, 60, 45, 92], [0, 0, 0, 0]],
                 np.float32)
CLASSES = np.array([0, 1, 2, -1], np.int32)
IGNORE = np.array([False, False, True, False])
SEEDS = [tf.constant([seed, 7], tf.int64) for seed in range(6)]


def _painted(height: int = 96, width: int = 128) -> np.ndarray:
    image = np.zeros([height, width, 3], np.float32)
    for channel, (x0, y0, x1, y1) in enumerate(BOXES[:3].astype(int)):
        image[y0:y1, x0:x1, channel] = 1.0
    return image


def _assert_boxes_cover_paint(image, boxes, classes):
    """Each kept box matches the extent of its colour to within 1 pixel."""
    image, boxes = np.asarray(image), np.asarray(boxes)
    for channel in range(3):
        if classes[channel] < 0:
            continue
        rows, cols = np.nonzero(image[..., channel] > 0.5)
        assert rows.size, f"box {channel} is kept but its colour is gone"
        painted = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        np.testing.assert_allclose(boxes[channel], painted, atol=1.0,
                                   err_msg=f"box {channel}")


def test_resize_with_boxes_scales_each_axis():
    image, boxes = augment.resize_with_boxes(_painted(), BOXES, 64)
    assert image.shape == (64, 64, 3)
    np.testing.assert_allclose(boxes[0], [5, 8, 25, 26.666666], rtol=1e-5)
    _assert_boxes_cover_paint(image, boxes, CLASSES)


def test_random_flip_moves_boxes_with_the_pixels():
    flipped = set()
    for seed in SEEDS:
        image, boxes = augment.random_flip(_painted(), BOXES, seed)
        _assert_boxes_cover_paint(image, boxes, CLASSES)
        flipped.add(bool(boxes[0, 0] != BOXES[0, 0]))
        if flipped == {True, False}:
            np.testing.assert_allclose(boxes[1], [8, 30, 68, 90])
            break
    assert flipped == {True, False}, "six seeds should give both outcomes"


@pytest.mark.parametrize("scale_range", [(0.6, 1.4), (1.6, 2.0)])
def test_random_scale_crop_moves_boxes_with_the_pixels(scale_range):
    sides, dropped = set(), 0
    for seed in SEEDS:
        image, boxes, classes, ignore = augment.random_scale_crop(
            _painted(), BOXES, CLASSES, IGNORE, 64, seed, scale_range, pad_value=0.25)
        assert image.shape == (64, 64, 3) and boxes.shape == (4, 4)
        _assert_boxes_cover_paint(image, boxes, classes.numpy())
        assert classes[3] == -1 and (boxes[3].numpy() == 0).all()
        assert (boxes.numpy() >= 0).all() and (boxes.numpy() <= 64).all()
        assert not ignore[0] and not ignore[1] and bool(ignore[2]) == (classes[2] >= 0)
        sides.add(bool(np.any(image.numpy() == 0.25)))  # padded or cropped
        dropped += int((classes[:3] < 0).numpy().sum())
    if scale_range[0] < 1:
        assert len(sides) == 2, "both crops and pads should occur"
    else:
        assert sides == {False} and dropped > 0, "large scales crop and cut boxes off"


def test_random_scale_crop_drops_boxes_mostly_cut_off():
    # No resizing (96 * 64 / 96 stays 96) and a 64 window out of 96; each
    # pixel's value tells where it came from, so the crop can be read back.
    size, side = 64, 96
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    image = np.stack([xs / side, ys / side, np.zeros_like(xs)], -1)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, side, size=(40, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], -1).astype(np.float32)
    classes = np.arange(40, dtype=np.int32)
    checked = 0
    for seed in SEEDS:
        out, new_boxes, new_classes, _ = augment.random_scale_crop(
            image, boxes, classes, np.zeros(40, bool), size, seed, scale_range=(1.5, 1.5))
        origin = np.round(out.numpy()[0, 0, :2] * side)
        shifted = boxes - np.tile(origin, 2)
        clipped = np.clip(shifted, 0, size)
        area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        visible = area(clipped) / area(shifted)
        certain = np.abs(visible - 0.3) > 0.01
        np.testing.assert_array_equal((new_classes.numpy() >= 0)[certain], visible[certain] >= 0.3)
        kept = new_classes.numpy() >= 0
        np.testing.assert_allclose(new_boxes.numpy()[kept], clipped[kept], atol=1e-4)
        assert (new_boxes.numpy()[~kept] == 0).all()
        checked += certain.sum()
    assert checked > 200


@pytest.mark.parametrize("pad_value", [0.5, 0.0])
def test_random_scale_crop_pads_small_images(pad_value):
    # A white 32x32 image at scale 0.5 of 64 stays 32 and lands on the canvas.
    out, boxes, classes, _ = augment.random_scale_crop(
        np.ones([32, 32, 3], np.float32), [[0, 0, 32, 32]], [0], [False], 64, SEEDS[1],
        scale_range=(0.5, 0.5), pad_value=pad_value)
    out = out.numpy()
    assert (out == 1.0).sum() == 32 * 32 * 3
    assert (out == pad_value).sum() == (64 * 64 - 32 * 32) * 3
    rows, cols = np.nonzero(out[..., 0] == 1.0)
    np.testing.assert_allclose(boxes[0], [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    assert classes[0] == 0


def test_equal_seeds_repeat_and_different_seeds_differ():
    def run(seed):
        image, boxes = augment.random_flip(_painted(), BOXES, seed)
        image, boxes, _, _ = augment.random_scale_crop(image, boxes, CLASSES, IGNORE, 64, seed)
        return augment.photometric(image, seed).numpy(), boxes.numpy()

    first, again = run(SEEDS[2]), run(SEEDS[2])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert any(not np.array_equal(first[1], run(seed)[1]) for seed in SEEDS[3:])


def test_photometric_stays_in_range_and_is_off_at_zero_strength():
    image = tf.random.stateless_uniform([16, 16, 3], seed=[1, 2])
    for seed in SEEDS[:3]:
        jittered = augment.photometric(image, seed, strength=0.5).numpy()
        assert jittered.shape == (16, 16, 3)
        assert jittered.min() >= 0 and jittered.max() <= 1
        assert not np.allclose(jittered, image)
    np.testing.assert_allclose(augment.photometric(image, SEEDS[0], strength=0.0), image,
                               atol=1e-5)
    with pytest.raises(ValueError, match="Received: strength=1.5"):
        augment.photometric(image, SEEDS[0], strength=1.5)


def test_augmentations_run_inside_tf_data():
    def transform(seed, image, boxes, classes, ignore):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        image, boxes = augment.resize_with_boxes(image, boxes, 48)
        image, boxes = augment.random_flip(image, boxes, seeds[0])
        image, boxes, classes, ignore = augment.random_scale_crop(image, boxes, classes, ignore,
                                                                  32, seeds[1])
        return augment.photometric(image, seeds[2]), boxes, classes, ignore

    examples = tf.data.Dataset.from_tensors((_painted(), BOXES, CLASSES, IGNORE)).repeat(2)
    seeds = tf.data.Dataset.random(seed=3).batch(2)
    dataset = tf.data.Dataset.zip(seeds, examples).map(
        lambda seed, example: transform(seed, *example))
    image_spec, boxes_spec, classes_spec, _ = dataset.element_spec
    assert image_spec.shape == (32, 32, 3) and boxes_spec.shape == (4, 4)
    assert classes_spec.dtype == tf.int32
    assert len(list(dataset)) == 2
