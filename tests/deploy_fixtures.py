"""Small trained runs of each built-in task, and servers of them, shared by the
deploy tests (tests/deploy/); loaded by tests/conftest.py as a pytest plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ftk
from helpers import ftk_server


class Trained:
    def __init__(self, run_dir: Path, test_data: Path, inputs: list, main: str):
        self.run_dir, self.test_data, self.inputs, self.main = run_dir, test_data, inputs, main
        self.metrics = json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="package")
def text(bert, topics, tmp_path_factory) -> Trained:
    result = ftk.run(task="text_classification", data=topics["train"], test_data=topics["test"],
                     backbone=bert, epochs=6, batch_size=8,
                     output_dir=tmp_path_factory.mktemp("text") / "run",
                     set={"train.learning_rate": 0.05, "backbone.max_seq_length": 32})
    texts = [line.rsplit(",", 1)[0] for line in topics["test"].read_text().splitlines()[1:]]
    return Trained(result.run_dir, topics["test"], texts, "accuracy")


@pytest.fixture(scope="package")
def image(tiny_image, colours, tmp_path_factory) -> Trained:
    result = ftk.run(task="image_classification", data=colours["train"],
                     test_data=colours["test"], backbone=tiny_image, epochs=4, batch_size=8,
                     output_dir=tmp_path_factory.mktemp("image") / "run",
                     set={"backbone.image_size": 32, "train.learning_rate": 0.05})
    pictures = sorted(str(p) for p in Path(colours["test"]).rglob("*") if p.is_file())
    return Trained(result.run_dir, colours["test"], pictures[:12], "accuracy")


@pytest.fixture(scope="package")
def detection(tmp_path_factory) -> Trained:
    from ftk import testing
    from ftk.plugins.detection.demo import write_split

    folder = tmp_path_factory.mktemp("detection")
    write_split(folder / "train", 0, 16)
    write_split(folder / "test", 2, 6)
    maps = testing.tiny_image_backbone(folder / "maps", feature_maps=True)
    result = ftk.run(task="detection", data=folder / "train" / "annotations.json",
                     test_data=folder / "test" / "annotations.json", backbone=maps,
                     epochs=3, batch_size=8, output_dir=folder / "run",
                     set={"backbone.image_size": 64})
    pictures = sorted(str(p) for p in (folder / "test" / "images").iterdir())
    return Trained(result.run_dir, folder / "test" / "annotations.json", pictures, "map")


# Servers of the runs above, shared by the server and page tests.
@pytest.fixture(scope="package")
def text_server(text):
    # A batch limit below the concurrent test's clients, so batches fill;
    # small request limits, so the oversize requests are small.
    with ftk_server(text.run_dir, "--name", "topics", "--max-batch", "8",
                    "--max-instances", "16", "--max-body-mb", "0.01") as (url, log):
        yield url, log


@pytest.fixture(scope="package")
def image_server(image):
    with ftk_server(image.run_dir, "--name", "colours") as (url, log):
        yield url, log


@pytest.fixture(scope="package")
def detection_server(detection):
    with ftk_server(detection.run_dir, "--name", "shapes") as (url, log):
        yield url, log
