"""Image classification through the CLI and the Python API on tiny offline backbones."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ftk
from helpers import COLOURS, ftk_cli, json_out, png_declaring, write_colour_folder

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_image, colours):
    """One CLI run on six colours, shared by the tests that inspect its outputs."""
    run_dir = tmp_path_factory.mktemp("runs") / "colours"
    result = ftk_cli("run", "--task", "image_classification", "--data", str(colours["train"]),
                     "--test-data", str(colours["test"]), "--backbone", tiny_image,
                     "--epochs", "15", "--batch-size", "16", "--output", str(run_dir),
                     "--set", "backbone.image_size=32", "--set", "train.learning_rate=0.1",
                     "--set", "data.augmentation.color_jitter=0.0")
    assert result.exit_code == 0, result.output
    return run_dir


def test_run_learns_colours_and_writes_reports(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["accuracy"] >= 0.75, metrics  # chance is 1/6
    assert metrics["top5_accuracy"] >= metrics["accuracy"]  # six classes: top-5 is reported
    assert set(metrics["per_class"]) == set(COLOURS)
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["red"])
    assert (trained / "confusion_matrix.csv").read_text().startswith("true \\ predicted,blue,cyan")
    assert (trained / "plots" / "confusion_matrix.png").stat().st_size > 0
    assert (trained / "labels.txt").read_text().split() == sorted(COLOURS)
    history = (trained / "history.csv").read_text()
    assert "top5_accuracy" in history.splitlines()[0]


def test_predict_cli_prints_json_for_image_files(trained, colours):
    # Colour files (PNG and JPEG): a greyscale copy of a colour carries too little of it to name.
    files = [colours["test"] / "red" / "red_0.png", colours["test"] / "blue" / "blue_1.jpg"]
    result = ftk_cli("predict", str(trained), *map(str, files))
    assert result.exit_code == 0, result.output
    predictions = json_out(result)
    assert [p["label"] for p in predictions] == ["red", "blue"]
    assert set(predictions[0]["scores"]) == set(COLOURS)


def test_one_corrupt_image_among_several_is_named(trained, colours, tmp_path):
    corrupt = tmp_path / "broken.png"
    good = (colours["test"] / "red" / "red_0.png").read_bytes()
    corrupt.write_bytes(good[: len(good) // 3])  # a truncated download
    files = [colours["test"] / "red" / "red_0.png", corrupt, colours["test"] / "blue" / "blue_1.jpg"]
    result = ftk_cli("predict", str(trained), *map(str, files))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{corrupt} cannot be decoded as a JPEG, PNG, BMP or GIF image" in result.stderr


def test_keep_going_puts_each_bad_inputs_error_in_its_place(trained, colours, tmp_path):
    corrupt, bomb = tmp_path / "broken.png", tmp_path / "bomb.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    bomb.write_bytes(png_declaring(100_000, 100_000))  # 10^10 pixels in 67 bytes
    files = [colours["test"] / "red" / "red_0.png", corrupt, bomb,
             colours["test"] / "blue" / "blue_1.jpg"]
    result = ftk_cli("predict", str(trained), "--keep-going", *map(str, files))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "2 of 4 inputs could not be predicted" in result.stderr
    predictions = json_out(result)
    assert [p.get("label") for p in predictions] == ["red", None, None, "blue"]
    assert [p.get("input") for p in predictions] == [None, 1, 2, None]
    assert f"{corrupt} cannot be decoded" in predictions[1]["error"]
    assert f"{bomb} is too large to decode safely" in predictions[2]["error"]
    # An argument that names nothing is a mistake in the command: refused up front.
    result = ftk_cli("predict", str(trained), "--keep-going", str(files[0]), str(tmp_path / "typo"))
    assert f"{tmp_path / 'typo'} is not an image file or a folder of images" in result.stderr

    # Through the API, bytes are checked the same way.
    model = ftk.load(trained)
    limited = model.predict([(colours["test"] / "red" / "red_0.png").read_bytes(),
                             png_declaring(8000, 6000), tmp_path / "gone.png"], keep_going=True)
    assert limited[0]["label"] == "red"
    assert limited[1]["input"] == 1 and limited[1]["error"].startswith(
        "An encoded image declares 8000 x 6000 pixels, more than data.max_image_pixels (40000000)")
    assert limited[2] == {"input": 2, "error": f"Image file {tmp_path / 'gone.png'} does not exist."}


def test_load_predicts_paths_bytes_and_arrays_alike(trained, colours):
    model = ftk.load(trained)
    path = colours["test"] / "green" / "green_0.png"  # lossless, so all three agree
    pixels = np.asarray(Image.open(path).convert("RGB"))
    by_path, by_bytes, by_uint8, by_float = model.predict(
        [str(path), path.read_bytes(), pixels, pixels / 255.0])
    assert by_path["label"] == "green"
    for other in (by_bytes, by_uint8, by_float):
        assert other["label"] == "green"
        assert other["score"] == pytest.approx(by_path["score"], abs=1e-4)


def test_export_has_bytes_and_pixel_signatures(trained, colours):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained / "export"))
    assert {"serving_default", "raw_outputs", "serving_pixels", "raw_outputs_pixels"} <= set(loaded.signatures)
    bitmap = colours["train"] / "cyan" / "cyan_4.bmp"
    outputs = loaded.signatures["serving_default"](inputs=tf.constant([bitmap.read_bytes()]))
    assert outputs["label"].numpy()[0].decode() == ftk.load(trained).predict([str(bitmap)])[0]["label"]
    assert outputs["scores"].shape == (1, len(COLOURS))
    pixels = tf.random.uniform([2, 50, 70, 3])
    outputs = loaded.signatures["serving_pixels"](images=pixels)
    assert outputs["scores"].shape == (2, len(COLOURS))


def test_evaluate_scores_a_folder_through_the_export(trained, colours):
    result = ftk_cli("evaluate", str(trained), "--data", str(colours["test"]))
    assert result.exit_code == 0, result.output
    assert json_out(result)["accuracy"] == json.loads((trained / "metrics.json").read_text())["accuracy"]


def test_evaluate_scores_tfrecords_as_the_folder_they_came_from(trained, colours, tmp_path):
    written = ftk_cli("data", "to-tfrecord", "image_classification", "--data",
                      str(colours["test"]), "--output", str(tmp_path / "records"))
    assert written.exit_code == 0, written.output
    from_records = ftk_cli("evaluate", str(trained), "--data", str(tmp_path / "records"))
    assert from_records.exit_code == 0, from_records.output
    from_folder = ftk_cli("evaluate", str(trained), "--data", str(colours["test"]))
    assert json_out(from_records) == json_out(from_folder)


def test_csv_with_relative_paths_and_dict_backbone(tmp_path, colours):
    from ftk import testing

    rows = [(str(p.relative_to(colours["train"])), p.parent.name)
            for p in sorted(colours["train"].glob("*/*"))]
    table = colours["train"] / "train.csv"  # beside the images: paths relative to it
    with open(table, "w", newline="") as stream:
        csv.writer(stream).writerows([("image", "label"), *rows])
    try:
        backbone = testing.tiny_image_backbone(tmp_path / "maps", feature_maps=True)
        result = testing.smoke_run("image_classification", data=table, backbone=backbone,
                                   output_dir=tmp_path / "run", batch_size=16,
                                   backbone__image_size=32)
    finally:
        table.unlink()
    # Scored on the validation split: 10% of 14 images, one per colour.
    assert result.metrics["num_examples"] == len(COLOURS)


def _cli_error(*args: str) -> str:
    result = ftk_cli(*args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def _run_args(data: Path, backbone: str, run_dir: Path, *extra: str) -> list[str]:
    return ["run", "--task", "image_classification", "--data", str(data), "--backbone", backbone,
            "--epochs", "1", "--output", str(run_dir), "--set", "backbone.image_size=32", *extra]


def test_bad_inputs_get_clear_errors(tmp_path, tiny_image, colours):
    empty = write_colour_folder(tmp_path / "empty", 3, seed=2, classes=("red", "blue"))
    (empty / "green").mkdir()
    assert f"Class folder {empty / 'green'} holds no images" in _cli_error(
        *_run_args(empty, tiny_image, tmp_path / "r1"))

    single = write_colour_folder(tmp_path / "single", 3, seed=2, classes=("red",))
    assert "classification needs at least two" in _cli_error(*_run_args(single, tiny_image, tmp_path / "r2"))

    table = tmp_path / "rows.csv"
    table.write_text("image,label\n"
                     f"{colours['train'] / 'red' / 'red_0.png'},red\nmissing/photo.jpg,blue\n")
    output = _cli_error(*_run_args(table, tiny_image, tmp_path / "r3"))
    assert f"{table} line 3: {tmp_path / 'missing' / 'photo.jpg'}" in output

    # A row that does not fit the header is never read as some other label.
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("image,label\n"
                       f"{colours['train'] / 'red' / 'red_0.png'},red\n"
                       f"{colours['train'] / 'blue' / 'blue_0.png'},blue,red\n")
    output = _cli_error(*_run_args(shifted, tiny_image, tmp_path / "r5"))
    assert f"{shifted} line 3: more fields than the header has columns" in output

    unseen = write_colour_folder(tmp_path / "unseen", 2, seed=3, classes=("red", "purple_unseen"))
    output = _cli_error(*_run_args(colours["train"], tiny_image, tmp_path / "r4",
                                   "--test-data", str(unseen)))
    assert f"{unseen}: label 'purple_unseen' does not occur in the training data" in output
    assert not (tmp_path / "r4" / "export").exists()  # refused before training


def test_corrupt_and_non_image_files_are_named_or_skipped(tmp_path, tiny_image):
    data = write_colour_folder(tmp_path / "data", 6, seed=4, classes=("red", "blue"))
    corrupt = data / "red" / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    notes = data / "blue" / "notes.txt"
    notes.write_text("not an image")
    output = _cli_error(*_run_args(data, tiny_image, tmp_path / "r1"))
    assert str(notes) in output and "data.skip_bad_files" in output
    notes.unlink()
    output = _cli_error(*_run_args(data, tiny_image, tmp_path / "r2"))
    assert str(corrupt) in output and "cannot be decoded" in output

    notes.write_text("not an image")
    result = ftk_cli(*_run_args(data, tiny_image, tmp_path / "r3", "--set", "data.skip_bad_files=true"))
    assert result.exit_code == 0, result.output
    assert "Skipped 1 unreadable image(s)" in result.output
    assert "Skipped 1 non-image file(s)" in result.output


def test_images_declaring_too_many_pixels_are_refused_before_decoding(tmp_path, tiny_image):
    data = write_colour_folder(tmp_path / "data", 6, seed=4, classes=("red", "blue"))
    large = data / "red" / "large.png"
    Image.new("RGB", (120, 100), (220, 30, 30)).save(large)
    bomb = data / "blue" / "bomb.png"
    bomb.write_bytes(png_declaring(50_000, 50_000))
    limit = ("--set", "data.max_image_pixels=10000")
    output = _cli_error(*_run_args(data, tiny_image, tmp_path / "r1", *limit))
    assert "2 image(s) declare more than data.max_image_pixels (10000) pixels" in output
    assert f"{large} (120 x 100)" in output and str(bomb) in output
    assert not (tmp_path / "r1" / "config.yaml").exists()

    result = ftk_cli(*_run_args(data, tiny_image, tmp_path / "r2", *limit,
                                "--set", "data.skip_bad_files=true"))
    assert result.exit_code == 0, result.output
    assert "Skipped 2 image(s) over data.max_image_pixels" in result.output
    output = _cli_error(*_run_args(data, tiny_image, tmp_path / "r3",
                                   "--set", "data.max_image_pixels=0"))
    assert "data.max_image_pixels must be from 1 to 178956970" in output


def test_fixed_size_backbone_sets_the_size_and_refuses_another(tmp_path):
    from ftk import testing
    from ftk.hub.resolve import resolve_backbone
    from ftk.images import image_size

    backbone = resolve_backbone(testing.tiny_image_backbone(tmp_path / "fixed", image_size=48), {})
    assert backbone.kind == "image"
    assert image_size(backbone, {"backbone": {"image_size": None}}) == 48
    with pytest.raises(ftk.ConfigError, match="only takes 48x48 images"):
        image_size(backbone, {"backbone": {"image_size": 64}})


def test_text_backbone_is_refused(tmp_path, embedding, colours):
    output = _cli_error(*_run_args(colours["train"], embedding, tmp_path / "run"))
    assert "needs an image backbone" in output


@pytest.mark.slow
def test_quickstart_trains_on_demo_shapes_with_efficientnet(lite0_home, tmp_path, monkeypatch):
    """`ftk run --task image_classification` alone: demo data, default backbone."""
    monkeypatch.setenv("FTK_HOME", str(lite0_home))
    monkeypatch.chdir(tmp_path)
    result = ftk_cli("run", "--task", "image_classification")
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.split("Run directory: ")[1].splitlines()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 80
    assert metrics["accuracy"] >= 0.9, metrics
    demo = lite0_home / "demo" / "image_classification"
    assert sorted(p.name for p in (demo / "train").iterdir()) == ["circle", "square", "star", "triangle"]
    prediction = ftk.load(run_dir).predict([str(demo / "test" / "star" / "star_000.png")])[0]
    assert prediction["label"] == "star"


def test_demo_images_are_drawn_the_same_every_time():
    from ftk.plugins.image_classification.demo import draw_example

    first = np.asarray(draw_example("star", np.random.default_rng(7)))
    again = np.asarray(draw_example("star", np.random.default_rng(7)))
    other = np.asarray(draw_example("star", np.random.default_rng(8)))
    assert first.shape == (128, 128, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
