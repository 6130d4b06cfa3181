"""Reading Pascal VOC detection folders: `Annotations/*.xml` and `JPEGImages/`.

Each XML file describes one image: `filename`, `size/width`, `size/height`
and one `object` per box with `name`, `difficult` and `bndbox/{xmin, ymin,
xmax, ymax}`. VOC counts pixels from 1 and includes both end pixels, so a box
`xmin=1 ... xmax=10` covers the first ten pixels; it becomes the continuous
`[0, ..., 10, ...]` (x_min - 1, y_min - 1, x_max, y_max), as COCO converts VOC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping
from xml.etree import ElementTree

import defusedxml
from defusedxml import ElementTree as SafeElementTree

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

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(path: Path, data: Mapping[str, Any]) -> tuple[list[ImageAnnotations], list[str]]:
    """Images with their boxes, and the class names, from a Pascal VOC folder.

    `path` is either the VOC folder (the one holding `Annotations/`), and then
    every `Annotations/*.xml` is read, or an id list inside it,
    `ROOT/ImageSets/Main/<split>.txt`, and then only the files it names (the
    first word of each line, so a per-class list like `cat_train.txt` selects
    all of its lines). `ImageSets/` is otherwise ignored: split lists are only
    used when asked for. Images are `JPEGImages/<filename>`, or
    `data.image_dir/<filename>` when that is set.

    Args:
        path: the VOC folder, or a `.txt` id list in its `ImageSets/Main/`.
        data: the config's `data` section: `image_dir`, `skip_bad_files`,
            `clip_tolerance`.

    Returns:
        The images (absolute paths, corner boxes, sorted by annotation file
        name or in list order) and the sorted set of object names they hold.
        VOC declares no class list, so only names that occur are known.
    """
    path = Path(path).expanduser().absolute()
    root, files, missing = _annotation_files(path)
    image_dir = data.get("image_dir")
    images = Path(image_dir).expanduser().absolute() if image_dir else root / "JPEGImages"
    checker = BoxChecker(str(path), data.get("clip_tolerance", DEFAULT_CLIP_TOLERANCE))
    allow_outside = bool(data.get("allow_outside_paths"))
    records = [_read_file(file, images, checker, allow_outside) for file in files]
    checker.report()
    hint = (f"Images are looked up in {images}"
            + ("." if image_dir else "; set data.image_dir if they are elsewhere."))
    records = drop_missing(records, str(path), bool(data.get("skip_bad_files")), hint, missing)
    return records, sorted({name for record in records for name in record.classes})


def _annotation_files(path: Path) -> tuple[Path, list[Path], list[str]]:
    """The VOC root, the XML files to read, and listed ids that have no XML file."""
    if path.is_dir():
        folder = path / "Annotations"
        if not folder.is_dir():
            nested = sorted(p.parent for p in path.glob("*/Annotations") if p.is_dir())
            hint = (f" It has VOC folders inside; pass one of them, e.g. {nested[0]}."
                    if nested else " A VOC folder holds Annotations/*.xml and JPEGImages/.")
            raise ftk.DataError(f"{path} has no Annotations/ folder.{hint}")
        files = sorted(folder.glob("*.xml"))
        if not files:
            raise ftk.DataError(f"{folder} holds no .xml annotation files.")
        return path, files, []
    if path.suffix.lower() != ".txt" or path.parent.name != "Main" \
            or path.parent.parent.name != "ImageSets":
        raise ftk.DataError(f"{path}: Pascal VOC data is a folder with Annotations/ and "
                            "JPEGImages/, or an id list ROOT/ImageSets/Main/<split>.txt.")
    if not path.is_file():
        raise ftk.DataError(f"VOC id list {path} does not exist.")
    root = path.parents[2]
    files, missing = [], []
    seen = set()
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        words = text.split()
        if not words or words[0] in seen:
            continue
        seen.add(words[0])
        file = root / "Annotations" / f"{words[0]}.xml"
        if file.is_file():
            files.append(file)
        else:
            missing.append(f"{path}, line {line}: {file}")
    if not files and not missing:
        raise ftk.DataError(f"{path} lists no image ids. Write one id (an annotation file name "
                            "without .xml) per line.")
    return root, files, missing


def _read_file(file: Path, images: Path, checker: BoxChecker,
               allow_outside: bool) -> ImageAnnotations:
    try:
        # defusedxml refuses entity declarations and external references, which
        # an annotation never needs and a hostile file uses to read or bloat.
        root = SafeElementTree.parse(file).getroot()
    except defusedxml.DefusedXmlException as error:
        raise ftk.DataError(f"{file}: refused XML construct ({error}). VOC annotations need no "
                            "DTD or entities; remove them.") from None
    except ElementTree.ParseError as error:
        line, column = error.position
        reason = str(error).split(":")[0]
        raise ftk.DataError(f"{file}, line {line}, column {column}: malformed XML ({reason}). "
                            "Fix the file or remove it.") from None
    if root.tag != "annotation":
        raise ftk.DataError(f"{file}: the root element is <{root.tag}>, not <annotation>; "
                            "not a Pascal VOC annotation file.")
    where = str(file)
    name = _text(root, "filename", where)
    width, height = image_size(_number(root, "size/width", where),
                               _number(root, "size/height", where), where)
    record = ImageAnnotations(confined_path(images, name, where, allow_outside), width, height,
                              where)
    for index, element in enumerate(root.findall("object"), start=1):
        _add_object(element, f"{file}: object {index}", record, checker)
    return record


def _add_object(element: ElementTree.Element, where: str, record: ImageAnnotations,
                checker: BoxChecker) -> None:
    name = _text(element, "name", where)
    where += f" ({name})"
    difficult = (element.findtext("difficult") or "0").strip()
    if difficult not in ("0", "1"):
        raise ftk.DataError(f"{where}: <difficult> must be 0 or 1. Received: {difficult!r}")
    xmin, ymin, xmax, ymax = (_number(element, f"bndbox/{key}", where) for key in CORNERS)
    written = f"bndbox xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} (1-based)"
    box = checker.check([xmin - 1, ymin - 1, xmax, ymax], record.width, record.height, where,
                        written)
    record.add(box, name, difficult == "1")


def _text(element: ElementTree.Element, key: str, where: str) -> str:
    text = (element.findtext(key) or "").strip()
    if not text:
        raise ftk.DataError(f"{where}: no <{key}>, or it is empty. Every VOC annotation needs "
                            "it.")
    return text


def _number(element: ElementTree.Element, key: str, where: str) -> float:
    text = _text(element, key, where)
    try:
        value = float(text)
    except ValueError:
        raise ftk.DataError(f"{where}: <{key}> must be a number. Received: {text!r}") from None
    return number(value, where, f"<{key}>")
