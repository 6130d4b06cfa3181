"""`ftk serve` as a real process on a free 127.0.0.1 port: TF Serving's REST
routes with requests built by hand, ftk's readable route, bad requests, and
concurrent clients. `ftk export --format tf_serving` writes TF Serving's
layout."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ftk
from helpers import ftk_cli, ftk_server, http_json, png_declaring

pytestmark = pytest.mark.e2e

TEXTS = ["referee goal stadium", "oven flour sugar", "the striker scored twice"]


def test_status_and_metadata_are_tf_servings(text_server):
    url, _ = text_server
    for route in ("/v1/models/topics", "/v1/models/topics/versions/1"):
        status, body = http_json(url + route)
        assert status == 200
        assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = http_json(url + "/v1/models/topics/metadata")
    assert status == 200 and body["model_spec"]["name"] == "topics"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "raw_outputs"} <= set(signatures)
    inputs = signatures["serving_default"]["inputs"]["inputs"]
    assert inputs["dtype"] == "DT_STRING"
    assert inputs["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert "scores" in signatures["serving_default"]["outputs"]


def test_a_tf_serving_request_gets_the_saved_models_outputs(text, text_server):
    url, _ = text_server
    expected = ftk.load(text.run_dir).prediction_arrays(TEXTS)
    # Row format: one value per instance (the signature has one input).
    status, body = http_json(url + "/v1/models/topics:predict",
                             {"signature_name": "serving_default", "instances": TEXTS})
    assert status == 200, body
    assert [row["label"] for row in body["predictions"]] == [
        label.decode() for label in expected["label"]]
    np.testing.assert_allclose([row["scores"] for row in body["predictions"]],
                               expected["scores"], rtol=1e-5)
    # Named instances, on the versioned route, give the same.
    status, named = http_json(url + "/v1/models/topics/versions/1:predict",
                              {"instances": [{"inputs": text} for text in TEXTS]})
    assert status == 200 and named == body
    # Columnar format, another signature.
    status, columns = http_json(url + "/v1/models/topics:predict",
                                {"signature_name": "raw_outputs", "inputs": TEXTS})
    assert status == 200
    np.testing.assert_allclose(columns["outputs"], ftk.load(text.run_dir).raw_outputs(TEXTS),
                               rtol=1e-5, atol=1e-6)


def test_readable_predictions_are_the_python_apis(text, text_server):
    url, _ = text_server
    status, body = http_json(url + "/predict", {"instances": TEXTS})
    assert status == 200 and body["model"] == "topics" and body["latency_ms"] > 0
    expected = ftk.load(text.run_dir).predict(TEXTS)
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
    assert body["predictions"][0]["scores"] == pytest.approx(expected[0]["scores"], abs=1e-5)
    status, info = http_json(url + "/info")
    assert info["task"] == "text_classification" and info["page"]["show"] == "scores"


@pytest.mark.parametrize("route, body, status, message", [
    ("/v1/models/topics:predict", b"{not json", 400, "The body is not valid JSON"),
    ("/v1/models/topics:predict", b"[1, 2]", 400, "The body must be a JSON object"),
    ("/v1/models/topics:predict", {"examples": TEXTS}, 400, "Unknown field 'examples'"),
    ("/v1/models/topics:predict", {"instances": TEXTS, "inputs": TEXTS}, 400,
     'exactly one of "instances"'),
    ("/v1/models/topics:predict", {"signature_name": "nope", "instances": TEXTS}, 400,
     "Signature 'nope' is not in this model"),
    ("/v1/models/topics:predict", {"instances": [{"text": "x"}]}, 400,
     "instances[0]: the signature has no input 'text'"),
    ("/v1/models/topics:predict", {"instances": [{"b64": "not base64!"}]}, 400,
     "instances[0]: the b64 value is not valid base64"),
    ("/v1/models/topics:predict", {"instances": ["a"] * 17}, 413,
     "Too many instances: 17, over this server's limit of 16"),
    ("/v1/models/topics:predict", {"instances": ["a" * 20000]}, 413,
     "over this server's limit of 0.01 MB"),
    ("/v1/models/other:predict", {"instances": TEXTS}, 404, "This server serves 'topics'"),
    ("/v1/models/topics/versions/2:predict", {"instances": TEXTS}, 404, "version 2"),
    ("/predict", {"instances": []}, 400, '"instances": a non-empty list'),
    ("/predict", {"instances": [{"x": 1}]}, 400, "instances[0]: this model takes texts"),
    ("/predict", {"instances": [5]}, 400, "instances[0]: this model takes texts"),
    ("/v1/models/topics:predict", {"signature_name": ["x"], "instances": TEXTS}, 400,
     '"signature_name" must be a string'),
    ("/v1/models/topics:predict", {"signature_name": "raw_outputs", "inputs": 5}, 400,
     "inputs (inputs): shape [] does not fit the signature's [-1]"),
    ("/nowhere", {"instances": TEXTS}, 404, "POST /nowhere: Not Found"),
])
def test_a_bad_request_gets_a_json_error_and_the_server_goes_on(text_server, route, body,
                                                                status, message):
    url, _ = text_server
    raw = body if isinstance(body, bytes) else None
    got, answer = http_json(url + route, None if raw else body, raw=raw)
    assert got == status and message in answer["error"], answer
    assert http_json(url + "/predict", {"instances": TEXTS[:1]})[0] == 200


def test_concurrent_requests_are_batched_and_each_logged(text, text_server):
    url, log = text_server
    status, before = http_json(url + "/info")
    # Each answer is its own text's prediction, whatever it was batched with.
    expected = [p["scores"] for p in ftk.load(text.run_dir).predict(TEXTS[:2])]
    assert expected[0] != expected[1]
    logged = sum('"POST /predict" 200' in line for line in log)

    def ask(index: int) -> dict:
        status, body = http_json(url + "/predict", {"instances": [TEXTS[index % 2]]})
        assert status == 200, body
        return body["predictions"][0]["scores"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, range(64)))
    for index, scores in enumerate(answers):
        assert scores == pytest.approx(expected[index % 2], abs=1e-5)
    status, after = http_json(url + "/info")
    calls = after["model_calls"] - before["model_calls"]
    assert after["instances"] - before["instances"] == 64
    assert calls < 64, "no request shared a model call"
    assert sum('"POST /predict" 200' in line for line in log) == logged + 64
    assert all(re.search(r' \d+\.\d ms$', line.strip()) for line in log
               if '"POST /predict"' in line)


def test_concurrent_tf_serving_requests_of_several_sizes_get_their_own_rows(text, text_server):
    url, _ = text_server
    model = ftk.load(text.run_dir)
    sizes = [1, 5, 3, 8, 2, 7, 4, 6] * 3  # several fit in a batch of 8, some do not
    requests = [[TEXTS[(start + i) % 3] for i in range(size)]
                for start, size in enumerate(sizes)]
    expected = {text: row for text, row in zip(TEXTS, model.raw_outputs(TEXTS).tolist())}

    def ask(texts: list) -> list:
        status, body = http_json(url + "/v1/models/topics:predict",
                                 {"signature_name": "raw_outputs", "instances": texts})
        assert status == 200, body
        return body["predictions"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, requests))
    for texts, rows in zip(requests, answers):
        np.testing.assert_allclose(rows, [expected[text] for text in texts], rtol=1e-4, atol=1e-5)


def test_images_travel_as_b64_and_a_broken_one_is_named(image, image_server):
    url, _ = image_server
    pictures = [Path(path).read_bytes() for path in image.inputs[:3]]
    instances = [{"b64": base64.b64encode(data).decode()} for data in pictures]
    expected = ftk.load(image.run_dir).predict(pictures)
    status, body = http_json(url + "/v1/models/colours:predict", {"instances": instances})
    assert status == 200, body
    assert [row["label"] for row in body["predictions"]] == [p["label"] for p in expected]
    status, body = http_json(url + "/predict", {"instances": instances})
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
    broken = {"b64": base64.b64encode(b"not an image").decode()}
    status, body = http_json(url + "/predict", {"instances": [instances[0], broken]})
    assert status == 400 and body["error"].startswith("instances[1]:"), body
    status, body = http_json(url + "/v1/models/colours:predict", {"instances": [broken]})
    assert status == 400 and "The model cannot run these inputs" in body["error"], body
    # The TF Serving route checks file bytes as the readable route does.
    bomb = {"b64": base64.b64encode(png_declaring(50_000, 50_000)).decode()}
    for route in ("/predict", "/v1/models/colours:predict"):
        status, body = http_json(url + route, {"instances": [bomb]})
        assert status == 400 and "too large to decode safely" in body["error"], body
    # Pixels go to the pixels signature as nested lists, checked against its shape.
    size = ftk.load(image.run_dir).config["backbone"]["image_size"]
    pixels = np.zeros((1, size, size, 3)).tolist()
    status, body = http_json(url + "/v1/models/colours:predict",
                             {"signature_name": "serving_pixels", "instances": pixels})
    assert status == 200 and len(body["predictions"]) == 1, body
    status, body = http_json(url + "/v1/models/colours:predict",
                             {"signature_name": "serving_pixels", "inputs": [[1, 2]]})
    assert status == 400 and "does not fit the signature's [-1, -1, -1, 3]" in body["error"]
    status, body = http_json(url + "/predict", {"instances": [image.inputs[0]]})
    assert status == 400 and "this model takes files, sent as" in body["error"]
    assert http_json(url + "/predict", {"instances": instances[:1]})[0] == 200


def test_a_tflite_file_is_served_as_its_interpreter_predicts(image, tmp_path):
    target = ftk.export(image.run_dir, "tflite", tmp_path / "colours.tflite")
    pictures = [Path(path).read_bytes() for path in image.inputs[:2]]
    expected = ftk.load(target).predict(pictures)
    with ftk_server(target) as (url, _):
        status, body = http_json(url + "/predict", {"instances": [
            {"b64": base64.b64encode(data).decode()} for data in pictures]})
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
        status, metadata = http_json(url + "/v1/models/colours/metadata")
        assert set(metadata["metadata"]["signature_def"]["signature_def"]) == {
            "serving_default", "raw_outputs"}


def test_tf_serving_export_writes_numbered_versions(text, tmp_path):
    result = ftk_cli("export", text.run_dir, "--format", "tf_serving", "--output",
                     tmp_path / "models", "--name", "topics")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(tmp_path / "models" / "topics" / "1"))
    ftk_cli("export", text.run_dir, "--format", "tf_serving", "--output", tmp_path / "models",
            "--name", "topics")
    versions = sorted(p.name for p in (tmp_path / "models" / "topics").iterdir())
    assert versions == ["1", "2"]
    loaded = tf.saved_model.load(str(tmp_path / "models" / "topics" / "2"))
    outputs = loaded.signatures["serving_default"](inputs=tf.constant(TEXTS))
    assert outputs["label"].shape == (3,)
    (tmp_path / "models" / "topics" / "notes.txt").write_text("mine")
    result = ftk_cli("export", text.run_dir, "--format", "tf_serving", "--output",
                     tmp_path / "models", "--name", "topics")
    assert result.exit_code == 1 and "'notes.txt', which is not a model version" in result.stderr
    result = ftk_cli("export", text.run_dir, "--format", "tf_serving")
    assert result.exit_code == 1 and "--format tf_serving needs --output DIR" in result.stderr


def test_a_bad_model_name_is_refused_before_loading(text):
    result = ftk_cli("serve", text.run_dir, "--name", "a/b")
    assert result.exit_code == 1 and "cannot be used in /v1/models/NAME URLs" in result.stderr
