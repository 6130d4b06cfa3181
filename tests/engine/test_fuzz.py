"""Property-based tests: whatever a config, a data file or an annotation holds,
ftk gives a result or an `ftk.FtkError`, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ftk
from ftk import config as config_lib
from ftk.plugins.detection import coco, voc
from ftk.plugins.text_classification import TextClassification
from ftk.plugins.text_classification.reader import read_text_data

EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = ["train.epochs", "train.batch_size", "train.learning_rate", "train.monitor",
        "train.cache_features", "train.mixed_precision", "data.validation_split", "data.format",
        "backbone.trainable", "backbone.trainable_patterns", "head.dropout", "head.pooling",
        "loss.class_weights", "loss.label_smoothing", "train.nonsense", "head", "train"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
DETECTION_DATA = {"image_dir": None, "skip_bad_files": True, "clip_tolerance": 0.05,
                  "allow_outside_paths": False}
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                     st.floats(allow_nan=False, allow_infinity=False)),
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                           max_leaves=20)


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=5))
def test_any_config_layer_resolves_or_is_a_config_error(assignments):
    layers = [("--set", config_lib.nested(key, value)) for key, value in assignments]
    try:
        resolved = config_lib.resolve(TextClassification.defaults, TextClassification.config_types,
                                      layers, TextClassification.config_choices)
        resolved["task"] = "text_classification"
        config_lib.check_values(resolved)
        TextClassification(resolved).check_config()
    except ftk.ConfigError:
        pass


@EXAMPLES
@given(st.text(max_size=300))
def test_any_set_assignment_parses_or_is_a_config_error(text):
    try:
        config_lib.parse_set(text)
    except ftk.ConfigError:
        pass


@EXAMPLES
@given(st.binary(max_size=400), st.sampled_from([".csv", ".tsv", ".jsonl"]))
@example(raw=b"\r\x00", suffix=".csv")  # once a bare csv.Error
def test_any_text_file_reads_or_is_a_data_error(tmp_path, raw, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(raw)
    config = config_lib.default_config(TextClassification.defaults)
    try:
        examples = read_text_data(str(path), config)
    except ftk.DataError:
        return
    assert len(examples.inputs) == len(examples.targets)


names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                min_size=1, max_size=10).filter(lambda name: name not in (".", ".."))


@EXAMPLES
@given(st.lists(st.tuples(names, names, st.sampled_from(["text", "bytes", "loop", "dangling",
                                                         "folder", "up"]),
                          st.binary(max_size=60)), min_size=1, max_size=8))
def test_any_text_class_folder_tree_reads_or_is_a_data_error(entries):
    """Odd names, any bytes, a .txt that is a folder, symlink loops and links out."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        root.mkdir()
        for class_name, name, kind, content in entries:
            folder = root / class_name
            if folder.exists() and not folder.is_dir():
                continue
            folder.mkdir(exist_ok=True)
            path = folder / f"{name}.txt"
            if path.exists() or path.is_symlink():
                continue
            if kind == "text":
                path.write_text(content.decode("latin-1"), encoding="utf-8")
            elif kind == "bytes":
                path.write_bytes(content)
            elif kind == "loop":
                path.symlink_to(path.name)
            elif kind == "dangling":
                path.symlink_to(folder / "nowhere")
            elif kind == "folder":
                path.mkdir()
            else:
                path.symlink_to("..")
        try:
            examples = read_text_data(str(root), config_lib.default_config(
                TextClassification.defaults))
        except ftk.DataError:
            return
        assert len(examples.inputs) == len(examples.targets) > 0


@EXAMPLES
@given(json_values)
def test_any_coco_document_reads_or_is_a_data_error(tmp_path, document):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    try:
        coco.read_coco(path, {**DETECTION_DATA, "format": "coco"})
    except ftk.FtkError:
        pass


@EXAMPLES
@given(st.text(max_size=400))
def test_any_voc_file_reads_or_is_a_data_error(tmp_path, text):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "1.xml").write_text(text, encoding="utf-8", errors="replace")
    try:
        voc.read_voc(root, {**DETECTION_DATA, "format": "voc"})
    except ftk.FtkError:
        pass


@pytest.mark.parametrize("text", [
    "<annotation><filename>a.png</filename><size><width>x</width></size></annotation>",
    "<annotation><filename></filename></annotation>",
    "<annotation><object><name>dog</name></object></annotation>",
])
def test_voc_files_with_missing_or_bad_fields_are_data_errors(tmp_path, text):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "1.xml").write_text(text)
    with pytest.raises(ftk.DataError):
        voc.read_voc(root, {**DETECTION_DATA, "format": "voc"})
