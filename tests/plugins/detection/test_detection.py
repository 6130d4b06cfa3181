"""Detection through the CLI and the Python API on a tiny offline backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ftk
from helpers import ftk_cli, json_out

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

METRICS = {"map", "map50", "map75", "map_small", "map_medium", "map_large", "per_class_ap"}


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """Small COCO-format sets drawn by the demo generator (256 x 256 images)."""
    from ftk.plugins.detection.demo import write_split

    folder = tmp_path_factory.mktemp("shapes")
    write_split(folder / "train", 0, 16)
    write_split(folder / "test", 2, 6)
    return {"train": folder / "train" / "annotations.json",
            "test": folder / "test" / "annotations.json"}


@pytest.fixture(scope="session")
def tiny_maps(tmp_path_factory) -> str:
    from ftk import testing

    return testing.tiny_image_backbone(tmp_path_factory.mktemp("backbones") / "maps",
                                       feature_maps=True)


@pytest.fixture(scope="session")
def detector(tmp_path_factory, shapes, tiny_maps) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "detector"
    result = ftk_cli("run", "--task", "detection", "--data", str(shapes["train"]),
                     "--test-data", str(shapes["test"]), "--backbone", tiny_maps,
                     "--epochs", "2", "--batch-size", "8", "--output", str(run_dir),
                     "--set", "backbone.image_size=64")
    assert result.exit_code == 0, result.output
    return run_dir


def test_run_writes_coco_metrics_samples_and_export(detector):
    metrics = json.loads((detector / "metrics.json").read_text())
    assert METRICS <= set(metrics) and metrics["split"] == "test"
    assert set(metrics["per_class_ap"]) == {"circle", "square", "triangle"}
    assert all(0.0 <= metrics[key] <= 1.0 for key in ("map", "map50", "map75"))
    assert metrics["num_images"] == 6
    assert (detector / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    assert Image.open(detector / "plots" / "detection_samples.png").size[0] > 256
    assert (detector / "export" / "saved_model.pb").exists()


def test_predict_cli_prints_boxes_and_draws(detector, shapes, tmp_path):
    image = shapes["test"].parent / "images" / "0000.png"
    result = ftk_cli("predict", str(detector), str(image), "--draw", str(tmp_path / "drawn"))
    assert result.exit_code == 0, result.output
    [prediction] = json_out(result)
    assert prediction["count"] == len(prediction["detections"])
    for detection in prediction["detections"]:
        assert detection["label"] in {"circle", "square", "triangle"}
        x_min, y_min, x_max, y_max = detection["box"]
        assert 0 <= x_min <= x_max <= 256 and 0 <= y_min <= y_max <= 256
    drawing = Path(prediction["drawing"])
    assert drawing == tmp_path / "drawn" / "0000.png"
    assert Image.open(drawing).size == (256, 256)


def test_export_signatures_take_bytes_and_pixels(detector, shapes):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(detector / "export"))
    image = (shapes["test"].parent / "images" / "0001.png").read_bytes()
    outputs = loaded.signatures["serving_default"](inputs=tf.constant([image, image]))
    assert {"boxes", "scores", "labels", "class_ids", "num_detections"} <= set(outputs)
    assert outputs["boxes"].shape[:2] == outputs["scores"].shape
    pixels = loaded.signatures["serving_pixels"](images=tf.random.uniform([1, 80, 120, 3]))
    assert pixels["boxes"].shape[0] == 1


def test_evaluate_scores_another_file(detector, shapes):
    result = ftk_cli("evaluate", str(detector), "--data", str(shapes["test"]))
    assert result.exit_code == 0, result.output
    assert json_out(result)["map"] == json.loads((detector / "metrics.json").read_text())["map"]


def test_evaluate_scores_tfrecords_as_the_annotations_they_came_from(detector, shapes, tmp_path):
    written = ftk_cli("data", "to-tfrecord", "detection", "--data", str(shapes["test"]),
                      "--output", str(tmp_path / "records"), "--shards", "2")
    assert written.exit_code == 0, written.output
    from_records = ftk_cli("evaluate", str(detector), "--data", str(tmp_path / "records"))
    assert from_records.exit_code == 0, from_records.output
    from_file = ftk_cli("evaluate", str(detector), "--data", str(shapes["test"]))
    # The same images and boxes, fed in another order: the same COCO evaluation.
    assert json_out(from_records) == json_out(from_file)


def test_a_backbone_without_feature_maps_is_refused(tmp_path, shapes):
    from ftk import testing

    vector_only = testing.tiny_image_backbone(tmp_path / "vector")
    result = ftk_cli("run", "--task", "detection", "--data", str(shapes["train"]),
                     "--backbone", vector_only, "--epochs", "1", "--output", str(tmp_path / "run"),
                     "--set", "backbone.image_size=64")
    assert result.exit_code == 1
    assert "no feature maps at strides 8, 16 and 32" in result.output
    assert "efficientnet-lite0" in result.output and "Traceback" not in result.output


def test_postprocess_scales_boxes_to_each_image_and_suppresses_duplicates():
    import tensorflow as tf

    from ftk.classification import ClassSpace
    from ftk.plugins.detection import boxes as box_ops
    from ftk.plugins.detection.postprocess import postprocess_detections

    size, classes = 64, ClassSpace(("a", "b"))
    points, _, strides = box_ops.locations(size)
    outputs = np.full((1, len(points), 2 + 5), -10.0, np.float32)  # nothing anywhere ...
    first, second = 10, 11  # ... but two neighbouring stride-8 cells see class "b"
    for cell, logit in ((first, 4.0), (second, 3.0)):
        x, y = points[cell]
        # Both predict about the box (16, 0)-(40, 24) of the 64 x 64 input.
        ltrb = np.array([x - 16, y - 0, 40 - x, 24 - y]) / strides[cell]
        outputs[0, cell, 1], outputs[0, cell, 2:6], outputs[0, cell, 6] = logit, ltrb, 4.0
    config = {"backbone": {"image_size": size},
              "head": {"max_detections": 5, "iou_threshold": 0.5, "score_threshold": 0.1}}
    # The original image was 128 high and 256 wide: x scales by 4, y by 2.
    result = postprocess_detections(tf.constant(outputs), classes, config,
                                    {"image_size": tf.constant([[128.0, 256.0]])})
    assert int(result["num_detections"][0]) == 1
    np.testing.assert_allclose(result["boxes"][0, 0], [64, 0, 160, 48], atol=1e-3)
    assert result["labels"].numpy()[0].tolist()[:2] == [b"b", b""]
    assert result["class_ids"].numpy()[0, :2].tolist() == [1, -1]


def test_load_predicts_paths_and_arrays_in_their_own_pixels(detector, shapes):
    model = ftk.load(detector)
    path = shapes["test"].parent / "images" / "0002.png"
    wide = np.asarray(Image.open(path).convert("RGB").resize((512, 128)))
    by_path, by_array = model.predict([str(path), wide])
    assert by_path["count"] == len(by_path["detections"])
    for detection in by_array["detections"]:  # boxes follow the 512 x 128 array
        x_min, y_min, x_max, y_max = detection["box"]
        assert 0 <= x_min <= x_max <= 512 and 0 <= y_min <= y_max <= 128
    if by_path["detections"] and by_array["detections"]:
        best_path, best_array = by_path["detections"][0], by_array["detections"][0]
        if best_path["label"] == best_array["label"]:
            # The same object, stretched: x doubles, y halves.
            assert best_array["box"][0] == pytest.approx(2 * best_path["box"][0], abs=12)
            assert best_array["box"][1] == pytest.approx(best_path["box"][1] / 2, abs=6)
