"""Reading COCO object-detection JSON: `images`, `annotations` and `categories`.

Only the keys detection needs are read: image `id`, `file_name`, `width` and
`height`; annotation `image_id`, `category_id`, `bbox` (`[x, y, width, height]`
from the top-left corner, in pixels) and `iscrowd`; category `id` and `name`.
Segmentations, keypoints and areas are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk.plugins.detection.annotations import (
    DEFAULT_CLIP_TOLERANCE,
    BoxChecker,
    ImageAnnotations,
    confined_path,
    drop_missing,
    image_size,
    number,
)

SECTIONS = ("images", "annotations", "categories")


def read_coco(path: Path, data: Mapping[str, Any]) -> tuple[list[ImageAnnotations], list[str]]:
    """Images with their boxes, and the category names, from one COCO JSON file.

    An image's `file_name` is looked up under `data.image_dir` when it is set
    (a relative `image_dir` is relative to the current folder); otherwise in
    the JSON file's folder, then in its `images/` subfolder; the first that
    holds the file wins. Images keep the JSON's order; one without
    annotations is a negative example.

    Args:
        path: the COCO annotation file.
        data: the config's `data` section: `image_dir`, `skip_bad_files`,
            `clip_tolerance`.

    Returns:
        The images (absolute paths, corner boxes) and the category names sorted
        by category id.
    """
    path = Path(path)
    document = _load(path)
    ids_to_names, classes = _categories(document["categories"], path)
    folders = _image_folders(path, data.get("image_dir"))
    allow_outside = bool(data.get("allow_outside_paths"))
    images = _images(document["images"], path, folders, allow_outside)
    checker = BoxChecker(str(path), data.get("clip_tolerance", DEFAULT_CLIP_TOLERANCE))
    for index, annotation in enumerate(document["annotations"]):
        _add_annotation(annotation, index, path, images, ids_to_names, checker)
    checker.report()
    shown = " or ".join(str(folder) for folder in folders)
    hint = (f"Image file names are looked up in {shown}"
            + ("." if data.get("image_dir") else "; set data.image_dir if they are elsewhere."))
    return drop_missing(list(images.values()), str(path), bool(data.get("skip_bad_files")),
                        hint), classes


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ftk.DataError(f"COCO annotation file {path} does not exist.")
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ftk.DataError(f"{path} is not UTF-8 text ({error.reason}).") from None
    except json.JSONDecodeError as error:
        raise ftk.DataError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: "
                            f"{error.msg}.") from None
    if not isinstance(document, dict):
        raise ftk.DataError(f"{path}: a COCO file holds one JSON object with keys "
                            f"{', '.join(SECTIONS)}. Received: a {type(document).__name__}")
    missing = [key for key in SECTIONS if key not in document]
    if missing:
        raise ftk.DataError(f"{path}: no {', '.join(map(repr, missing))} key(s). A COCO detection "
                            f"file needs {', '.join(SECTIONS)} (an image without objects simply "
                            "has no annotations).")
    for key in SECTIONS:
        if not isinstance(document[key], list):
            raise ftk.DataError(f"{path}: {key!r} must be a list. "
                                f"Received: a {type(document[key]).__name__}")
    return document


def _record_name(record: Any, kind: str, index: int) -> str:
    """`image id 3` when the record has an id, else its position: `images[4]`."""
    if isinstance(record, dict) and "id" in record:
        return f"{kind} id {record['id']!r}"
    return f"{kind}s[{index}]"


def _require(record: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise ftk.DataError(f"{where}: must be a JSON object. Received: {record!r}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ftk.DataError(f"{where}: no {', '.join(map(repr, missing))}. Every record needs "
                            f"{', '.join(keys)}.")


def _check_id(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ftk.DataError(f"{where}: ids must be integers or strings. Received: {value!r}")


def _categories(records: list[Any], path: Path) -> tuple[dict[Any, str], list[str]]:
    """Category id to name, and the names ordered by id."""
    if not records:
        raise ftk.DataError(f"{path}: 'categories' is empty. List each class as "
                            '{"id": 1, "name": "cat"}.')
    names: dict[Any, str] = {}
    for index, record in enumerate(records):
        where = f"{path}: {_record_name(record, 'category', index)}"
        _require(record, ("id", "name"), where)
        _check_id(record["id"], where)
        name = record["name"]
        if not isinstance(name, str) or not name.strip():
            raise ftk.DataError(f"{where}: 'name' must be a non-empty string. Received: {name!r}")
        if record["id"] in names:
            raise ftk.DataError(f"{where}: the id appears twice in 'categories'. Give each "
                                "category its own id.")
        if name.strip() in names.values():
            raise ftk.DataError(f"{where}: the name {name.strip()!r} belongs to two categories; "
                                "boxes are labelled by name, so names must differ.")
        names[record["id"]] = name.strip()
    # Sorting mixed int/str ids would fail; order by type name first.
    order = sorted(names, key=lambda key: (type(key).__name__, key))
    return names, [names[key] for key in order]


def _image_folders(path: Path, image_dir: Any) -> list[Path]:
    if image_dir:
        return [Path(image_dir).expanduser().absolute()]
    folder = path.parent.absolute()
    return [folder, folder / "images"]


def _images(records: list[Any], path: Path, folders: list[Path],
            allow_outside: bool) -> dict[Any, ImageAnnotations]:
    images: dict[Any, ImageAnnotations] = {}
    for index, record in enumerate(records):
        where = f"{path}: {_record_name(record, 'image', index)}"
        _require(record, ("id", "file_name", "width", "height"), where)
        _check_id(record["id"], where)
        if record["id"] in images:
            raise ftk.DataError(f"{where}: the id appears twice in 'images' (also "
                                f"{images[record['id']].path.name}). Give each image its own id.")
        name = record["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise ftk.DataError(f"{where}: 'file_name' must be a non-empty string. "
                                f"Received: {name!r}")
        width, height = image_size(record["width"], record["height"], where)
        candidates = [confined_path(folder, name, where, allow_outside) for folder in folders]
        found = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
        images[record["id"]] = ImageAnnotations(found, width, height, where)
    return images


def _add_annotation(record: Any, index: int, path: Path, images: dict[Any, ImageAnnotations],
                    ids_to_names: dict[Any, str], checker: BoxChecker) -> None:
    where = f"{path}: {_record_name(record, 'annotation', index)}"
    _require(record, ("image_id", "category_id", "bbox"), where)
    image = images.get(record["image_id"])
    if image is None:
        raise ftk.DataError(f"{where}: image_id {record['image_id']!r} is not among the "
                            "'images'. Add the image or remove the annotation.")
    where += f" (image id {record['image_id']!r})"
    name = ids_to_names.get(record["category_id"])
    if name is None:
        known = ", ".join(map(repr, list(ids_to_names)[:10]))
        raise ftk.DataError(f"{where}: category_id {record['category_id']!r} is not among the "
                            f"'categories' (ids {known}{', ...' if len(ids_to_names) > 10 else ''}"
                            "). Add the category or fix the id.")
    bbox = record["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ftk.DataError(f"{where}: 'bbox' must be 4 numbers [x, y, width, height]. "
                            f"Received: {bbox!r}")
    x, y, width, height = (number(value, where, "each bbox value") for value in bbox)
    if width <= 0 or height <= 0:
        raise ftk.DataError(f"{where}: bbox width and height must be positive. Fix or remove the "
                            f"annotation. Received: bbox={bbox!r}")
    crowd = record.get("iscrowd", 0)
    if crowd not in (0, 1):  # also admits false/true
        raise ftk.DataError(f"{where}: 'iscrowd' must be 0 or 1. Received: {crowd!r}")
    box = checker.check([x, y, x + width, y + height], image.width, image.height, where,
                        f"bbox={bbox!r}")
    image.add(box, name, bool(crowd))
