"""Reading text data: formats, and a clear error for each kind of bad input."""

from __future__ import annotations

import json
import re

import pytest

import ftk
from ftk.plugins.text_classification.reader import read_text_data
from helpers import ftk_cli

CONFIG = ftk.default_config("text_classification")


def read(path, **data):
    config = {**CONFIG, "data": {**CONFIG["data"], **data}}
    return read_text_data(str(path), config)


def test_csv_tsv_jsonl_and_folder_read_the_same_examples(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"Hello, world",greet\nbye now,leave\n')
    (tmp_path / "a.tsv").write_text("text\tlabel\nHello, world\tgreet\nbye now\tleave\n")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "Hello, world", "label": "greet"}) + "\n\n"
        + json.dumps({"text": "bye now", "label": "leave"}) + "\n")
    for label, text in (("greet", "Hello, world"), ("leave", "bye now")):
        (tmp_path / "folder" / label).mkdir(parents=True)
        (tmp_path / "folder" / label / "1.txt").write_text(text)
    for path in ("a.csv", "a.tsv", "a.jsonl", "folder"):
        examples = read(tmp_path / path)
        assert sorted(zip(examples.inputs, examples.targets)) == [
            ("Hello, world", "greet"), ("bye now", "leave")], path


def test_column_names_are_configurable(tmp_path):
    (tmp_path / "a.csv").write_text("review,stars\ngreat,5\nawful,1\n")
    examples = read(tmp_path / "a.csv", text_column="review", label_column="stars")
    assert list(examples.targets) == ["5", "1"]


