"""Frozen-backbone feature caching: same training as without it, and the auto rules."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import ftk
from helpers import ftk_cli

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API


def _history(run_dir: Path) -> dict[str, np.ndarray]:
    with open(run_dir / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]
            if key != "epoch_seconds"}


def _assert_same_training(first: Path, second: Path) -> None:
    """Same per-epoch losses and metrics, same test metrics, same exported head."""
    a, b = _history(first), _history(second)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (first, second)]
    for key, value in metrics[0].items():
        if isinstance(value, float):
            assert metrics[1][key] == pytest.approx(value, abs=1e-4), key


def _cli_run(*args: str) -> str:
    result = ftk_cli("run", *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_cached_text_training_matches_uncached(tmp_path, bert, topics, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    runs = {}
    for setting in ("false", "auto"):
        runs[setting] = ftk.run(
            task="text_classification", data=str(topics["train"]), test_data=str(topics["test"]),
            backbone=bert, epochs=2, output_dir=tmp_path / setting,
            set=[f"train.cache_features={setting}", "train.learning_rate=0.05"])
    out = caplog.text
    assert "Feature cache on: the backbone is frozen and the inputs repeat every epoch." in out
    # The MiniLM-style head reads the mean-pooled vector only; per-token outputs stay out.
    assert "examples/s): mean_pooled_output, 0.0 MB in memory." in out
    assert "validation examples" in out  # validation_split carves one out; it is cached too
    _assert_same_training(runs["false"].run_dir, runs["auto"].run_dir)
    texts = ["goal match team score", "oven recipe bake flour"]
    predictions = [ftk.load(runs[s].run_dir).predict(texts) for s in ("false", "auto")]
    for cached, uncached in zip(predictions[1], predictions[0]):
        assert cached["label"] == uncached["label"]
        assert cached["score"] == pytest.approx(uncached["score"], abs=1e-4)
    assert not (runs["auto"].run_dir / "cache").exists()


def test_disk_cache_is_a_snapshot_in_the_run_folder_and_trains_the_same(tmp_path, bert, topics,
                                                                       monkeypatch, caplog):
    from ftk.training import feature_cache

    caplog.set_level(logging.INFO, logger="ftk")
    saved = []
    original = feature_cache._save
    monkeypatch.setattr(feature_cache, "_save", lambda batches, first, path: (
        original(batches, first, path), saved.append(sorted(p.name for p in path.iterdir()))))
    # A batch larger than the training set keeps the disk cache's shuffle buffer
    # whole, so its batches are those of the in-memory cache.
    common = ["train.learning_rate=0.05", "train.batch_size=128"]
    for name, extra in (("memory", []), ("disk", ["train.cache_memory_mb=0"])):
        ftk.run(task="text_classification", data=str(topics["train"]), backbone=bert, epochs=2,
                output_dir=tmp_path / name, set=[*common, *extra])
    out = caplog.text
    assert f"on disk in {tmp_path / 'disk' / 'cache' / 'train'}." in out
    assert saved and "snapshot.metadata" in saved[0]
    assert not (tmp_path / "disk" / "cache").exists()
    _assert_same_training(tmp_path / "memory", tmp_path / "disk")


def test_cached_image_training_matches_uncached(tmp_path, tiny_image, three_colours):
    common = ["--data", str(three_colours["train"]), "--test-data", str(three_colours["test"]),
              "--backbone", tiny_image, "--epochs", "3", "--batch-size", "8",
              "--set", "backbone.image_size=32", "--set", "train.learning_rate=0.1",
              "--set", "data.augment=false"]
    outputs = {setting: _cli_run("--task", "image_classification", *common,
                                 "--output", str(tmp_path / setting),
                                 "--set", f"train.cache_features={setting}")
               for setting in ("false", "auto")}
    assert "Feature cache off: train.cache_features is false." in outputs["false"]
    assert "Feature cache on" in outputs["auto"]
    assert "Cached backbone features of 21 train examples" in outputs["auto"]
    _assert_same_training(tmp_path / "false", tmp_path / "auto")


def test_auto_rules_skip_augmented_trainable_and_single_epoch_runs(tmp_path, tiny_image, three_colours):
    common = ["--task", "image_classification", "--data", str(three_colours["train"]),
              "--backbone", tiny_image, "--batch-size", "8", "--set", "backbone.image_size=32"]
    augmented = _cli_run(*common, "--epochs", "2", "--output", str(tmp_path / "augmented"))
    assert "Feature cache off: train-time augmentation gives new inputs every epoch" in augmented
    assert "Cached backbone features" not in augmented
    trainable = _cli_run(*common, "--epochs", "2", "--output", str(tmp_path / "trainable"),
                         "--set", "data.augment=false", "--set", "backbone.trainable=true")
    assert "Feature cache off: the backbone trains in this phase." in trainable
    single = _cli_run(*common, "--epochs", "1", "--output", str(tmp_path / "single"),
                      "--set", "data.augment=false")
    assert "Feature cache off: a single epoch" in single
    forced = _cli_run(*common, "--epochs", "1", "--output", str(tmp_path / "forced"),
                      "--set", "data.augment=false", "--set", "train.cache_features=true")
    assert "Feature cache on" in forced


def test_two_phase_run_caches_the_head_phase_only(tmp_path, tiny_image, three_colours):
    output = _cli_run("--task", "image_classification", "--data", str(three_colours["train"]),
                      "--backbone", tiny_image, "--batch-size", "8", "--epochs", "4",
                      "--set", "backbone.image_size=32", "--set", "data.augment=false",
                      "--set", "backbone.trainable=true", "--set", "train.head_epochs=2",
                      "--output", str(tmp_path / "run"))
    on = output.index("Feature cache on")
    off = output.index("Feature cache off: the backbone trains in this phase.")
    assert on < output.index("Cached backbone features") < off
    assert len(_history(tmp_path / "run")["loss"]) == 4


def test_forcing_the_cache_with_augmentation_is_a_clear_error(tmp_path, tiny_image, three_colours):
    result = ftk_cli("run", "--task", "image_classification", "--data", str(three_colours["train"]),
                     "--backbone", tiny_image, "--output", str(tmp_path / "run"),
                     "--set", "train.cache_features=true")
    assert result.exit_code == 1
    assert "train.cache_features is true, but train-time augmentation is on" in result.output
    assert "Set data.augment: false" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_cache_features_takes_auto_true_or_false(tmp_path, topics):
    result = ftk_cli("run", "--task", "text_classification", "--data", str(topics["train"]),
                     "--set", "train.cache_features=always", "--output", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "'train.cache_features'" in result.output
    assert "must be one of auto, true, false. Received: 'always'" in result.output


def test_cached_detection_training_matches_uncached(tmp_path):
    from ftk import testing
    from ftk.plugins.detection.demo import write_split

    write_split(tmp_path / "train", 0, 8)
    backbone = testing.tiny_image_backbone(tmp_path / "maps", feature_maps=True)
    outputs = {setting: _cli_run(
        "--task", "detection", "--data", str(tmp_path / "train" / "annotations.json"),
        "--backbone", backbone, "--epochs", "2", "--batch-size", "4",
        "--set", "backbone.image_size=64", "--set", "data.augment=false",
        "--set", "data.validation_split=0.25", "--set", f"train.cache_features={setting}",
        "--output", str(tmp_path / setting)) for setting in ("false", "true")}
    # The FCOS head reads the three feature maps, not the pooled vector.
    assert "examples/s): stride_16, stride_32, stride_8, " in outputs["true"]
    _assert_same_training(tmp_path / "false", tmp_path / "true")
