"""COCO metrics on cases small enough to work out by hand, and the drawings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ftk.plugins.detection.draw import (
    GUTTER,
    class_colour,
    draw_detections,
    detection_samples_png,
)
from ftk.plugins.detection.evaluation import coco_metrics

CLASSES = ["circle", "square"]


def _targets(*images: list[list[float]], width: int = 4) -> np.ndarray:
    """Rows `[x_min, y_min, x_max, y_max, class_id, ignore]` per image, padded with -1."""
    padded = np.full([len(images), width, 6], -1.0, np.float32)
    for index, rows in enumerate(images):
        if rows:
            padded[index, :len(rows)] = rows
    return padded


def _predictions(*images: list[tuple[list[float], int, float]], width: int = 5) -> dict:
    """`(box, class_id, score)` per detection and image, padded like the postprocessor."""
    boxes = np.zeros([len(images), width, 4], np.float32)
    scores = np.zeros([len(images), width], np.float32)
    class_ids = np.full([len(images), width], -1, np.int32)
    for index, detections in enumerate(images):
        for slot, (box, class_id, score) in enumerate(detections):
            boxes[index, slot], class_ids[index, slot], scores[index, slot] = box, class_id, score
    counts = np.array([len(d) for d in images], np.int32)
    return {"boxes": boxes, "scores": scores, "class_ids": class_ids, "num_detections": counts}


# Two images with objects of both classes and all three sizes (areas 400, 2500, 14400).
IMAGE_1 = [[10, 10, 30, 30, 0, 0], [40, 40, 90, 90, 1, 0]]
IMAGE_2 = [[0, 0, 120, 120, 0, 0], [130, 20, 180, 70, 0, 0]]


def _as_detections(rows: list[list[float]], score: float = 1.0) -> list:
    return [(row[:4], int(row[4]), score) for row in rows]


def test_perfect_predictions_score_one():
    metrics = coco_metrics(_targets(IMAGE_1, IMAGE_2),
                           _predictions(_as_detections(IMAGE_1), _as_detections(IMAGE_2)),
                           CLASSES)
    for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["per_class_ap"] == {"circle": pytest.approx(1.0), "square": pytest.approx(1.0)}
    assert metrics["per_class_ap50"] == {"circle": pytest.approx(1.0), "square": pytest.approx(1.0)}
    assert metrics["num_images"] == 2 and metrics["num_objects"] == 4
    assert all(type(metrics[k]) is float for k in ("map", "map50", "map75"))


def test_a_class_never_predicted_scores_zero_and_halves_map():
    circles_only = [d for d in _as_detections(IMAGE_1) if d[1] == 0]
    metrics = coco_metrics(_targets(IMAGE_1, IMAGE_2),
                           _predictions(circles_only, _as_detections(IMAGE_2)), CLASSES)
    assert metrics["per_class_ap"] == {"circle": pytest.approx(1.0), "square": 0.0}
    assert metrics["map"] == pytest.approx(0.5)
    assert metrics["map50"] == pytest.approx(0.5)


def test_a_loose_box_counts_at_iou_50_but_not_75():
    # Same left, top and bottom, 62 of 100 pixels wide: IoU 0.62, which passes
    # the thresholds .50, .55 and .60 of the ten from .50 to .95.
    metrics = coco_metrics(_targets([[0, 0, 100, 100, 0, 0]]),
                           _predictions([([0, 0, 62, 100], 0, 0.9)]), CLASSES)
    assert metrics["map50"] == pytest.approx(1.0)
    assert metrics["map75"] == 0.0
    assert metrics["map"] == pytest.approx(0.3)


def test_a_detection_of_an_ignored_box_is_not_a_false_positive():
    target = [[0, 0, 50, 50, 0, 0]]
    detections = [([0, 0, 50, 50], 0, 0.9), ([110, 110, 190, 190], 0, 0.95)]
    without_crowd = coco_metrics(_targets(target), _predictions(detections), CLASSES)
    assert without_crowd["map50"] < 0.9  # the stray box ranks first and costs precision

    crowd = [[100, 100, 200, 200, 0, 1]]
    metrics = coco_metrics(_targets(target + crowd), _predictions(detections), CLASSES)
    assert metrics["map"] == pytest.approx(1.0)
    assert metrics["num_objects"] == 1


def test_zero_detections_score_zero_without_error():
    targets = _targets(IMAGE_1, IMAGE_2)
    for predictions in (_predictions([], []),
                        # counted detections that are all padding are no detections either
                        {**_predictions([], []), "num_detections": np.array([3, 5])}):
        metrics = coco_metrics(targets, predictions, CLASSES)
        for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large"):
            assert metrics[key] == 0.0, key
        assert metrics["per_class_ap"] == {"circle": 0.0, "square": 0.0}
        assert metrics["per_class_ap50"] == {"circle": 0.0, "square": 0.0}


def test_sizes_split_at_32_and_96_pixels_squared():
    # 31x31 is small, 33x33 and 95x95 are medium, 97x97 is large; only the
    # medium ones are missed.
    rows = [[0, 0, 31, 31, 0, 0], [40, 0, 73, 33, 0, 0],
            [0, 100, 95, 195, 0, 0], [100, 100, 197, 197, 0, 0]]
    found = [rows[0], rows[3]]
    metrics = coco_metrics(_targets(rows), _predictions(_as_detections(found)), CLASSES)
    assert metrics["map_small"] == pytest.approx(1.0)
    assert metrics["map_medium"] == 0.0
    assert metrics["map_large"] == pytest.approx(1.0)


def test_classes_and_sizes_without_ground_truth_are_none():
    target = [[10, 10, 30, 30, 0, 0]]  # one small circle; no squares, nothing larger
    detections = [(target[0][:4], 0, 1.0), ([50, 50, 90, 90], 1, 0.99)]
    metrics = coco_metrics(_targets(target), _predictions(detections), CLASSES)
    assert metrics["per_class_ap"]["square"] is None
    assert metrics["per_class_ap50"]["square"] is None
    assert metrics["map_medium"] is None and metrics["map_large"] is None
    # A detection of a class without true boxes cannot be scored, so costs nothing.
    assert metrics["map"] == pytest.approx(1.0)


def test_no_ground_truth_at_all_gives_none_not_minus_one():
    metrics = coco_metrics(_targets([]), _predictions([]), CLASSES)
    assert metrics["map"] is None and metrics["per_class_ap"] == {"circle": None, "square": None}
    assert metrics["num_objects"] == 0


def test_class_ids_out_of_range_are_refused():
    with pytest.raises(ValueError, match="class ids outside"):
        coco_metrics(_targets([[0, 0, 10, 10, 2, 0]]), _predictions([]), CLASSES)
    with pytest.raises(ValueError, match="class ids outside"):
        coco_metrics(_targets([]), _predictions([([0, 0, 10, 10], 5, 0.5)]), CLASSES)


GREY = (120, 120, 120)


def test_draw_detections_outlines_boxes_and_keeps_other_pixels():
    original = np.full([64, 64, 3], GREY, np.uint8)
    drawn = np.asarray(draw_detections(original, [[10, 20, 40, 50]], ["square"], [0.87],
                                       colour_by=CLASSES))
    colour = class_colour("square", CLASSES)
    assert colour != class_colour("circle", CLASSES)
    # Maxima are exclusive, so the 2-pixel outline covers x 10-11 and 38-39, y 48-49.
    for x, y in [(10, 35), (11, 35), (39, 35), (38, 35), (25, 49), (25, 48), (10, 49), (39, 49)]:
        assert tuple(drawn[y, x]) == colour, (x, y)
    for x, y in [(25, 35), (2, 60), (60, 60), (45, 35)]:
        assert tuple(drawn[y, x]) == GREY, (x, y)
    label_area = drawn[:20, 10:40].reshape(-1, 3)  # the tag sits above the box
    assert (label_area == colour).all(-1).any()
    assert (original == GREY).all()  # the input is left as it was


def test_true_boxes_are_dashed_black_and_white():
    image = Image.new("RGB", (64, 64), GREY)
    drawn = np.asarray(draw_detections(np.asarray(image, np.float32) / 255, [], [],
                                       true_boxes=[[8, 8, 56, 56]]))
    top_edge = {tuple(pixel) for pixel in drawn[8, 8:56]}
    assert top_edge == {(255, 255, 255), (0, 0, 0)}
    assert tuple(drawn[30, 30]) == GREY


def test_save_detection_samples_tiles_a_grid(tmp_path):
    samples = []
    for index, size in enumerate([(48, 32), (32, 64), (40, 40)]):
        path = tmp_path / f"image{index}.png"
        Image.new("RGB", size, GREY).save(path)
        samples.append((str(path),
                        {"detections": [{"label": "circle", "score": 0.5, "box": [2, 2, 20, 20]}]},
                        {"boxes": [[4, 4, 22, 22]], "classes": ["circle"], "ignore": [False]}))
    png = detection_samples_png(samples, columns=2, cell_size=64)
    side = 2 * (64 + GUTTER) + GUTTER  # two columns, two rows
    with Image.open(io.BytesIO(png)) as grid:
        assert grid.size == (side, side)

    assert detection_samples_png([]) is None
