"""TFLite files of each built-in task, in each quantisation mode, run through
LiteRT's interpreter and compared with the SavedModel they came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ftk
from ftk import tflite
from helpers import ftk_cli, json_out

pytestmark = pytest.mark.e2e

MODES = ("none", "dynamic", "float16", "int8")
# Float files compute what the SavedModel does: float32 to rounding, float16
# weights within 1e-3 of the largest output (detection's box distances run to
# hundreds, its logits to a few units). The quantised ones may lose a little
# of the main metric on these small test sets (int8 weights; int8
# activations too).
OUTPUT_TOLERANCE = {"none": 1e-5, "float16": 1e-3}
METRIC_DROP = {"none": 0.0, "float16": 0.0, "dynamic": 0.1, "int8": 0.2}
# Detection's best score in each image.
SCORE_TOLERANCE = {"none": 1e-5, "float16": 1e-3, "dynamic": 0.05, "int8": 0.1}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", ["text", "image", "detection"])
def test_a_tflite_file_scores_as_its_saved_model(request, task, mode, tmp_path):
    trained = request.getfixturevalue(task)
    target = ftk.export(trained.run_dir, "tflite", tmp_path / f"{mode}.tflite",
                        quantize=mode, representative=40)
    ops = tflite.op_names(target.read_bytes())
    assert not [name for name in ops if name.startswith("Flex")], ops
    sidecar = json.loads(tflite.sidecar_path(target).read_text())
    assert sidecar["quantize"] == mode
    # The file's own signatures, as LiteRT lists them, under the plain names.
    assert set(tflite.interpreter(target.read_bytes()).get_signature_list()) == {
        "serving_default", "raw_outputs"}

    saved, lite = ftk.load(trained.run_dir), ftk.load(target)
    if mode in OUTPUT_TOLERANCE:
        expected = saved.raw_outputs(trained.inputs)
        np.testing.assert_allclose(lite.raw_outputs(trained.inputs), expected, rtol=0,
                                   atol=OUTPUT_TOLERANCE[mode] * np.abs(expected).max())
    scored = ftk.evaluate(target, data=trained.test_data)
    assert scored[trained.main] >= trained.metrics[trained.main] - METRIC_DROP[mode] - 1e-6, scored
    if task == "detection":  # its suppression runs in a loop, which int8 must keep float
        best = [predictor.prediction_arrays(trained.inputs)["scores"][:, 0]
                for predictor in (saved, lite)]
        assert best[0].min() > 3 * SCORE_TOLERANCE["int8"]  # a lost score would show
        np.testing.assert_allclose(best[1], best[0], atol=SCORE_TOLERANCE[mode])
    table = target.with_name(target.name + ".md").read_text()
    assert f"| TFLite ({mode}) |" in table and f"| {trained.main} |" in table


def test_text_files_hold_only_tensorflow_text_custom_ops(text, tmp_path):
    target = ftk.export(text.run_dir, "tflite", tmp_path / "text.tflite")
    custom = tflite.op_names(target.read_bytes(), custom_only=True)
    assert set(custom) == {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"}
    sidecar = json.loads(tflite.sidecar_path(target).read_text())
    assert sidecar["custom_ops"]["ops"] == sorted(custom)
    assert sidecar["input"]["seq_length"] == 32 and sidecar["input"]["lower_case"] is True
    predictions = ftk.load(target).predict(["referee goal stadium", "oven flour sugar"])
    assert [p["label"] for p in predictions] == [p["label"] for p in
                                                 ftk.load(text.run_dir).predict(
                                                     ["referee goal stadium", "oven flour sugar"])]


def test_detection_files_suppress_inside_and_give_the_same_boxes(detection, tmp_path):
    target = ftk.export(detection.run_dir, "tflite", tmp_path / "detect.tflite")
    assert "NON_MAX_SUPPRESSION_V5" in tflite.op_names(target.read_bytes())
    assert "fractions" in json.loads(tflite.sidecar_path(target).read_text())["input"]["boxes"]
    saved = ftk.load(detection.run_dir).prediction_arrays(detection.inputs)
    lite = ftk.load(target).prediction_arrays(detection.inputs)
    np.testing.assert_array_equal(lite["num_detections"], saved["num_detections"])
    assert saved["num_detections"].sum() > 0
    np.testing.assert_allclose(lite["boxes"], saved["boxes"], atol=0.05)  # pixels
    np.testing.assert_array_equal(lite["class_ids"], saved["class_ids"])


def test_int8_io_takes_and_gives_int8(image, tmp_path):
    result = ftk_cli("export", image.run_dir, "--format", "tflite", "--quantize", "int8",
                     "--int8-io", "--representative", "30", "--output", tmp_path / "io.tflite")
    assert result.exit_code == 0, result.output
    assert "| SavedModel |" in result.stdout and "| TFLite (int8) |" in result.stdout
    sidecar = json.loads((tmp_path / "io.tflite.json").read_text())
    (spec,) = sidecar["signatures"]["raw_outputs"]["inputs"].values()
    assert spec["dtype"] == "int8" and "quantization" in spec
    assert sidecar["int8_float_ops"] == []
    scored = json_out(ftk_cli("evaluate", tmp_path / "io.tflite", "--data", image.test_data))
    assert scored["accuracy"] >= image.metrics["accuracy"] - METRIC_DROP["int8"]


# What `_loss` reports for full int8, then for int8 in the matrix ops alone
# (when tried), then for the file written; the file each choice makes.
CHOICES = {
    "full int8 holds": ([0.0, 0.0], "int8"),
    "matrix ops alone lose less": ([1.0, 0.0, 1.0], "float32"),
    "matrix ops alone lose as much": ([1.0, 1.0, 0.0], "int8"),
}


@pytest.mark.parametrize("choice", CHOICES)
def test_int8_keeps_all_but_the_matrix_ops_float_only_where_that_loses_less(
        choice, text, tmp_path, monkeypatch):
    # The losses are set here, so each choice is made whatever int8 scores
    # on this small model; the files are real.
    losses, softmax = CHOICES[choice]
    reported = iter(losses)
    monkeypatch.setattr("ftk.deploy._loss", lambda *args: next(reported))
    target = tmp_path / "int8.tflite"
    result = ftk_cli("export", text.run_dir, "--format", "tflite", "--quantize", "int8",
                     "--representative", "10", "--output", target)
    assert result.exit_code == 0, result.output
    assert next(reported, "all used") == "all used"
    runner = tflite.interpreter(target.read_bytes())
    tensors = {t["index"]: t for t in runner.get_tensor_details()}
    ops = runner._get_ops_details()  # LiteRT's only listing of ops with their tensors

    def dtypes(op_name, place, index):
        return {np.dtype(tensors[op[place][index]]["dtype"]).name
                for op in ops if op["op_name"] == op_name}

    assert dtypes("SOFTMAX", "outputs", 0) == {softmax}
    assert dtypes("FULLY_CONNECTED", "inputs", 1) == {"int8"}  # the weights
    assert dtypes("FULLY_CONNECTED", "inputs", 0) == {"int8"}  # the activations
    float_ops = json.loads(tflite.sidecar_path(target).read_text())["int8_float_ops"]
    table = target.with_name(target.name + ".md").read_text()
    if softmax == "float32":
        assert {"SOFTMAX", "ADD", "MEAN"} <= set(float_ops) and "SOFTMAX" in table
        assert "so only those run in int8; these stay float: " in result.stderr
        assert "Warning: The TFLite file (int8) loses 1.0000 accuracy" in result.stderr
        scored = ftk.evaluate(target, data=text.test_data)
        assert scored["accuracy"] >= text.metrics["accuracy"] - METRIC_DROP["int8"]
    else:
        assert float_ops == [] and "Warning" not in result.stderr
        assert ("so the file is full int8." in table) == (len(losses) == 3)


def test_int8_io_is_refused_for_text_inputs(text, tmp_path):
    result = ftk_cli("export", text.run_dir, "--format", "tflite", "--quantize", "int8",
                     "--int8-io", "--representative", "10", "--output", tmp_path / "t.tflite")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "--int8-io makes float inputs int8, but the TFLite file" in result.stderr
    assert not list(tmp_path.iterdir())


def test_int8_io_is_refused_for_a_model_that_loops(detection, tmp_path):
    result = ftk_cli("export", detection.run_dir, "--format", "tflite", "--quantize", "int8",
                     "--int8-io", "--representative", "4", "--output", tmp_path / "d.tflite")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "--int8-io asks for integer ops throughout" in result.stderr
    assert "map/while_body" in result.stderr and not list(tmp_path.iterdir())


def test_a_model_needing_tensorflow_ops_is_refused_naming_them(embedding, topics, tmp_path):
    run = ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                  epochs=1, batch_size=8, output_dir=tmp_path / "run")
    result = ftk_cli("export", run.run_dir, "--format", "tflite")
    assert result.exit_code == 1
    assert "needs TensorFlow ops TFLite has no kernels for:" in result.stderr
    assert "StringToHashBucketFast" in result.stderr and "Traceback" not in result.stderr
    assert not list(run.run_dir.glob("*.tflite*"))


def test_a_sidecar_of_another_file_is_refused(image, tmp_path):
    target = ftk.export(image.run_dir, "tflite", tmp_path / "a.tflite")
    other = ftk.export(image.run_dir, "tflite", tmp_path / "b.tflite", quantize="float16")
    tflite.sidecar_path(target).write_bytes(tflite.sidecar_path(other).read_bytes())
    with pytest.raises(ftk.FtkError, match="describes another file than a.tflite"):
        ftk.load(target)
    tflite.sidecar_path(target).unlink()
    with pytest.raises(ftk.FtkError, match="has no a.tflite.json beside it"):
        ftk.load(target)
