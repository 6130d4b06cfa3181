"""Reading labelled text: CSV, TSV, JSONL, or one folder of .txt files per class."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import ftk

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_text_data(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    """Read one data source into texts and labels, validating every row.

    Args:
        path: a CSV/TSV/JSONL file or a folder with one subfolder per class.
        config: the run config (`data.format`, `data.text_column`,
            `data.label_column`, `data.multi_label`, `data.label_delimiter`).

    Raises:
        ftk.DataError: naming the file and line of the first bad row.
    """
    data = config["data"]
    source = Path(path)
    kind = data["format"] if data["format"] != "auto" else detect_format(source)
    if kind == "folder":
        rows = _read_folder(source)
    else:
        text = _read_utf8(source)
        rows = _read_jsonl(source, text, data) if kind == "jsonl" else _read_table(source, text, data, kind)
    texts, labels = [], []
    for where, text_value, label_value in rows:
        if not isinstance(text_value, str) or not text_value.strip():
            raise ftk.DataError(f"{where}: empty text. Fill it in or remove the row.")
        texts.append(text_value)
        labels.append(_parse_label(label_value, where, data))
    return ftk.Examples(texts, labels, str(source))


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    kind = SUFFIX_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ftk.DataError(
            f"Cannot tell the format of {path} from its suffix. Use .csv, .tsv or .jsonl, "
            "a folder of class subfolders, or set data.format."
        )
    return kind


def _read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ftk.DataError(
            f"{path} line {line}: bytes that are not UTF-8 ({raw[error.start:error.start + 1]!r}). "
            "Save the file as UTF-8."
        ) from None


def _read_table(path: Path, text: str, data: Mapping[str, Any], kind: str) -> Iterator[tuple]:
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if kind == "tsv" else ",")
    columns = reader.fieldnames or []
    for key in ("text_column", "label_column"):
        if data[key] not in columns:
            raise ftk.DataError(
                f"{path}: no column {data[key]!r} (columns: {', '.join(columns) or 'none'}). "
                f"Set data.{key} to the column that holds the {key.split('_')[0]}."
            )
    for row in reader:
        yield f"{path} line {reader.line_num}", row[data["text_column"]], row[data["label_column"]]


def _read_jsonl(path: Path, text: str, data: Mapping[str, Any]) -> Iterator[tuple]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ftk.DataError(f"{where}: invalid JSON ({error.msg}). Each line must be one object.") from None
        if not isinstance(record, dict):
            raise ftk.DataError(f"{where}: expected a JSON object. Received: {type(record).__name__}")
        for key in ("text_column", "label_column"):
            if data[key] not in record:
                raise ftk.DataError(
                    f"{where}: no key {data[key]!r} (keys: {', '.join(record) or 'none'}). "
                    f"Set data.{key} to the key that holds the {key.split('_')[0]}."
                )
        yield where, record[data["text_column"]], record[data["label_column"]]


def _read_folder(path: Path) -> Iterator[tuple]:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ftk.DataError(f"{path} has no class subfolders. Put each class's .txt files in a "
                            "subfolder named after the class.")
    for folder in classes:
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise ftk.DataError(f"Class folder {folder} holds no .txt files. Add examples or remove it.")
        for file in files:
            yield str(file), _read_utf8(file), folder.name


def _parse_label(value: Any, where: str, data: Mapping[str, Any]) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ftk.DataError(f"{where}: empty label. Fill it in or remove the row.")
    if data["multi_label"]:
        names = value if isinstance(value, list) else str(value).split(data["label_delimiter"])
        return sorted({str(n).strip() for n in names if str(n).strip()})
    if isinstance(value, (list, dict)):
        raise ftk.DataError(f"{where}: the label must be one class name. For several labels "
                            "per text set data.multi_label: true.")
    return str(value).strip()


def prediction_inputs(values: list[str], config: Mapping[str, Any]) -> list[str]:
    """`ftk predict` inputs: a data file's texts, a .txt file's contents, or the text itself."""
    texts: list[str] = []
    for value in values:
        path = Path(value)
        if len(value) < 4096 and path.is_file():
            if path.suffix.lower() in SUFFIX_FORMATS:
                texts += _read_texts_only(path, config)
            else:
                texts.append(_read_utf8(path))
        else:
            texts.append(value)
    return texts


def _read_texts_only(path: Path, config: Mapping[str, Any]) -> list[str]:
    column = config["data"]["text_column"]
    text = _read_utf8(path)
    if detect_format(path) == "jsonl":
        return [json.loads(line)[column] for line in text.splitlines() if line.strip()]
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if detect_format(path) == "tsv" else ",")
    if column not in (reader.fieldnames or []):
        raise ftk.DataError(f"{path}: no column {column!r} to predict on.")
    return [row[column] for row in reader]
