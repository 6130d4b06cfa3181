"""Reading labelled images: a folder per class, or a CSV of paths and labels.

Only paths are read here; pixels are decoded in tf.data. Every file is
decoded once up front (in parallel) so a corrupt one is named before training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk.images import IMAGE_SUFFIXES, check_images, image_paths, is_image_file
from ftk.text import reading

# Files that operating systems drop into folders; never data.
IGNORED_FILES = {"thumbs.db", "desktop.ini"}

log = logging.getLogger(__name__)


def read_image_data(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    """Image paths and class names from a class-folder tree or a CSV file."""
    data = config["data"]
    source = Path(path)
    form = data["format"]
    if form == "auto":
        form = "folder" if source.is_dir() else source.suffix.lower().lstrip(".")
    if form == "folder":
        if not source.is_dir():
            raise ftk.DataError(f"{source} is not a folder; data.format is 'folder'.")
        paths, labels = _read_folder(source, data["skip_bad_files"])
    elif form == "csv":
        paths, labels = _read_csv(source, data)
    else:
        raise ftk.DataError(f"{source}: cannot tell the data format. Pass a folder with one "
                            "subfolder of images per class, or a .csv file, or set data.format.")
    keep = check_images(paths, skip_bad=data["skip_bad_files"], source=str(source),
                        max_pixels=data["max_image_pixels"])
    return ftk.Examples([paths[i] for i in keep], [labels[i] for i in keep], str(source))


def _read_folder(root: Path, skip_bad: bool) -> tuple[list[str], list[str]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ftk.DataError(f"{root} has no class subfolders. Put each class's images in a "
                            "subfolder named after the class.")
    paths, labels, others = [], [], []
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name.lower() not in IGNORED_FILES)
        images = [p for p in files if is_image_file(p)]
        others += [p for p in files if not is_image_file(p)]
        if not images:
            raise ftk.DataError(f"Class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}). "
                                "Add images of the class or remove the folder.")
        paths += [str(p) for p in images]
        labels += [folder.name] * len(images)
    if others and not skip_bad:
        shown = "\n  ".join(map(str, others[:5]))
        raise ftk.DataError(f"{root}: {len(others)} file(s) are not images "
                            f"({', '.join(IMAGE_SUFFIXES)}):\n  {shown}\nMove them out of the "
                            "class folders, or set data.skip_bad_files: true to skip them.")
    if others:
        log.warning(f"Skipped {len(others)} non-image file(s) in {root} (data.skip_bad_files).")
    return paths, labels


def _read_csv(path: Path, data: Mapping[str, Any], *,
              labelled: bool = True) -> tuple[list[str], list[str]]:
    columns = {"image_column": data["image_column"]}
    if labelled:
        columns["label_column"] = data["label_column"]
    paths, labels, absent = [], [], []
    for where, row in reading.read_rows(path, columns, "csv"):
        name = (row["image_column"] or "").strip()
        label = (row.get("label_column") or "").strip() if labelled else name
        if not name or not label:
            empty = columns["image_column"] if not name else columns["label_column"]
            raise ftk.DataError(f"{where}: empty {empty!r}. Fill it in or remove the row.")
        image = Path(name).expanduser()
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            absent.append(f"{where}: {image}")
            continue
        paths.append(str(image))
        labels.append(label)
    if absent and not data["skip_bad_files"]:
        raise ftk.DataError(f"{len(absent)} image file(s) listed in {path} do not exist:\n  "
                            + "\n  ".join(absent[:5]) + "\nPaths are relative to the CSV's "
                            "folder. Fix them, or set data.skip_bad_files: true to skip the rows.")
    if absent:
        log.warning(f"Skipped {len(absent)} row(s) of {path} whose image is missing "
                    "(data.skip_bad_files).")
    return paths, labels


def prediction_inputs(values: list[str], config: Mapping[str, Any]) -> list[str]:
    """`ftk predict` inputs: image files, folders of images, or a CSV's image column."""
    paths: list[str] = []
    for value in values:
        path = Path(value)
        if path.suffix.lower() == ".csv" and path.is_file():
            paths += _read_csv(path, {**config["data"], "skip_bad_files": False}, labelled=False)[0]
        else:
            paths += image_paths(value)
    return paths
