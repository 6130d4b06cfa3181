"""Config merging and validation, through `ftk config`, `ftk run` and `ftk.run`."""

from __future__ import annotations

import pytest
import yaml

import ftk
from ftk import config as config_lib
from helpers import ftk_cli


def test_ftk_config_prints_the_full_default_config():
    result = ftk_cli("config", "text_classification")
    assert result.exit_code == 0
    printed = yaml.safe_load(result.stdout)
    assert printed == ftk.default_config("text_classification")
    assert printed["task"] == "text_classification"
    assert printed["data"]["text_column"] == "text"      # a task key
    assert printed["train"]["schedule"] == "cosine"      # an engine key
    assert list(printed) == ["task", "data", "backbone", "head", "loss", "train", "output_dir"]


def test_merge_order_defaults_files_sets_then_flags(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("train: {epochs: 2, batch_size: 4, learning_rate: 0.1}\n")
    second = tmp_path / "b.yaml"
    second.write_text("train: {epochs: 3}\nhead: {dropout: 0.3}\n")
    layers = [(str(first), config_lib.load_yaml_file(first)),
              (str(second), config_lib.load_yaml_file(second)),
              ("--set", config_lib.parse_set("train.epochs=5")),
              ("--set", config_lib.parse_set("train.learning_rate=3e-4")),
              ("flags", {"train": {"epochs": 7}})]
    merged = config_lib.resolve({"head": {"dropout": 0.1}}, {}, layers)
    assert merged["train"] == {**config_lib.ENGINE_DEFAULTS["train"], "epochs": 7,
                               "batch_size": 4, "learning_rate": 3e-4}
    assert merged["head"]["dropout"] == 0.3


def _run_error(*args):
    result = ftk_cli("run", "--task", "text_classification", *args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    return result.stderr


def test_unknown_key_names_full_path_and_nearest(tmp_path):
    assert ("Unknown config key 'train.learnig_rate' in --set train.learnig_rate=0.1. "
            "Did you mean 'train.learning_rate'?") in _run_error("--set", "train.learnig_rate=0.1")
    config = tmp_path / "c.yaml"
    config.write_text("backbone:\n  max_seq_len: 64\n")
    message = _run_error("--config", config)
    assert f"Unknown config key 'backbone.max_seq_len' in {config}" in message
    assert "Did you mean 'backbone.max_seq_length'?" in message


def test_wrong_type_names_path_expected_and_received():
    message = _run_error("--set", "train.epochs=many")
    assert "Config key 'train.epochs' in --set train.epochs=many must be an integer. " \
           "Received: 'many' (str)" in message
    message = _run_error("--set", "train.optimizer=adagrad")
    assert "must be one of adamw, adam, sgd. Received: 'adagrad'" in message
    with pytest.raises(ftk.ConfigError, match="'loss.class_weights' .* must be a string or a mapping"):
        ftk.run(task="text_classification", set={"loss.class_weights": [1, 2]})


def test_malformed_yaml_names_file_and_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 3\n  batch_size: [32\n")
    message = _run_error("--config", config)
    assert f"Malformed YAML in {config} line" in message
    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    assert "must hold a mapping of sections" in _run_error("--config", not_a_mapping)


def test_set_needs_key_equals_value():
    assert "--set takes KEY=VALUE" in _run_error("--set", "train.epochs")


def test_missing_config_file_is_named(tmp_path):
    assert f"Config file {tmp_path / 'nope.yaml'} does not exist" in _run_error(
        "--config", tmp_path / "nope.yaml")


def test_task_can_come_from_a_config_file(tmp_path, embedding, topics):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"task": "nonexistent_task"}))
    result = ftk_cli("run", "--config", config, "--data", topics["train"])
    assert "Unknown task 'nonexistent_task'" in result.stderr


def test_null_is_refused_where_a_value_is_needed():
    assert "Config key 'train.epochs' in --set train.epochs= must be an integer. Received: null" in \
        _run_error("--set", "train.epochs=")


def test_task_choices_are_checked_before_anything_is_written(tmp_path, topics, embedding):
    message = _run_error("--data", topics["train"], "--backbone", embedding, "--output",
                         tmp_path / "run", "--set", "head.pooling=max")
    assert "'head.pooling' in --set head.pooling=max must be one of auto, pooled, cls, mean" in message
    assert not (tmp_path / "run").exists()


def test_monitor_and_split_are_checked(tmp_path, topics, embedding):
    message = _run_error("--data", topics["train"], "--backbone", embedding, "--output",
                         tmp_path / "a", "--set", "train.monitor=val_acc")
    assert ("train.monitor is 'val_acc', but task 'text_classification' does not say whether "
            "acc is better lower or higher") in message
    assert "accuracy (max)" in message
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    message = _run_error("--data", topics["train"], "--backbone", embedding, "--output",
                         tmp_path / "b", "--set", "data.validation_split=-0.1")
    assert "data.validation_split must be at least 0 and below 1. Received: -0.1" in message


@pytest.mark.parametrize("task, assignment, message", [
    ("text_classification", "train.epochs=0", "train.epochs must be at least 1. Received: 0"),
    ("text_classification", "train.learning_rate=.inf",
     "train.learning_rate must be a finite number above 0. Received: inf"),
    ("text_classification", "train.batch_size=-4", "train.batch_size must be at least 1."),
    ("text_classification", "backbone.trainable_patterns=['(']",
     "backbone.trainable_patterns must be a list of valid regular expressions."),
    ("text_classification", "head.dropout=1.5", "head.dropout must be at least 0 and below 1."),
    ("text_classification", "backbone.max_seq_length=2", "backbone.max_seq_length must be at least 3."),
    ("image_classification", "data.augmentation.crop_area=0",
     "data.augmentation.crop_area must be above 0 and at most 1."),
    ("image_classification", "backbone.image_size=4", "backbone.image_size must be at least 8"),
    ("detection", "head.iou_threshold=2", "head.iou_threshold must be between 0 and 1."),
    ("detection", "data.augmentation.scale_min=0", "data.augmentation.scale_min must be above 0"),
])
def test_impossible_values_are_refused_before_any_data_is_read(task, assignment, message, tmp_path):
    result = ftk_cli("run", "--task", task, "--data", tmp_path / "missing.csv", "--set", assignment,
                     "--output", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr  # not the missing data file
    assert not (tmp_path / "run").exists()


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for index, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[index]
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    message = _run_error("--config", bomb, "--output", tmp_path / "run")
    assert f"Malformed YAML in {bomb}" in message and "more than 50 aliases" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ['!!python/object/apply:os.system ["touch {flag}"]',
                                   "!!python/name:os.system", "!custom {{epochs: 2}}"])
def test_yaml_tags_never_construct_objects(tmp_path, value):
    flag = tmp_path / "ran"
    config = tmp_path / "tagged.yaml"
    config.write_text(f"train:\n  epochs: {value.format(flag=flag)}\n")
    message = _run_error("--config", config, "--output", tmp_path / "run")
    assert f"Malformed YAML in {config} line 2" in message
    assert "could not determine a constructor for the tag" in message
    assert not flag.exists() and not (tmp_path / "run").exists()


def test_a_huge_config_file_is_refused(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    assert f"Config file {huge} is {huge.stat().st_size} bytes" in _run_error("--config", huge)


def test_a_few_aliases_still_work(tmp_path):
    from ftk import config as config_lib

    path = tmp_path / "ok.yaml"
    path.write_text("train: &t {epochs: 3}\nhead: {dropout: 0.2}\n")
    assert config_lib.load_yaml_file(path)["train"] == {"epochs": 3}
