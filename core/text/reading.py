"""Reading text tables (CSV, TSV, JSONL) with errors that name file and line.

Imports no TensorFlow, so plugins may use it anywhere.

Example:
    ```python
    from ftk.text import reading

    for where, row in reading.read_rows(path, {"text_column": "text", "label_column": "score"}):
        text, score = row["text_column"], row["label_column"]
    ```
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftk.errors import DataError

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def detect_format(path: Path) -> str:
    """`csv`, `tsv` or `jsonl` from the suffix (`folder` for a folder)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    kind = SUFFIX_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"Cannot tell the format of {path} from its suffix. Use .csv, .tsv or .jsonl, "
            "or set data.format."
        )
    return kind


def read_utf8(path: Path) -> str:
    """A file's text; bytes that are not UTF-8 are an error naming the line."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: bytes that are not UTF-8 ({raw[error.start:error.start + 1]!r}). "
            "Save the file as UTF-8."
        ) from None


def read_rows(path: str | Path, columns: Mapping[str, str],
              kind: str = "auto") -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a CSV, TSV or JSONL file, with where each comes from.

    Args:
        path: the file.
        columns: config key to column name, e.g. `{"text_column": "text"}`;
            each row gives the value of each column under its config key. A
            missing column is an error naming the key to set (`data.KEY`).
        kind: `csv`, `tsv`, `jsonl`, or `auto` (from the suffix).

    Yields:
        `(where, row)`: `where` is `"PATH line N"` for messages.
    """
    path = Path(path)
    kind = detect_format(path) if kind == "auto" else kind
    text = read_utf8(path)
    if kind == "jsonl":
        yield from _jsonl_rows(path, text, columns)
    elif kind in ("csv", "tsv"):
        yield from _table_rows(path, text, columns, "\t" if kind == "tsv" else ",")
    else:
        raise DataError(f"{path}: format {kind!r} is not a text table; use csv, tsv or jsonl.")


def read_column(path: str | Path, column: str) -> list[Any]:
    """One column of a CSV, TSV or JSONL file (e.g. the texts to predict on)."""
    return [row["column"] for _, row in read_rows(path, {"column": column})]


def prediction_texts(values: list[str], column: str) -> list[str]:
    """What `ftk predict` arguments mean for a text task: a data file's
    `column`, a text file's contents, or the text itself."""
    texts: list[str] = []
    for value in values:
        path = Path(value)
        if len(value) < 4096 and path.is_file():
            if path.suffix.lower() in SUFFIX_FORMATS:
                texts += [str(text) for text in read_column(path, column)]
            else:
                texts.append(read_utf8(path))
        else:
            texts.append(value)
    return texts


def _table_rows(path: Path, text: str, columns: Mapping[str, str],
                delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # newline="" lets the csv module see quoted line breaks and lone carriage returns.
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = reader.fieldnames or []
        for key, column in columns.items():
            if column not in header:
                raise DataError(
                    f"{path}: no column {column!r} (columns: {', '.join(header) or 'none'}). "
                    f"Set data.{key} to the column that holds the {key.removesuffix('_column')}."
                )
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row:
                raise DataError(f"{where}: more fields than the header has columns. Quote fields "
                                "that hold the delimiter.")
            yield where, {key: row[column] for key, column in columns.items()}
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num}: malformed table ({error}). Fix the row, "
                        "or save the file as CSV/TSV again.") from None


def _jsonl_rows(path: Path, text: str,
                columns: Mapping[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    # Only "\n" ends a JSON line: str.splitlines would also cut at U+2028 and others,
    # which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: invalid JSON ({error.msg}). Each line must be one object.") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object. Received: {type(record).__name__}")
        for key, column in columns.items():
            if column not in record:
                raise DataError(
                    f"{where}: no key {column!r} (keys: {', '.join(record) or 'none'}). "
                    f"Set data.{key} to the key that holds the {key.removesuffix('_column')}."
                )
        yield where, {key: record[column] for key, column in columns.items()}
