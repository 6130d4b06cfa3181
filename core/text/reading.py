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
import logging
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftk.errors import DataError

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# What DictReader puts in the columns a short row lacks.
_ABSENT = object()
log = logging.getLogger(__name__)


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
    try:
        raw = Path(path).read_bytes()
    except OSError as error:  # missing, a folder, a dangling link or a symlink loop
        reason = error.strerror or type(error).__name__
        raise DataError(f"Cannot read {path}: {reason}. Replace it with a text file, or remove "
                        "it.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: bytes that are not UTF-8 ({raw[error.start:error.start + 1]!r}). "
            "Save the file as UTF-8."
        ) from None


def read_rows(path: str | Path, columns: Mapping[str, str], kind: str = "auto", *,
              skip_bad: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a CSV, TSV or JSONL file, with where each comes from.

    A row that does not fit (more or fewer fields than the header, a JSONL
    line that is no object or lacks a key) is an error naming file and line;
    it is never read with its fields shifted.

    Args:
        path: the file.
        columns: config key to column name, e.g. `{"text_column": "text"}`;
            each row gives the value of each column under its config key. A
            missing column is an error naming the key to set (`data.KEY`).
        kind: `csv`, `tsv`, `jsonl`, or `auto` (from the suffix).
        skip_bad: skip rows that do not fit instead, and log how many (a
            task's `data.skip_bad_rows`). A file that cannot be parsed at all
            (no header column, a broken quote) is still an error.

    Yields:
        `(where, row)`: `where` is `"PATH line N"` for messages.
    """
    path = Path(path)
    kind = detect_format(path) if kind == "auto" else kind
    text = read_utf8(path)
    if kind == "jsonl":
        rows = _jsonl_rows(path, text, columns)
    elif kind in ("csv", "tsv"):
        rows = _table_rows(path, text, columns, "\t" if kind == "tsv" else ",")
    else:
        raise DataError(f"{path}: format {kind!r} is not a text table; use csv, tsv or jsonl.")
    skipped: list[str] = []
    for where, row in rows:
        if isinstance(row, str):  # a row that does not fit: its problem
            if not skip_bad:
                raise DataError(f"{where}: {row}")
            skipped.append(where)
            continue
        yield where, row
    if skipped:
        log.warning(f"Skipped {len(skipped)} malformed row(s) of {path} (data.skip_bad_rows), "
                    f"first at {skipped[0].removeprefix(f'{path} ')}.")


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


# The readers below yield `(where, row)` for a row that fits and `(where,
# problem)` for one that does not; `read_rows` raises or skips the latter.
def _table_rows(path: Path, text: str, columns: Mapping[str, str],
                delimiter: str) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # newline="" lets the csv module see quoted line breaks and lone carriage returns;
    # strict makes a quote never closed (which would swallow the rest of the file
    # into one field) or text after a closing quote an error rather than a guess.
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, restval=_ABSENT,
                            strict=True)
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
                yield where, ("more fields than the header has columns. Quote fields that "
                              "hold the delimiter, or set data.skip_bad_rows: true to skip such rows.")
            elif _ABSENT in row.values():
                yield where, (f"{sum(v is not _ABSENT for v in row.values())} field(s), but the "
                              f"header has {len(header)} columns. Fill in the row, or set "
                              "data.skip_bad_rows: true to skip such rows.")
            else:
                yield where, {key: row[column] for key, column in columns.items()}
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num}: malformed table ({error}). A quote "
                        "inside a quoted field is written twice (\"\"), and a field that "
                        "starts with a quote ends with one. Fix the row, or save the file as "
                        "CSV/TSV again.") from None


def _jsonl_rows(path: Path, text: str, columns: Mapping[str, str]) -> Iterator[tuple[str, Any]]:
    # Only "\n" ends a JSON line: str.splitlines would also cut at U+2028 and others,
    # which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield where, f"invalid JSON ({error.msg}). Each line must be one object."
            continue
        if not isinstance(record, dict):
            yield where, f"expected a JSON object. Received: {type(record).__name__}"
            continue
        absent = [(key, column) for key, column in columns.items() if column not in record]
        if absent:
            key, column = absent[0]
            yield where, (f"no key {column!r} (keys: {', '.join(record) or 'none'}). Set "
                          f"data.{key} to the key that holds the {key.removesuffix('_column')}.")
            continue
        yield where, {key: record[column] for key, column in columns.items()}
