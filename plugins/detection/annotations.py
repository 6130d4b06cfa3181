"""Detection labels shared by the COCO and Pascal VOC readers.

Both readers turn their files into `ImageAnnotations` records and check every
box with one `BoxChecker`, so the two formats accept and reject the same data
with the same messages. `read_detection_data` picks the reader and returns the
records as `ftk.Examples`, one example per image:

- `inputs`: absolute image file paths.
- `labels`: `{"boxes": [[x_min, y_min, x_max, y_max], ...], "classes": [name,
  ...], "ignore": [bool, ...], "width": int, "height": int}`. Boxes are floats
  in pixels of the original image with (0, 0) at the top-left corner of the
  top-left pixel, so a box covering the whole image is `[0, 0, width, height]`.
  `ignore` marks crowd (COCO `iscrowd`) and difficult (VOC `difficult`) objects:
  kept, but neither learned nor scored. An image without objects is a negative
  example with empty lists.
- `classes`: every class name the source declares, in a stable order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import ftk

DEFAULT_CLIP_TOLERANCE = 0.05

log = logging.getLogger(__name__)


@dataclass
class ImageAnnotations:
    """One image and its objects, as read from an annotation file.

    Attributes:
        path: the image file (absolute).
        width: image width in pixels, as the annotation file declares it.
        height: image height in pixels.
        where: the annotation record, for messages (`file: image id 3`).
        boxes: `[x_min, y_min, x_max, y_max]` per object, inside the image.
        classes: class name per object.
        ignore: whether each object is a crowd or difficult one.
    """

    path: Path
    width: int
    height: int
    where: str
    boxes: list[list[float]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    ignore: list[bool] = field(default_factory=list)

    def add(self, box: list[float], name: str, ignore: bool) -> None:
        self.boxes.append(box)
        self.classes.append(name)
        self.ignore.append(ignore)

    def label(self) -> dict[str, Any]:
        return {"boxes": self.boxes, "classes": self.classes, "ignore": self.ignore,
                "width": self.width, "height": self.height}


class BoxChecker:
    """Validates boxes against their image and counts the ones it clips.

    Annotation tools often let a box overshoot the image by a pixel or two; such
    a box is clipped (and counted, see `report`). A box sticking out by more
    than `tolerance` of the image's width or height is more likely a wrong
    coordinate convention or image size, so it is an error.
    """

    def __init__(self, source: str, tolerance: float = DEFAULT_CLIP_TOLERANCE):
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
            raise ftk.ConfigError("data.clip_tolerance must be a fraction in [0, 1). "
                                  f"Received: data.clip_tolerance={tolerance!r}")
        self.source = source
        self.tolerance = float(tolerance)
        self.clipped: list[str] = []

    def check(self, corners: Sequence[float], width: int, height: int, where: str,
              written: str) -> list[float]:
        """The box `corners` inside a `width` x `height` image, or a `DataError`.

        Args:
            corners: `[x_min, y_min, x_max, y_max]` in 0-based pixel coordinates.
            width: the image width the annotation declares.
            height: the image height.
            where: the record, for messages (`file.json: annotation id 17 (image id 3)`).
            written: the box as the file writes it, for messages.

        Returns:
            The corners, clipped to the image when they stick out a little.
        """
        x_min, y_min, x_max, y_max = (float(value) for value in corners)
        if x_max <= x_min or y_max <= y_min:
            raise ftk.DataError(
                f"{where}: box has no area (width {x_max - x_min:g}, height {y_max - y_min:g}). "
                f"Fix or remove the object. Received: {written}")
        overshoot = max(-x_min / width, (x_max - width) / width,
                        -y_min / height, (y_max - height) / height)
        if overshoot <= 0:
            return [x_min, y_min, x_max, y_max]
        clipped = [max(x_min, 0.0), max(y_min, 0.0), min(x_max, float(width)),
                   min(y_max, float(height))]
        if overshoot > self.tolerance or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            raise ftk.DataError(
                f"{where}: box [{x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}] (corners) lies outside "
                f"the {width}x{height} image by {overshoot:.1%} of its size, more than "
                f"data.clip_tolerance ({self.tolerance:.0%}). Check the image size and the box "
                f"coordinates, or raise data.clip_tolerance. Received: {written}")
        self.clipped.append(where)
        return clipped

    def report(self) -> None:
        """Print one warning to stderr when boxes were clipped."""
        if self.clipped:
            log.warning(f"Clipped {len(self.clipped)} box(es) in {self.source} that stuck out of their "
                        f"image by at most {self.tolerance:.0%} (data.clip_tolerance); first: "
                        f"{self.clipped[0]}.")


def number(value: Any, where: str, what: str) -> float:
    """`value` as a finite float; bools and text are errors naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ftk.DataError(f"{where}: {what} must be a finite number. Received: {value!r}")
    return float(value)


