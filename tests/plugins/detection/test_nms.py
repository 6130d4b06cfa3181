"""Detection's suppression (TFLite builtin ops) against TensorFlow's
combined_non_max_suppression, which it replaced."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("seed, limit", [(0, 5), (1, 20), (2, 100)])
def test_per_class_nms_keeps_what_combined_nms_keeps(seed, limit):
    import tensorflow as tf

    from ftk.plugins.detection.postprocess import per_class_nms

    rng = np.random.default_rng(seed)
    # Many overlapping boxes inside the image, scored for four classes: the
    # same location competes within a class and across classes.
    corner = rng.uniform(0.0, 0.7, size=(3, 60, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, size=(3, 60, 2))], -1)
    scores = rng.uniform(0.0, 1.0, size=(3, 60, 4)).astype(np.float32)
    boxes = tf.constant(boxes, tf.float32)
    got = per_class_nms(boxes, tf.constant(scores), limit, iou_threshold=0.5, score_threshold=0.3)
    want = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=limit, max_total_size=limit,
        iou_threshold=0.5, score_threshold=0.3, clip_boxes=True)
    np.testing.assert_array_equal(got[3], want.valid_detections)
    assert want.valid_detections.numpy().min() > 0
    for image, count in enumerate(want.valid_detections.numpy()):
        np.testing.assert_allclose(got[0][image, :count], want.nmsed_boxes[image, :count], atol=1e-6)
        np.testing.assert_allclose(got[1][image, :count], want.nmsed_scores[image, :count], atol=1e-6)
        np.testing.assert_array_equal(got[2][image, :count], want.nmsed_classes[image, :count])
