"""Detections drawn over their images, for a quick look at what a model finds.

Predicted boxes are solid, coloured by class and labelled with name and score;
true boxes are dashed black and white, which stays visible on any background
and cannot be mistaken for a prediction.
"""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ftk.atomic import write_bytes_atomic

# Colours that stay distinguishable from one another and from black and white
# (the true boxes); after twelve classes they repeat.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (170, 110, 40),
)
BOX_WIDTH = 2
DASH = 4  # pixels per dash of a true box's outline
LABEL_PADDING = 2
GUTTER = 4  # pixels between and around the cells of a sample grid
BACKGROUND = (40, 40, 40)


# Pictures show only confident detections: the long tail kept for mAP (down to
# head.score_threshold) would bury them under labels.
MIN_DRAW_SCORE = 0.3

def class_colour(name: str, colour_by: Sequence[str] | None = None) -> tuple[int, int, int]:
    """The palette colour of class `name`.

    Args:
        name: a class name.
        colour_by: class names in a fixed order (usually all the task's classes);
            a name's position picks its colour, so neighbours differ. Names not
            listed fall back to a hash of the name, which is stable across runs
            (unlike Python's `hash`), so a class keeps its colour between images.

    Returns:
        An RGB triple.
    """
    if colour_by is not None and name in colour_by:
        index = list(colour_by).index(name)
    else:
        index = zlib.crc32(name.encode("utf-8"))
    return PALETTE[index % len(PALETTE)]


def draw_detections(image: Image.Image | np.ndarray, boxes: Any, labels: Sequence[str],
                    scores: Sequence[float] | None = None, *,
                    colour_by: Sequence[str] | None = None, true_boxes: Any = None,
                    true_labels: Sequence[str] | None = None) -> Image.Image:
    """Draw predicted (and optionally true) boxes on a copy of `image`.

    Args:
        image: a PIL image, or an `[H, W, 3]` / `[H, W]` array: uint8, or float
            in [0, 1] as ftk decodes images.
        boxes: `[K, 4]` predicted `x_min, y_min, x_max, y_max` in pixels of
            `image`, maxima exclusive (a box covering the image is `[0, 0, W, H]`).
        labels: the class name of each predicted box.
        scores: the confidence of each predicted box, shown as "name 0.87".
        colour_by: class names fixing the colours; see `class_colour`.
        true_boxes: `[M, 4]` true boxes, drawn dashed under the predictions.
        true_labels: a name per true box, written under it.

    Returns:
        A new RGB image; `image` is left as it was.

    Example:

    ```python
    picture = draw_detections(np.zeros([64, 64, 3], np.uint8), [[8, 8, 40, 40]],
                              ["cat"], [0.87], true_boxes=[[10, 6, 42, 38]])
    ```
    """
    canvas = _rgb_copy(image)
    boxes = _box_array(boxes, "boxes")
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"boxes, labels and scores need one entry per box. Received: "
                         f"{len(boxes)} boxes, {len(labels)} labels, "
                         f"{'no' if scores is None else len(scores)} scores")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    truth = _box_array(true_boxes if true_boxes is not None else [], "true_boxes")
    true_names = list(true_labels) if true_labels is not None else [""] * len(truth)
    colours = [class_colour(name, colour_by) for name in labels]
    # Every outline goes down before any label, so no line crosses a label.
    for box in truth:
        _dashed_rectangle(draw, box)
    for box, colour in zip(boxes, colours):
        draw.rectangle(_pixel_corners(box), outline=colour, width=BOX_WIDTH)
    for box, name in zip(truth, true_names):
        if name:
            _tag(draw, box, name, (255, 255, 255), font, canvas.size, below=True)
    for index, (box, name, colour) in enumerate(zip(boxes, labels, colours)):
        text = name if scores is None else f"{name} {float(scores[index]):.2f}"
        _tag(draw, box, text, colour, font, canvas.size, below=False)
    return canvas


def _rgb_copy(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # convert copies, even from RGB
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] != 3):
        raise ValueError(f"image must be a PIL image or an [H, W, 3] or [H, W] array. "
                         f"Received: shape={pixels.shape}")
    return Image.fromarray(pixels).convert("RGB")


def _box_array(boxes: Any, name: str) -> np.ndarray:
    array = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite coordinates. Received: {array.tolist()}")
    return array


