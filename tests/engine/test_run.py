"""End-to-end runs through the CLI and the Python API on a tiny offline backbone."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest
import yaml

import ftk
from helpers import ftk_cli, interrupt_after_epoch, json_out, optimizer_steps

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

FAST = ["--set", "train.learning_rate=0.05"]


def test_cli_run_writes_the_run_directory(embedding, topics, tmp_path):
    run_dir = tmp_path / "run"
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--test-data", topics["test"], "--backbone", embedding, "--epochs", 15,
                     "--batch-size", 8, "--output", run_dir, *FAST)
    assert result.exit_code == 0, result.output
    assert f"Run directory: {run_dir}" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 20
    assert metrics["accuracy"] >= 0.9
    assert set(metrics["per_class"]) == {"cooking", "sports"}
    assert (run_dir / "labels.txt").read_text().split() == ["cooking", "sports"]
    with open(run_dir / "history.csv") as stream:
        history = list(csv.DictReader(stream))
    assert len(history) == 15 and {"loss", "val_loss", "accuracy"} <= set(history[0])
    confusion = list(csv.reader(open(run_dir / "confusion_matrix.csv")))
    assert confusion[0] == ["true \\ predicted", "cooking", "sports"]
    for name in ("plots/training_curves.png", "plots/confusion_matrix.png",
                 "export/saved_model.pb", "export/ftk.json", "checkpoints/last/state.json",
                 "checkpoints/best/state.json"):
        assert (run_dir / name).exists(), name
    assert any((run_dir / "logs").rglob("events.out.tfevents.*"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 15 and saved["backbone"]["handle"] == embedding
    assert not list(run_dir.rglob(".*tmp*")), "temporary files left behind"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("metrics.json", "config.yaml", "export"):
        assert (run_dir / name).stat().st_mode & 0o777 & ~umask == (
            0o777 if name == "export" else 0o666) & ~umask, name


@pytest.fixture(scope="module")
def trained(embedding, topics, tmp_path_factory):
    return ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                   epochs=15, batch_size=8, set={"train.learning_rate": 0.05},
                   output_dir=tmp_path_factory.mktemp("runs") / "trained")


def test_api_predict_and_evaluate(trained, topics):
    model = ftk.load(trained.run_dir)
    predictions = model.predict(["goal team win score league match", "bake flour sugar oven pan"])
    assert [p["label"] for p in predictions] == ["sports", "cooking"]
    assert set(predictions[0]["scores"]) == {"cooking", "sports"}
    assert abs(sum(predictions[0]["scores"].values()) - 1) < 1e-4
    metrics = ftk.evaluate(trained.run_dir, data=topics["test"])
    assert metrics["accuracy"] >= 0.9 and metrics["num_examples"] == 20
    same = ftk.evaluate(trained.run_dir / "export", data=topics["test"])
    assert same["accuracy"] == metrics["accuracy"]


def test_cli_predict_and_evaluate_print_json(trained, topics, tmp_path):
    result = ftk_cli("predict", trained.run_dir, "goal team win score league match")
    assert result.exit_code == 0, result.output
    assert json_out(result)[0]["label"] == "sports"
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nbake flour sugar oven\nreferee stadium goal\n")
    assert [p["label"] for p in json_out(ftk_cli("predict", trained.run_dir, texts))] == [
        "cooking", "sports"]
    result = ftk_cli("evaluate", trained.run_dir, "--data", topics["test"])
    assert result.exit_code == 0 and json_out(result)["accuracy"] >= 0.9


def test_export_copies_a_servable_saved_model(trained, tmp_path):
    import tensorflow as tf

    result = ftk_cli("export", trained.run_dir, "--output", tmp_path / "served")
    assert result.exit_code == 0, result.output
    served = tf.saved_model.load(str(tmp_path / "served"))
    outputs = served.signatures["serving_default"](inputs=tf.constant(["bake flour sugar"]))
    assert outputs["label"].numpy().tolist() == [b"cooking"]
    assert outputs["scores"].shape == (1, 2)


def test_export_never_replaces_something_else(trained, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = ftk_cli("export", trained.run_dir, "--output", precious)
    assert result.exit_code == 1 and "is not an earlier ftk export" in result.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
    assert ftk_cli("export", trained.run_dir, "--output", tmp_path / "e").exit_code == 0
    assert ftk_cli("export", trained.run_dir, "--output", tmp_path / "e").exit_code == 0
    (tmp_path / "empty").mkdir()
    result = ftk_cli("export", trained.run_dir, "--format", "tflite", "--output", tmp_path / "empty")
    assert result.exit_code == 1 and "one file ending in .tflite" in result.stderr


def test_python_export_survives_other_api_calls(trained, tmp_path):
    ftk.load(trained.run_dir)  # imports the serving code; ftk.export must stay the function
    assert ftk.export(trained.run_dir, "saved_model", tmp_path / "copy") == tmp_path / "copy"
    assert (tmp_path / "copy" / "saved_model.pb").exists()


def test_same_seed_reproduces_the_run(embedding, topics, tmp_path):
    runs = [ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                    epochs=2, batch_size=8, output_dir=tmp_path / f"run{i}") for i in range(2)]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[0].metrics["accuracy"] == runs[1].metrics["accuracy"]


def test_config_yaml_reproduces_the_run(trained, tmp_path):
    again = ftk_cli("run", "--config", trained.run_dir / "config.yaml", "--output", tmp_path / "again")
    assert again.exit_code == 0, again.output
    replay = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert replay["accuracy"] == trained.metrics["accuracy"]
    assert replay["confusion_matrix"] == trained.metrics["confusion_matrix"]


def test_resume_continues_from_the_last_checkpoint(embedding, topics, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                epochs=4, batch_size=8, output_dir=run_dir)
    assert json.loads((run_dir / "checkpoints/last/state.json").read_text())["epoch"] == 2
    assert optimizer_steps(run_dir) == 18
    assert not (run_dir / "metrics.json").exists()

    result = ftk_cli("run", "--output", run_dir, "--resume")
    assert result.exit_code == 0, result.output
    assert "Resuming from epoch 2 of 4" in result.stderr
    assert optimizer_steps(run_dir) == 36  # optimizer state restored, not restarted
    with open(run_dir / "history.csv") as stream:
        assert [row["epoch"] for row in csv.DictReader(stream)] == ["0", "1", "2", "3"]
    full = ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                   epochs=4, batch_size=8, output_dir=tmp_path / "full")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert abs(resumed["accuracy"] - full.metrics["accuracy"]) <= 0.25


def test_non_empty_output_is_refused_and_kept(trained, embedding, topics):
    before = (trained.run_dir / "metrics.json").read_text()
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--backbone", embedding, "--output", trained.run_dir)
    assert result.exit_code == 1
    assert "is not empty" in result.stderr and "--resume" in result.stderr
    assert (trained.run_dir / "metrics.json").read_text() == before


def test_nan_loss_stops_with_a_clear_message(embedding, topics, tmp_path):
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--backbone", embedding, "--epochs", 3, "--output", tmp_path / "run",
                     "--set", "train.learning_rate=1e38", "--set", "train.schedule=constant",
                     "--set", "train.optimizer=sgd")
    assert result.exit_code == 1
    assert re.search(r"loss became NaN or Inf at epoch \d+, batch \d+\. Lower train.learning_rate",
                     result.stderr)
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_early_stopping_ends_the_run(embedding, topics, tmp_path):
    result = ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                     epochs=30, batch_size=8, output_dir=tmp_path / "run",
                     set={"train.early_stopping_patience": 1, "train.learning_rate": 1e-30,
                          "train.schedule": "constant"})
    # Updates of 1e-30 leave float32 weights as they are: no improvement after epoch 1.
    assert len(result.history["loss"]) == 2


def test_the_terminal_shows_ftk_lines_without_tensorflow_start_up_noise(embedding, topics,
                                                                        tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ftk.cli", "run", "--task", "text_classification", "--data",
         str(topics["train"]), "--backbone", embedding, "--epochs", "1", "--output",
         str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Training text_classification on 72 examples (2 classes)" in result.stderr
    assert "Epoch 1/1: loss" in result.stderr
    for noise in ("cuInit", "oneDNN", "absl::InitializeLog", "cuda drivers"):
        assert noise not in result.stderr, result.stderr


def test_a_python_run_can_be_silenced(embedding, topics, tmp_path, capfd):
    import logging

    logger = logging.getLogger("ftk")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        ftk.run(task="text_classification", data=topics["train"], backbone=embedding, epochs=2,
                output_dir=tmp_path / "run")
    finally:
        logger.setLevel(level)
    captured = capfd.readouterr()
    assert "Training" not in captured.err + captured.out
    assert "Epoch" not in captured.err + captured.out


def test_a_failed_resume_leaves_the_run_as_it_was(embedding, topics, tmp_path):
    from ftk import testing

    run_dir = tmp_path / "run"
    ftk.run(task="text_classification", data=topics["train"], backbone=embedding, epochs=1,
            output_dir=run_dir)
    saved = {name: (run_dir / name).read_bytes() for name in ("config.yaml", "labels.txt")}
    other = testing.write_text_csv(tmp_path / "other.csv", [("sunny and warm", "weather"),
                                                            ("rain all day", "weather"),
                                                            ("a new phone", "technology"),
                                                            ("faster chips", "technology")] * 4)
    result = ftk_cli("run", "--task", "text_classification", "--data", other, "--backbone",
                     embedding, "--epochs", 2, "--output", run_dir, "--resume")
    assert result.exit_code == 1
    assert f"Cannot resume {run_dir}: its labels.txt differs from what the data gives now" \
        in result.stderr
    assert {name: (run_dir / name).read_bytes() for name in saved} == saved


def test_a_hub_handle_that_cannot_be_fetched_names_the_handle_and_what_to_do(topics, tmp_path,
                                                                             monkeypatch):
    import socket

    with socket.socket() as probe:  # a free loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # loopback only, never through a proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    handle = f"http://127.0.0.1:{port}/google/nnlm-en-dim50/2"
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--backbone", handle, "--output", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Cannot load backbone {handle}:" in result.stderr
    assert "--backbone PATH" in result.stderr and "TFHUB_CACHE_DIR" in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_broken_backbone_folder_is_named(topics, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--backbone", broken, "--output", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Cannot load backbone {broken}" in result.stderr
    assert "complete SavedModel" in result.stderr
