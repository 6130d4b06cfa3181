"""Reading labelled text: CSV, TSV, JSONL, or one folder of .txt files per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import ftk
from ftk.text import reading


def read_text_data(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    """Read one data source into texts and labels, validating every row.

    Args:
        path: a CSV/TSV/JSONL file or a folder with one subfolder per class.
        config: the run config (`data.format`, `data.text_column`,
            `data.label_column`, `data.multi_label`, `data.label_delimiter`,
            `data.skip_bad_rows`).

    Raises:
        ftk.DataError: naming the file and line of the first bad row.
    """
    data = config["data"]
    source = Path(path)
    kind = data["format"] if data["format"] != "auto" else reading.detect_format(source)
    if kind == "folder":
        rows = _read_folder(source)
    else:
        columns = {"text_column": data["text_column"], "label_column": data["label_column"]}
        rows = ((where, row["text_column"], row["label_column"])
                for where, row in reading.read_rows(source, columns, kind,
                                                    skip_bad=data["skip_bad_rows"]))
    texts, labels = [], []
    for where, text_value, label_value in rows:
        if not isinstance(text_value, str) or not text_value.strip():
            raise ftk.DataError(f"{where}: empty text. Fill it in or remove the row.")
        texts.append(text_value)
        labels.append(_parse_label(label_value, where, data))
    return ftk.Examples(texts, labels, str(source))


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
            yield str(file), reading.read_utf8(file), folder.name


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