def test_multi_label_rows_split_on_the_delimiter(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nrain and goals,weather|sports\nsun,weather\n")
    examples = read(tmp_path / "a.csv", multi_label=True)
    assert list(examples.targets) == [["sports", "weather"], ["weather"]]


@pytest.mark.parametrize("content, message", [
    ("text,label\nfine,a\n,b\n", "line 3: empty text"),
    ("text,label\nfine,a\nno label,\n", "line 3: empty label"),
    ("words,label\nfine,a\n", "no column 'text' (columns: words, label). Set data.text_column"),
    ("text,category\nfine,a\n", "no column 'label' (columns: text, category). Set data.label_column"),
])
def test_bad_csv_rows_are_named_by_line(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(ftk.DataError, match=re.escape(message)):
        read(tmp_path / "a.csv")


@pytest.mark.parametrize("content, message", [
    ("text,label\nfine,a\ngood,b,c\n", "line 3: more fields than the header has columns"),
    ("text,label,source\nfine,a,web\nshort row,b\n", "line 3: 2 field(s), but the header has 3"),
])
def test_a_row_that_does_not_fit_the_header_is_never_read_shifted(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(ftk.DataError, match=re.escape(message) + ".*data.skip_bad_rows"):
        read(tmp_path / "a.csv")


def test_skip_bad_rows_skips_and_counts_what_does_not_fit(tmp_path, caplog):
    (tmp_path / "a.csv").write_text("text,label\nfine,a\ntoo,many,fields\nalone\nok,b\n")
    (tmp_path / "a.jsonl").write_text('{"text": "fine", "label": "a"}\n{"text": "broken"\n'
                                      '[1, 2]\n{"body": "x"}\n{"text": "ok", "label": "b"}\n')
    for name, first in (("a.csv", 3), ("a.jsonl", 2)):
        caplog.clear()
        examples = read(tmp_path / name, skip_bad_rows=True)
        assert list(zip(examples.inputs, examples.targets)) == [("fine", "a"), ("ok", "b")]
        assert f"Skipped {5 - 2 if name == 'a.jsonl' else 2} malformed row(s) of " \
               f"{tmp_path / name} (data.skip_bad_rows), first at line {first}." in caplog.text
    # A file that cannot be parsed at all is an error even so.
    (tmp_path / "b.csv").write_text('text,label\n"never closed,a\n')
    with pytest.raises(ftk.DataError, match="b.csv line"):
        read(tmp_path / "b.csv", skip_bad_rows=True)


def test_non_utf8_bytes_are_named_by_line(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\nfine,a\ncaf\xe9,b\n")
    with pytest.raises(ftk.DataError, match=r"a.csv line 3: bytes that are not UTF-8.*Save the file as UTF-8"):
        read(tmp_path / "a.csv")


def test_bad_jsonl_lines_are_named(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok", "label": "a"}\n{"text": "broken"\n')
    with pytest.raises(ftk.DataError, match="a.jsonl line 2: invalid JSON"):
        read(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text('{"body": "ok", "label": "a"}\n')
    with pytest.raises(ftk.DataError, match="b.jsonl line 1: no key 'text'"):
        read(tmp_path / "b.jsonl")


def test_empty_class_folder_is_named(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "1.txt").write_text("hello")
    (tmp_path / "data" / "b").mkdir()
    with pytest.raises(ftk.DataError, match="Class folder .*data/b holds no .txt files"):
        read(tmp_path / "data")


def _run(*args):
    result = ftk_cli("run", "--task", "text_classification", *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_cli_errors_for_missing_and_empty_files(tmp_path, embedding):
    assert f"Data file {tmp_path / 'missing.csv'} does not exist" in _run(
        "--data", tmp_path / "missing.csv", "--backbone", embedding)
    (tmp_path / "empty.csv").write_text("")
    assert "no column 'text' (columns: none)" in _run("--data", tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("text,label\n")
    assert f"{tmp_path / 'header.csv'} holds no examples" in _run("--data", tmp_path / "header.csv")
    (tmp_path / "notes.docx").write_text("x")
    assert "Cannot tell the format of" in _run("--data", tmp_path / "notes.docx")


def test_a_class_too_small_for_the_validation_split_is_named(tmp_path, embedding):
    (tmp_path / "a.csv").write_text("text,label\n" + "good day,pos\n" * 5 + "bad day,neg\n")
    message = _run("--data", tmp_path / "a.csv", "--backbone", embedding, "--output", tmp_path / "r")
    assert "class 'neg' has only 1 example, so the validation split would have none" in message


def test_a_validation_label_unseen_in_training_is_named(tmp_path, embedding, topics):
    (tmp_path / "val.csv").write_text("text,label\ngoal team,sports\nsunny skies,weather\n")
    message = _run("--data", topics["train"], "--val-data", tmp_path / "val.csv",
                   "--backbone", embedding, "--output", tmp_path / "r")
    assert "val.csv: label 'weather' does not occur in the training data" in message


def test_a_single_class_is_refused(tmp_path, embedding):
    (tmp_path / "a.csv").write_text("text,label\n" + "good day,pos\n" * 5)
    message = _run("--data", tmp_path / "a.csv", "--backbone", embedding, "--output", tmp_path / "r")
    assert "has 1 class (pos); classification needs at least two" in message


def test_debug_shows_the_traceback(tmp_path):
    result = ftk_cli("--debug", "run", "--task", "text_classification", "--data", tmp_path / "x.csv")
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_a_test_label_unseen_in_training_fails_before_training(tmp_path, embedding, topics):
    (tmp_path / "test.csv").write_text("text,label\ngoal team,sports\nsunny skies,weather\n")
    message = _run("--data", topics["train"], "--test-data", tmp_path / "test.csv",
                   "--backbone", embedding, "--output", tmp_path / "r")
    assert "test.csv: label 'weather' does not occur in the training data" in message
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_jsonl_texts_may_hold_unicode_line_separators(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"text": "first\u2028line", "label": "a"}, {"text": "second\u0085one", "label": "b"}]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n",
                    encoding="utf-8")
    examples = read(path)
    assert list(examples.inputs) == ["first\u2028line", "second\u0085one"]
