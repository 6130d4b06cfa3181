"""Demo data for the detection quickstart: shapes scattered over cluttered backgrounds.

Each split is a COCO dataset, the format users most often bring:
`<split>/annotations.json` plus `<split>/images/*.png`. Every image is drawn
from its own seeded generator, so every machine gets the same bytes and one
image can be redrawn alone (the tests do).

Each shape is first drawn as a mask; its box is the mask's extent, so boxes are
exactly tight, and shapes never touch, so no box hides part of another shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ftk import shapes

CLASSES = ("circle", "square", "triangle")
SPLITS = {"train": 300, "validation": 60, "test": 60}  # images per split
SIZE = 256
RADIUS = (13.0, 45.0)  # circumradius in pixels: boxes of roughly 24 to 90 pixels
MAX_OBJECTS = 4
MAX_IOU = 0.3  # between the boxes of one image; more would make the demo ambiguous
SEED = 2024
VERSION = "1"  # bump when the drawing changes, so cached copies are redrawn


class DrawnObject(NamedTuple):
    """One shape drawn into a demo image.

    Attributes:
        name: its class, one of `CLASSES`.
        box: `[x_min, y_min, x_max, y_max]`, whole pixels; the maxima are
            exclusive, so the box covers exactly the shape's pixels.
        area: the number of pixels the shape covers.
        colour: its RGB fill.
    """

    name: str
    box: list[int]
    area: int
    colour: tuple[int, int, int]


def demo_detection_data(folder: Path) -> dict[str, Path]:
    """Write the demo splits under `folder` once; return their annotation files.

    The splits are built in a sibling staging folder and renamed into place, so
    an interrupted run never leaves a half-written dataset that looks complete.

    Args:
        folder: where the data lives; reused when its `VERSION` file matches.

    Returns:
        `{"train": folder/"train"/"annotations.json", "validation": ..., "test": ...}`.
    """
    folder = Path(folder)
    marker = folder / "VERSION"
    if not (marker.exists() and marker.read_text().strip() == VERSION):
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for split_index, (split, count) in enumerate(SPLITS.items()):
            write_split(staging / split, split_index, count)
        (staging / "VERSION").write_text(VERSION + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return {split: folder / split / "annotations.json" for split in SPLITS}


def example_rng(split_index: int, index: int) -> np.random.Generator:
    """The generator that draws image `index` of split number `split_index`."""
    return np.random.default_rng([SEED, split_index, index])


def write_split(target: Path, split_index: int, count: int) -> None:
    """Draw `count` images of split number `split_index` into `target` (COCO layout)."""
    (target / "images").mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        image, objects = draw_example(example_rng(split_index, index))
        name = f"{index:04d}.png"
        # Fast compression: the noisy backgrounds barely shrink at higher levels.
        image.save(target / "images" / name, compress_level=1)
        images.append({"id": index + 1, "file_name": name, "width": SIZE, "height": SIZE})
        for drawn in objects:
            x_min, y_min, x_max, y_max = drawn.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1,
                "category_id": CLASSES.index(drawn.name) + 1,
                "bbox": [x_min, y_min, x_max - x_min, y_max - y_min],
                "area": drawn.area, "iscrowd": 0,
            })
    document = {
        "info": {"description": "ftk detection demo: shapes on cluttered backgrounds",
                 "version": VERSION},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": number, "name": name, "supercategory": "shape"}
                       for number, name in enumerate(CLASSES, start=1)],
    }
    (target / "annotations.json").write_text(json.dumps(document, indent=1) + "\n")


def draw_example(rng: np.random.Generator) -> tuple[Any, list[DrawnObject]]:
    """One `SIZE` x `SIZE` RGB image with 1 to `MAX_OBJECTS` shapes, and the shapes."""
    from PIL import Image

    background = shapes.background(rng, SIZE)
    image = Image.fromarray(background)
    shapes.clutter(image, rng, (3, 9))  # thin lines the model must learn to ignore
    occupied = np.zeros((SIZE, SIZE), bool)
    objects: list[DrawnObject] = []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        placed = _place_shape(rng, occupied, [drawn.box for drawn in objects])
        if placed is None:
            continue
        name, mask = placed
        pixels = np.asarray(mask) > 0
        colour = shapes.contrasting(rng, background[pixels].mean(0))
        image.paste(colour, mask=mask)
        # A margin of two pixels keeps neighbouring shapes from touching.
        occupied |= _grow(pixels, 2)
        box = list(mask.getbbox())
        objects.append(DrawnObject(name, box, int(pixels.sum()), colour))
    return image, objects


def _place_shape(rng: np.random.Generator, occupied: np.ndarray,
                 boxes: list[list[int]], tries: int = 30) -> tuple[str, Any] | None:
    """A class name and shape mask that fits among `boxes`, or None after `tries`."""
    from PIL import Image, ImageDraw

    for _ in range(tries):
        name = CLASSES[int(rng.integers(len(CLASSES)))]
        radius = rng.uniform(*RADIUS)
        centre = rng.uniform(radius + 2, SIZE - radius - 2, 2)
        mask = Image.new("L", (SIZE, SIZE), 0)
        draw = ImageDraw.Draw(mask)
        if name == "circle":
            draw.ellipse([*(centre - radius), *(centre + radius)], fill=255)
        else:
            draw.polygon(shapes.polygon(centre, radius, 4 if name == "square" else 3, rng), fill=255)
        box = mask.getbbox()
        if box is None or (np.asarray(mask) > 0)[occupied].any():
            continue
        if all(iou(box, other) < MAX_IOU for other in boxes):
            return name, mask
    return None


def iou(first: Any, second: Any) -> float:
    """Intersection over union of two `[x_min, y_min, x_max, y_max]` boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    overlap = max(width, 0) * max(height, 0)
    union = ((first[2] - first[0]) * (first[3] - first[1])
             + (second[2] - second[0]) * (second[3] - second[1]) - overlap)
    return overlap / union if union > 0 else 0.0


def _grow(pixels: np.ndarray, margin: int) -> np.ndarray:
    """`pixels` widened by `margin` in every direction (a square dilation)."""
    padded = np.pad(pixels, margin)
    rows = np.zeros((SIZE + 2 * margin, SIZE), bool)
    for shift in range(2 * margin + 1):
        rows |= padded[:, shift:shift + SIZE]
    grown = np.zeros((SIZE, SIZE), bool)
    for shift in range(2 * margin + 1):
        grown |= rows[shift:shift + SIZE]
    return grown
