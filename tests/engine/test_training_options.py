"""train.mixed_precision and train.jit_compile, and the per-epoch timings in history.csv."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import tensorflow as tf

import ftk

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API


def _rows(run_dir):
    with open(run_dir / "history.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def _run(tmp_path, name, three_colours, tiny_image, *settings):
    return ftk.run(task="image_classification", data=str(three_colours["train"]),
                   test_data=str(three_colours["test"]), backbone=tiny_image, epochs=2, batch_size=8,
                   output_dir=tmp_path / name,
                   set=["backbone.image_size=32", "train.learning_rate=0.1", "data.augment=false",
                        *settings])


def test_mixed_float16_scales_the_loss_of_both_optimisers(tmp_path, three_colours, tiny_image):
    import tf_keras as keras

    result = _run(tmp_path, "fp16", three_colours, tiny_image, "train.mixed_precision=mixed_float16",
                  "backbone.trainable=true")
    assert all(math.isfinite(value) for value in result.history["loss"])
    names = {name for name, _ in tf.train.list_variables(
        str(result.run_dir / "checkpoints" / "last" / "ckpt"))}
    for optimizer in ("optimizer", "backbone_optimizer"):
        assert f"{optimizer}/loss_scale/current_loss_scale/.ATTRIBUTES/VARIABLE_VALUE" in names
    # The head ran in float16 but its logits, and so the export, stay float32.
    outputs = ftk.load(result.run_dir).raw_outputs([str(next(three_colours["test"].rglob("*.png")))])
    assert outputs.dtype == np.float32
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


def test_bfloat16_head_with_xla_trains_on_cached_features(tmp_path, three_colours, tiny_image):
    plain = _run(tmp_path, "plain", three_colours, tiny_image)
    fast = _run(tmp_path, "fast", three_colours, tiny_image, "train.mixed_precision=mixed_bfloat16",
                "train.jit_compile=true")
    assert fast.history["loss"][-1] < fast.history["loss"][0]
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    assert fast.history["loss"] == pytest.approx(plain.history["loss"], rel=0.1)


def test_history_records_each_epochs_wall_time(tmp_path, three_colours, tiny_image):
    result = _run(tmp_path, "timed", three_colours, tiny_image)
    seconds = [float(row["epoch_seconds"]) for row in _rows(result.run_dir)]
    assert len(seconds) == 2 and all(value > 0 for value in seconds)
    assert (result.run_dir / "plots" / "training_curves.png").exists()


def test_an_overflow_anywhere_skips_the_whole_step():
    from ftk.training.model import _poisoned_unless_finite

    dense = tf.constant([1.0, 2.0])
    sparse = tf.IndexedSlices(tf.constant([[3.0]]), tf.constant([0]), tf.constant([2, 1]))
    kept = _poisoned_unless_finite([dense, None, sparse])
    np.testing.assert_array_equal(kept[0], dense)
    assert kept[1] is None
    np.testing.assert_array_equal(kept[2].values, sparse.values)
    poisoned = _poisoned_unless_finite([dense, tf.IndexedSlices(
        tf.constant([[np.inf]]), tf.constant([0]), tf.constant([2, 1]))])
    assert np.isnan(poisoned[0].numpy()).all() and np.isnan(poisoned[1].values.numpy()).all()