def _pixel_corners(box: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive pixel corners for PIL, which draws both ends of a rectangle;
    the box's maxima are exclusive, so the outline hugs the object."""
    x_min, y_min = int(round(box[0])), int(round(box[1]))
    x_max = max(int(round(box[2])) - 1, x_min)
    y_max = max(int(round(box[3])) - 1, y_min)
    return x_min, y_min, x_max, y_max


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: np.ndarray) -> None:
    """A 1-pixel outline alternating white and black dashes."""
    x_min, y_min, x_max, y_max = _pixel_corners(box)
    edges = [((x, y_min) for x in range(x_min, x_max + 1)),
             ((x_max, y) for y in range(y_min, y_max + 1)),
             ((x, y_max) for x in range(x_max, x_min - 1, -1)),
             ((x_min, y) for y in range(y_max, y_min - 1, -1))]
    step = 0
    for edge in edges:
        for point in edge:
            draw.point(point, fill=(255, 255, 255) if (step // DASH) % 2 == 0 else (0, 0, 0))
            step += 1


def _tag(draw: ImageDraw.ImageDraw, box: np.ndarray, text: str, colour: tuple[int, int, int],
         font: Any, image_size: tuple[int, int], *, below: bool) -> None:
    """`text` on a filled `colour` tag at a corner of `box`, kept inside the image.

    Predictions sit above the top edge and truths below the bottom edge, so the
    two labels of a well-placed box do not cover each other; a tag moves inside
    the box when there is no room outside.
    """
    x_min, y_min, _, y_max = _pixel_corners(box)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width = right - left + 2 * LABEL_PADDING
    height = bottom - top + 2 * LABEL_PADDING
    if below:
        y = y_max + 1 if y_max + 1 + height <= image_size[1] else y_max + 1 - height
    else:
        y = y_min - height if y_min - height >= 0 else y_min
    x = max(0, min(x_min, image_size[0] - width))
    draw.rectangle([x, y, x + width - 1, y + height - 1], fill=colour)
    draw.text((x + LABEL_PADDING - left, y + LABEL_PADDING - top), text,
              fill=_ink(colour), font=font)


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on `colour` (Rec. 601 luma)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def detection_samples_png(samples: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
                          columns: int = 3, *, cell_size: int = 320) -> bytes | None:
    """Draw predictions and truths of a few images as one PNG grid.

    Each image is scaled to fit a `cell_size` square before drawing, so labels
    stay readable whatever the image size. The grid has `min(columns,
    len(samples))` columns and as many rows as needed; its size is
    `columns * (cell_size + GUTTER) + GUTTER` pixels across, likewise down.
    None when `samples` is empty.

    Args:
        samples: `(image path, prediction, truth)` per image. `prediction` is
            `{"detections": [{"label": str, "score": float, "box": [x_min,
            y_min, x_max, y_max]}, ...]}` as the predictor returns it; `truth`
            is the image's label, `{"boxes": [...], "classes": [...], "ignore":
            [...]}` (`ignore` optional), in pixels of the original image.
        columns: cells per row.
        cell_size: the side of each cell in pixels.

    Example:

    ```python
    png = detection_samples_png([(path, {"detections": []}, {"boxes": [], "classes": []})])
    ```
    """
    if not samples:
        return None
    if columns < 1 or cell_size < 16:
        raise ValueError(f"columns must be at least 1 and cell_size at least 16. "
                         f"Received: columns={columns}, cell_size={cell_size}")
    colour_by = sorted({d["label"] for _, prediction, _ in samples
                        for d in prediction.get("detections", [])}
                       | {name for _, _, truth in samples for name in truth.get("classes", [])})
    columns = min(columns, len(samples))
    rows = math.ceil(len(samples) / columns)
    step = cell_size + GUTTER
    grid = Image.new("RGB", (columns * step + GUTTER, rows * step + GUTTER), BACKGROUND)
    for index, (image_path, prediction, truth) in enumerate(samples):
        cell = _sample_cell(Path(image_path), prediction, truth, cell_size, colour_by)
        row, column = divmod(index, columns)
        grid.paste(cell, (GUTTER + column * step, GUTTER + row * step))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def _sample_cell(image_path: Path, prediction: Mapping[str, Any], truth: Mapping[str, Any],
                 cell_size: int, colour_by: Sequence[str]) -> Image.Image:
    """One image scaled into a `cell_size` square, centred, with its boxes drawn."""
    with Image.open(image_path) as opened:
        image = opened.convert("RGB")
    scale = cell_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    detections = confident(prediction)
    ignore = truth.get("ignore") or [False] * len(truth.get("classes", []))
    drawn = draw_detections(
        image,
        [np.asarray(d["box"], np.float64) * scale for d in detections],
        [d["label"] for d in detections],
        [d["score"] for d in detections],
        colour_by=colour_by,
        true_boxes=[np.asarray(b, np.float64) * scale for b in truth.get("boxes", [])],
        true_labels=[f"{name} (ignored)" if skip else name
                     for name, skip in zip(truth.get("classes", []), ignore)],
    )
    cell = Image.new("RGB", (cell_size, cell_size), BACKGROUND)
    cell.paste(drawn, ((cell_size - drawn.width) // 2, (cell_size - drawn.height) // 2))
    return cell


def save_prediction_drawing(image_path: str | Path, prediction: Mapping[str, Any],
                            path: Path) -> None:
    """Write one input image with its confident boxes drawn, as a PNG (`--draw`)."""
    with Image.open(image_path) as opened:
        image = opened.convert("RGB")
    detections = confident(prediction)
    drawn = draw_detections(image, [d["box"] for d in detections],
                            [d["label"] for d in detections], [d["score"] for d in detections])
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG")
    write_bytes_atomic(Path(path), buffer.getvalue())


def confident(prediction: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The detections worth drawing: those scoring at least `MIN_DRAW_SCORE`."""
    return [d for d in prediction.get("detections", []) if d["score"] >= MIN_DRAW_SCORE]
