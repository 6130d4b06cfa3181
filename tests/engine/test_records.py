"""TFRecords: `ftk data to-tfrecord` for every built-in task, and runs,
evaluations and errors on streamed records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ftk
from conftest import write_topic_csv
from helpers import ftk_cli, json_out, write_colour_folder


def _task(name: str, **data: object):
    from ftk.registry import build_registry

    task_type = build_registry().task(name)
    config = ftk.default_config(name)
    config["data"].update(data)
    return task_type(config)


def _round_trip(task, path: str, output: Path, shards: int):
    """What the records hold, by input, against what the task reads from `path`."""
    from ftk.data import read_examples

    manifest = ftk.to_tfrecord(task.name, path, output, shards=shards)
    examples = task.read_data(path)
    task.space = task.build_target_space(examples)
    expected = task.encode_targets(examples)
    records = read_examples(task, str(output))
    got = [(raw, target) for inputs, targets in records.batches(5)
           for raw, target in zip(inputs, _rows(targets, len(inputs)))]
    return manifest, examples, expected, got


def _rows(targets, count):
    if isinstance(targets, dict):
        return [{k: v[i] for k, v in targets.items()} for i in range(count)]
    return list(targets)


def test_text_records_hold_each_text_and_its_class(tmp_path):
    data = write_topic_csv(tmp_path / "topics.csv", count=12)
    task = _task("text_classification")
    manifest, examples, expected, got = _round_trip(task, str(data), tmp_path / "records", 3)
    assert manifest["examples"] == 24 and [f["examples"] for f in manifest["files"]] == [8, 8, 8]
    assert manifest["targets"]["classes"] == sorted({label for label in examples.targets})
    by_text = {text: target for text, target in zip(examples.inputs, expected)}
    assert sorted(raw.decode() for raw, _ in got) == sorted(examples.inputs)
    assert all(by_text[raw.decode()] == target for raw, target in got)


def test_image_records_hold_the_file_bytes(tmp_path):
    data = write_colour_folder(tmp_path / "images", 3, seed=0, classes=("red", "blue"))
    task = _task("image_classification")
    _, examples, expected, got = _round_trip(task, str(data), tmp_path / "records", 2)
    by_bytes = {Path(path).read_bytes(): target for path, target in zip(examples.inputs, expected)}
    assert len(got) == len(examples) == 6
    assert all(by_bytes[raw] == target for raw, target in got)


def test_detection_records_hold_image_bytes_and_packed_boxes(tmp_path):
    from ftk.plugins.detection.demo import write_split

    write_split(tmp_path / "shapes", 0, 5)
    path = str(tmp_path / "shapes" / "annotations.json")
    task = _task("detection")
    manifest, examples, expected, got = _round_trip(task, path, tmp_path / "records", 2)
    assert manifest["target_structure"]["shape"] == list(expected.shape[1:])
    by_bytes = {Path(p).read_bytes(): boxes for p, boxes in zip(examples.inputs, expected)}
    assert len(got) == 5
    assert all(np.array_equal(by_bytes[raw], boxes) for raw, boxes in got)


@pytest.fixture(scope="module")
def text_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_records")
    train = write_topic_csv(root / "train.csv", count=30, seed=0)
    test = write_topic_csv(root / "test.csv", count=8, seed=1)
    for name, source in (("train", train), ("test", test)):
        result = ftk_cli("data", "to-tfrecord", "text_classification", "--data", source,
                         "--output", root / name, "--shards", "4")
        assert result.exit_code == 0, result.output
    return {"csv": {"train": train, "test": test}, "records": {"train": root / "train",
                                                               "test": root / "test"}}


@pytest.mark.e2e
def test_a_run_streams_records_and_scores_them_as_their_source(text_records, embedding, tmp_path,
                                                                caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ftk")
    records = text_records["records"]
    result = ftk.run(task="text_classification", data=str(records["train"]),
                     test_data=str(records["test"]), backbone=embedding, epochs=2, batch_size=8,
                     output_dir=str(tmp_path / "run"))
    assert "Streaming 54 training examples from 4 TFRecord file(s)" in caplog.text
    assert "every 10th record" in caplog.text and "(6 examples)" in caplog.text
    assert result.metrics["split"] == "test" and result.metrics["num_examples"] == 16
    # Streamed scoring gives the metrics that scoring the CSV they came from gives.
    from_csv = json_out(ftk_cli("evaluate", tmp_path / "run", "--data", text_records["csv"]["test"]))
    from_records = json_out(ftk_cli("evaluate", tmp_path / "run", "--data", records["test"]))
    assert from_records == from_csv


def test_records_of_other_classes_are_refused_as_validation(text_records, embedding, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("text,label\nan oven,kitchen\na goal,pitch\n", encoding="utf-8")
    assert ftk_cli("data", "to-tfrecord", "text_classification", "--data", other, "--output",
                   tmp_path / "other").exit_code == 0
    result = ftk_cli("run", "--task", "text_classification", "--data",
                     text_records["records"]["train"], "--val-data", tmp_path / "other",
                     "--backbone", embedding, "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert f"{tmp_path / 'other'} was written with other targets (2 classes)" in result.output


def test_a_test_set_is_written_in_the_training_records_classes(text_records, tmp_path):
    """A set holding one class only, encoded in the training classes; a label
    the training data lacks is named."""
    train = Path(text_records["records"]["train"])
    one_class = tmp_path / "cooking.csv"
    one_class.write_text("text,label\nbake the flour,cooking\nbutter and garlic,cooking\n",
                         encoding="utf-8")
    result = ftk_cli("data", "to-tfrecord", "text_classification", "--data", one_class,
                     "--output", tmp_path / "test", "--targets-of", train)
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "test" / "manifest.json").read_text())
    assert written["targets"] == json.loads((train / "manifest.json").read_text())["targets"]
    from ftk.records import read_records

    targets = [int(t) for _, batch in read_records(str(tmp_path / "test")).batches(4) for t in batch]
    assert targets == [written["targets"]["classes"].index("cooking")] * 2
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,label\na storm,weather\n", encoding="utf-8")
    result = ftk_cli("data", "to-tfrecord", "text_classification", "--data", unknown,
                     "--output", tmp_path / "unknown", "--targets-of", train)
    assert result.exit_code == 1 and "label 'weather' does not occur in the training data" \
        in result.output


def test_records_of_another_task_or_without_manifest_are_named(text_records, tmp_path):
    result = ftk_cli("run", "--task", "image_classification", "--data",
                     text_records["records"]["train"], "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert "holds text_classification records; task image_classification cannot read them" \
        in result.output
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(next(Path(text_records["records"]["train"]).glob("*.tfrecord")), bare)
    result = ftk_cli("run", "--task", "text_classification", "--data",
                     str(bare / "*.tfrecord"), "--output", tmp_path / "run2")
    assert result.exit_code == 1
    assert f"{bare / 'manifest.json'} is missing" in result.output


def test_to_tfrecord_never_replaces_something_else(text_records, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep", encoding="utf-8")
    result = ftk_cli("data", "to-tfrecord", "text_classification", "--data",
                     text_records["csv"]["test"], "--output", precious)
    assert result.exit_code == 1 and "is not earlier TFRecord output" in result.output
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_a_glob_reads_some_files_of_a_folder(text_records):
    from ftk.records import read_records

    folder = Path(text_records["records"]["train"])
    manifest = json.loads((folder / "manifest.json").read_text())
    some = read_records(str(folder / "data-0000[01]-*.tfrecord"))
    assert len(some) == sum(f["examples"] for f in manifest["files"][:2])
    assert sum(1 for _ in some.dataset()) == len(some)


def test_workers_stream_disjoint_shares_and_validation_streams_its_count(text_records):
    from ftk.records import read_records

    source = read_records(str(text_records["records"]["train"]))
    texts = lambda dataset: [raw.numpy() for raw, _ in dataset]  # noqa: E731
    shares = [texts(source.dataset(workers=2, worker=i)) for i in (0, 1)]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(texts(source.dataset()))
    train, validation = source.split(0.1)
    held_out, kept = texts(validation.dataset()), texts(train.dataset())
    assert (len(held_out), len(kept)) == (len(validation), len(train))
    assert sorted(held_out + kept) == sorted(texts(source.dataset()))


@pytest.mark.parametrize("total, every", [(54, 10), (7, 2), (1000, 3)])
def test_a_validation_stride_counts_what_it_streams(tmp_path, total, every):
    from ftk.records import RecordShard, RecordSource, _multiples

    sizes = [total // 3, total // 3, total - 2 * (total // 3)]
    starts = np.cumsum([0, *sizes[:-1]])
    shards = [RecordShard("", size, int(start)) for size, start in zip(sizes, starts)]
    source = RecordSource("x", {"targets": {}}, shards)
    train, validation = source.split(1 / every)
    assert len(validation) == len(range(0, total, every))
    assert len(train) + len(validation) == total
    assert _multiples(3, 3, every) == 0 and _multiples(0, 1, every) == 1