def confined_path(folder: Path, name: str, where: str, allow_outside: bool) -> Path:
    """`folder / name`, refusing a name that leaves `folder`: `..`, an absolute
    path, or a symlink pointing elsewhere (unless `data.allow_outside_paths`)."""
    candidate = folder / name
    if allow_outside:
        return candidate
    if Path(name).is_absolute() or not candidate.resolve().is_relative_to(folder.resolve()):
        raise ftk.DataError(
            f"{where}: the image path {name!r} leads outside {folder}. Image paths must stay "
            "inside the dataset's folder (or data.image_dir); set data.allow_outside_paths: "
            "true if that is intended.")
    return candidate


def image_size(width: Any, height: Any, where: str) -> tuple[int, int]:
    """Declared image size as positive ints; boxes are checked against it."""
    sizes = []
    for name, value in (("width", width), ("height", height)):
        size = number(value, where, f"image {name}")
        if size < 1 or size != int(size):
            raise ftk.DataError(f"{where}: image {name} must be a positive whole number of "
                                f"pixels. Received: {value!r}")
        sizes.append(int(size))
    return sizes[0], sizes[1]


def drop_missing(records: list[ImageAnnotations], source: str, skip_bad: bool,
                 hint: str, missing: Sequence[str] = ()) -> list[ImageAnnotations]:
    """`records` whose image file exists; a missing one is an error unless `skip_bad`.

    Args:
        records: the images read.
        source: the annotation file or folder, for messages.
        skip_bad: `data.skip_bad_files`: skip and count instead of failing.
        hint: where image paths are resolved from, said in the error.
        missing: more problems found by the reader (a listed annotation file
            that does not exist), handled the same way.
    """
    kept = [record for record in records if record.path.is_file()]
    absent = list(missing) + [f"{record.where}: {record.path}" for record in records
                              if not record.path.is_file()]
    if absent and not skip_bad:
        more = f"\n  ... and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise ftk.DataError(f"{source}: {len(absent)} file(s) do not exist:\n  "
                            + "\n  ".join(absent[:5]) + f"{more}\n{hint} Fix the paths, or set "
                            "data.skip_bad_files: true to skip these images.")
    if absent:
        log.warning(f"Skipped {len(absent)} image(s) of {source} whose file is missing "
                    "(data.skip_bad_files).")
    return kept


def read_detection_data(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    """Images, boxes and class names from a COCO JSON file or a Pascal VOC folder.

    `data.format` chooses the reader: `"coco"`, `"voc"`, or `"auto"` (a `.json`
    file is COCO; a folder, or a `.txt` id list inside a VOC folder's
    `ImageSets/Main/`, is VOC). See `coco.read_coco` and `voc.read_voc` for
    where image files are looked up. Every image is then decoded once so a
    corrupt file is named before training.

    Args:
        path: the annotation file or folder (`--data`).
        config: the task config; reads `data.format`, `data.image_dir`,
            `data.skip_bad_files` and `data.clip_tolerance`.

    Returns:
        One example per image; see this module's docstring for the label format.

    Example:
        ```python
        examples = read_detection_data("coco/val.json", config)
        examples.labels[0]["boxes"]  # [[12.0, 30.5, 80.0, 96.0], ...]
        ```
    """
    from ftk.images import MAX_IMAGE_PIXELS, check_images
    from ftk.plugins.detection import coco, voc

    data = config["data"]
    source = Path(path).expanduser()
    form = data.get("format", "auto")
    if form == "auto":
        if source.is_dir() or source.suffix.lower() == ".txt":
            form = "voc"
        elif source.suffix.lower() == ".json":
            form = "coco"
        else:
            raise ftk.DataError(f"{source}: cannot tell the detection data format. Pass a COCO "
                                ".json file or a Pascal VOC folder (Annotations/ and "
                                "JPEGImages/), or set data.format.")
    if form == "coco":
        records, classes = coco.read_coco(source, data)
    elif form == "voc":
        records, classes = voc.read_voc(source, data)
    else:
        raise ftk.ConfigError("data.format must be 'auto', 'coco' or 'voc' for detection. "
                              f"Received: data.format={form!r}")
    paths = [str(record.path) for record in records]
    keep = check_images(paths, skip_bad=bool(data.get("skip_bad_files")), source=str(source),
                        max_pixels=data.get("max_image_pixels", MAX_IMAGE_PIXELS))
    return ftk.Examples([paths[i] for i in keep], [records[i].label() for i in keep],
                        str(source), declared=tuple(classes))
