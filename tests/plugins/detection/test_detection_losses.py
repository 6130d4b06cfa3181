"""Detection box geometry, FCOS target assignment and the detection loss, on
cases worked out by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ftk.plugins.detection import boxes, losses, targets

LN2 = math.log(2.0)

# Two boxes on a 64x64 image, worked out by hand below: A = [6, 10, 38, 42]
# (centre (22, 26)) and B = [0, 0, 64, 64] (centre (32, 32)). Both only fit
# the stride-8 level, whose locations sit at 4, 12, ..., 60 on each axis; the
# centre region (radius 1.5 * 8 = 12) keeps x in {12, 20, 28}, y in
# {20, 28, 36} for A and x, y in {28, 36} for B.
BOX_A, BOX_B = [6, 10, 38, 42], [0, 0, 64, 64]
A_XS, A_YS = (12, 20, 28), (20, 28, 36)


def _index(x: float, y: float, stride: int = 8, size: int = 64) -> int:
    """Where the location centred on pixel (x, y) of a level sits in `locations`."""
    offset = {8: 0, 16: 64, 32: 80}[stride]  # valid for size 64
    side = math.ceil(size / stride)
    return offset + int(y // stride) * side + int(x // stride)


def _assign(box_list, class_list, ignore_list, size=64, **kwargs):
    points, level_ids, strides = boxes.locations(size)
    result = targets.assign_fcos_targets(
        np.array(box_list, np.float32), np.array(class_list, np.int32),
        np.array(ignore_list, bool), points, level_ids, strides, **kwargs)
    return {key: value.numpy() for key, value in result.items()}


def test_area_iou_and_clip():
    np.testing.assert_allclose(boxes.area([[0, 0, 2, 3], [5, 5, 4, 4]]), [6, 0])
    iou = boxes.pairwise_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [4, 4, 5, 5], [0, 0, 2, 2]])
    assert iou.shape == (1, 3)
    np.testing.assert_allclose(iou, [[1 / 3, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(boxes.clip_boxes([[-3, 2, 70, 40]], 32, 64), [[0, 2, 64, 32]])


def test_giou_and_its_loss_by_hand():
    # Identical boxes: GIoU 1, loss 0.
    np.testing.assert_allclose(losses.giou_loss([[1, 2, 5, 7]], [[1, 2, 5, 7]]), [0], atol=1e-6)
    # Disjoint unit squares one apart: IoU 0, enclosing [0, 0, 3, 1] of area 3
    # with 1 uncovered, so GIoU = -1/3 and the loss 4/3.
    np.testing.assert_allclose(boxes.giou([0, 0, 1, 1], [2, 0, 3, 1]), -1 / 3, atol=1e-6)
    np.testing.assert_allclose(losses.giou_loss([0, 0, 1, 1], [2, 0, 3, 1]), 4 / 3, atol=1e-6)
    # A 2x2 box inside a 4x4 one: IoU 4/16, the enclosing box is the outer one.
    np.testing.assert_allclose(losses.giou_loss([[0, 0, 4, 4]], [[1, 1, 3, 3]]), [0.75],
                               atol=1e-6)
    # Elementwise over leading dimensions.
    assert boxes.giou(np.zeros([2, 3, 4]), np.ones([2, 3, 4])).shape == (2, 3)


def test_sigmoid_focal_loss_by_hand():
    # Logit 0 on a positive: p_t = 1/2, alpha_t = 0.25, cross-entropy ln 2.
    # Logit 2 on a negative: p_t = 1 - sigmoid(2), alpha_t = 0.75,
    # cross-entropy log(1 + e^2).
    p = 1 / (1 + math.exp(-2))
    expected = [0.25 * 0.5 ** 2 * LN2, 0.75 * p ** 2 * math.log(1 + math.exp(2))]
    got = losses.sigmoid_focal_loss([[1.0, 0.0]], [[0.0, 2.0]])
    np.testing.assert_allclose(got, [expected], rtol=1e-5)
    # gamma 0 leaves alpha-weighted cross-entropy.
    np.testing.assert_allclose(losses.sigmoid_focal_loss([1.0], [0.0], gamma=0.0),
                               [0.25 * LN2], rtol=1e-6)


def test_locations_and_decode():
    points, level_ids, strides = boxes.locations(64)
    assert points.shape == (84, 2) and level_ids.shape == strides.shape == (84,)
    np.testing.assert_array_equal(points[[0, 1, 8, 64, 80, 83]],
                                  [[4, 4], [12, 4], [4, 12], [8, 8], [16, 16], [48, 48]])
    assert list(np.bincount(level_ids)) == [64, 16, 4]
    assert strides[63] == 8 and strides[64] == 16 and strides[80] == 32
    # A side that strides do not divide rounds up: 9 -> 2, 1, 1 cells a side.
    assert boxes.locations(9)[0].shape == (6, 2)

    ltrb = np.array([[[0.5, 1.0, 1.5, 2.0]]], np.float32)
    decoded = boxes.decode(points[80:81], ltrb, strides[80:81])
    np.testing.assert_allclose(decoded, [[[0, -16, 64, 80]]])
    np.testing.assert_allclose(boxes.encode(points[80:81], decoded, strides[80:81]), ltrb)


def test_centerness_of_a_known_point():
    # l=6, t=10, r=26, b=22: sqrt(6/26 * 10/22).
    np.testing.assert_allclose(targets.centerness([6.0, 10.0, 26.0, 22.0]),
                               math.sqrt(6 / 26 * 10 / 22), rtol=1e-6)
    assert float(targets.centerness([3.0, 3.0, 3.0, 3.0])) == pytest.approx(1.0)


def test_one_box_gets_its_centre_locations():
    result = _assign([[BOX_A]], [[2]], [[False]])
    expected = {_index(x, y) for x in A_XS for y in A_YS}
    assert set(np.nonzero(result["positive"][0])[0]) == expected
    assert set(result["class_targets"][0][sorted(expected)]) == {2}
    assert (result["class_targets"][0][~result["positive"][0]] == -1).all()
    # Location (12, 20): l = 6, t = 10, r = 26, b = 22 pixels, in strides of 8.
    at = _index(12, 20)
    np.testing.assert_allclose(result["box_targets"][0, at], [0.75, 1.25, 3.25, 2.75])
    np.testing.assert_allclose(result["centerness_targets"][0, at],
                               math.sqrt(6 / 26 * 10 / 22), rtol=1e-6)
    assert (result["box_targets"][0][~result["positive"][0]] == 0).all()
    assert (result["weight"] == 1).all()


def test_smallest_box_wins_and_padding_never_matches():
    # Row 3 repeats B as padding and row 4 is padding inside A: neither may match.
    rows = [BOX_A, BOX_B, BOX_B, [8, 12, 36, 40]]
    result = _assign([rows], [[2, 1, -1, -1]], [[False] * 4])
    labels = result["class_targets"][0]
    for x in A_XS:
        for y in A_YS:
            assert labels[_index(x, y)] == 2, (x, y)  # includes (28, 28), (28, 36) of both
    # B's other centre locations are outside A's centre region, so stay B's.
    assert labels[_index(36, 28)] == 1 and labels[_index(36, 36)] == 1
    np.testing.assert_allclose(result["box_targets"][0, _index(36, 28)], [4.5, 3.5, 3.5, 4.5])
    assert result["positive"].sum() == 11


def test_ignore_boxes_zero_the_weight_but_never_become_positive():
    # An ignore box over the bottom right corner, overlapping B's positive at
    # (36, 36). Its inside holds 16 stride-8, 4 stride-16 and 1 stride-32
    # location centres; the one positive of B keeps its weight.
    rows = [BOX_A, BOX_B, [30, 30, 64, 64]]
    result = _assign([rows], [[2, 1, 0]], [[False, False, True]])
    assert result["class_targets"][0, _index(36, 36)] == 1
    assert result["weight"][0, _index(36, 36)] == 1
    assert result["weight"][0, _index(44, 44)] == 0 and not result["positive"][0, _index(44, 44)]
    assert (result["weight"] == 0).sum() == 16 + 4 + 1 - 1
    assert 0 not in result["class_targets"]
    # A dropped ignore box (class -1) ignores nothing.
    result = _assign([rows], [[2, 1, -1]], [[False, False, True]])
    assert (result["weight"] == 1).all()


def test_batches_are_independent():
    result = _assign([[BOX_A, [0, 0, 0, 0]], [BOX_B, BOX_A]], [[2, -1], [1, 2]],
                     [[False, False], [False, False]])
    assert result["positive"][0].sum() == 9 and result["positive"][1].sum() == 11
    assert result["box_targets"].shape == (2, 84, 4)
    assert result["class_targets"].dtype == np.int32 and result["weight"].dtype == np.float32


def test_large_boxes_go_to_coarser_levels():
    # A 200-pixel box on a 256 image: the stride-16 centre locations
    # (88, 104, 120 on each axis) reach at most 120 < 128 pixels to an edge; of
    # the stride-32 ones (80, 112, 144) those with a coordinate of 144 reach
    # 144 >= 128; the stride-8 ones reach under 64 nowhere.
    points, level_ids, strides = boxes.locations(256)
    result = targets.assign_fcos_targets([[[0, 0, 200, 200]]], [[0]], [[False]], points,
                                         level_ids, strides)
    positive = result["positive"].numpy()[0]
    assert positive[level_ids == 0].sum() == 0
    assert positive[level_ids == 1].sum() == 9
    level_two = {tuple(point) for point in points[positive & (level_ids == 2)]}
    assert level_two == {(80, 144), (112, 144), (144, 80), (144, 112), (144, 144)}


def _reference_assignment(box_rows, class_row, ignore_row, points, level_ids, strides,
                          scale_ranges, radius):
    """The FCOS rules one location and one box at a time."""
    labels = np.full(len(points), -1)
    ltrb = np.zeros([len(points), 4])
    for index, ((x, y), level, stride) in enumerate(zip(points, level_ids, strides)):
        best = np.inf
        for (x0, y0, x1, y1), label, ignored in zip(box_rows, class_row, ignore_row):
            distances = np.array([x - x0, y - y0, x1 - x, y1 - y])
            low, high = scale_ranges[level]
            if (label < 0 or ignored or distances.min() <= 0
                    or abs(x - (x0 + x1) / 2) >= radius * stride
                    or abs(y - (y0 + y1) / 2) >= radius * stride
                    or not low <= distances.max() < high):
                continue
            if (x1 - x0) * (y1 - y0) < best:
                best, labels[index], ltrb[index] = (x1 - x0) * (y1 - y0), label, distances / stride
    return labels, ltrb


def test_assignment_matches_a_one_location_at_a_time_reference():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 64, size=(2, 6, 2, 2))
    box_rows = np.concatenate([corners.min(2), corners.max(2)], -1).reshape(2, 6, 4)
    class_rows = rng.integers(-1, 3, size=(2, 6))
    ignore_rows = rng.uniform(size=(2, 6)) < 0.2
    scale_ranges = ((0, 12), (12, 24), (24, np.inf))
    points, level_ids, strides = boxes.locations(64)
    result = targets.assign_fcos_targets(box_rows, class_rows, ignore_rows, points, level_ids,
                                         strides, scale_ranges=scale_ranges, center_radius=2.0)
    for image in range(2):
        labels, ltrb = _reference_assignment(box_rows[image], class_rows[image],
                                             ignore_rows[image], points, level_ids, strides,
                                             scale_ranges, 2.0)
        np.testing.assert_array_equal(result["class_targets"][image], labels)
        np.testing.assert_allclose(result["box_targets"][image], ltrb, atol=1e-4)


def _truth():
    return {"boxes": np.array([[BOX_A, BOX_B, [30, 30, 64, 64]]], np.float32),
            "classes": np.array([[2, 1, 0]], np.int32),
            "ignore": np.array([[False, False, True]])}


def _loss(**kwargs) -> losses.DetectionLoss:
    return losses.DetectionLoss(*boxes.locations(64), **kwargs)


def test_loss_normalisation_by_hand():
    # 11 positives; 20 ignored locations; 84 - 20 = 64 weighted locations.
    # With zero logits every negative class costs 0.75 * 0.25 * ln 2 and every
    # positive one 0.25 * 0.25 * ln 2; the centerness cross-entropy is ln 2.
    loss = _loss(box_weight=2.0)
    truth = _truth()
    assigned = loss.targets(truth)
    prediction = {"class_logits": tf.zeros([1, 84, 3]),
                  "box_regression": assigned["box_targets"],
                  "centerness": tf.zeros([1, 84])}
    parts = loss.components(truth, prediction)
    classification = ((64 * 3 - 11) * 0.75 * 0.25 * LN2 + 11 * 0.25 * 0.25 * LN2) / 11
    assert float(parts["num_positives"]) == 11
    assert float(parts["classification"]) == pytest.approx(classification, rel=1e-5)
    assert float(parts["box"]) == pytest.approx(0.0, abs=1e-5)  # exact boxes
    assert float(parts["centerness"]) == pytest.approx(LN2, rel=1e-5)
    assert float(loss(truth, prediction)) == pytest.approx(classification + LN2, rel=1e-5)

    # Boxes twice too large: IoU 1/4 and GIoU the same at every positive.
    prediction["box_regression"] = 2 * assigned["box_targets"]
    parts = loss.components(truth, prediction)
    assert float(parts["box"]) == pytest.approx(0.75, rel=1e-5)
    assert float(parts["loss"]) == pytest.approx(classification + 1.5 + LN2, rel=1e-5)
    # Given assigned targets the loss skips the assignment and agrees.
    assert float(loss(assigned, prediction)) == pytest.approx(float(parts["loss"]), rel=1e-6)


def test_loss_without_objects_is_finite():
    loss = _loss()
    truth = {"boxes": np.zeros([2, 3, 4], np.float32), "classes": -np.ones([2, 3], np.int32),
             "ignore": np.zeros([2, 3], bool)}
    prediction = {"class_logits": tf.fill([2, 84, 4], -4.0), "box_regression": tf.zeros([2, 84, 4]),
                  "centerness": tf.zeros([2, 84])}
    parts = loss.components(truth, prediction)
    assert float(parts["box"]) == 0 and float(parts["centerness"]) == 0
    assert np.isfinite(float(parts["loss"])) and float(parts["loss"]) > 0


def test_loss_rejects_missing_keys():
    with pytest.raises(ValueError, match="Received keys"):
        _loss()({"boxes": np.zeros([1, 1, 4])}, {"class_logits": tf.zeros([1, 84, 3]),
                                                  "box_regression": tf.zeros([1, 84, 4]),
                                                  "centerness": tf.zeros([1, 84])})


def test_loss_decreases_under_sgd():
    num_classes, num_points = 3, 84
    inputs = tf.random.stateless_normal([1, 8], seed=[0, 1])
    dense = keras.layers.Dense(num_points * (num_classes + 5),
                               kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01,
                                                                                  seed=0))

    def model(x):
        outputs = tf.reshape(dense(x), [-1, num_points, num_classes + 5])
        return {"class_logits": outputs[..., :num_classes],
                "box_regression": tf.nn.softplus(outputs[..., num_classes:num_classes + 4]),
                "centerness": outputs[..., -1]}

    loss = _loss()
    truth = _truth()
    optimizer = keras.optimizers.SGD(0.5)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(truth, model(inputs))
        optimizer.apply_gradients(zip(tape.gradient(value, dense.trainable_variables),
                                      dense.trainable_variables))
        return value

    values = [float(step()) for _ in range(10)]
    assert all(np.isfinite(values))
    assert values[-1] < 0.8 * values[0], values
    assert all(later < earlier for earlier, later in itertools.pairwise(values)), values
