"""COCO-style detection metrics, computed by pycocotools on in-memory arrays.

The numbers are the ones the COCO leaderboard and most detection papers
report, so a user can compare a fine-tuned model with published results. The
official implementation is used rather than a re-implementation because small
differences (how crowd regions match, how precision is interpolated) move mAP
by a point or more.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np

# Indices into `COCOeval.eval["precision"]`, shaped [iou, recall, class, area,
# max detections]: IoU thresholds are .50, .55, ..., .95, area ranges are
# all / small / medium / large, and the detection limits are 1, 10, 100.
_IOU_50 = 0
_AREA_ALL = 0
_MAX_DETECTIONS_100 = -1


def coco_metrics(targets: np.ndarray, predictions: Mapping[str, np.ndarray],
                 class_names: Sequence[str]) -> dict:
    """Mean average precision of detections against their ground truth, COCO style.

    A detection is a true positive when its class matches and its box overlaps
    a not-yet-matched true box of that class by at least an IoU threshold; the
    highest-scoring detections are matched first. Average precision (AP) is the
    area under the precision/recall curve of one class, sampled at 101 recall
    levels; mAP is its mean over classes (and, where stated, IoU thresholds).

    Ignored true boxes (COCO `iscrowd`, VOC `difficult`) are scored as COCO
    crowd regions: a detection lying inside one is neither a true nor a false
    positive, and missing one is not a false negative.

    Args:
        targets: `[N, M, 6]` float, per image and padded: `x_min, y_min, x_max,
            y_max` in pixels of the original image, `class_id` (-1 marks a
            padding row) and `ignore` (1.0 for crowd or difficult boxes).
        predictions: `{"boxes": [N, K, 4]` in the same pixels, `"scores": [N,
            K]`, `"class_ids": [N, K]` (-1 marks padding), `"num_detections":
            [N]}`; only the first `num_detections` of each image are read.
        class_names: the name of each class id, in order.

    Returns:
        Plain Python numbers, with `None` where a metric is undefined because
        no (non-ignored) true box falls in its class or size range; pycocotools
        marks these with -1, which would otherwise pass for a real score:

        - `map`: AP averaged over IoU thresholds .50, .55, ..., .95 and over
          classes; the headline COCO number, rewarding precise localisation.
        - `map50`: AP at IoU .50 over classes, the Pascal VOC style number;
          forgiving of loose boxes.
        - `map75`: AP at IoU .75, a strict localisation test.
        - `map_small`, `map_medium`, `map_large`: `map` restricted to objects
          with an area up to 32², between 32² and 96², and from 96² pixels of
          the original image (both bounds belong to both neighbouring ranges).
        - `per_class_ap`: `{class name: AP at IoU .50:.95}`, to find the
          classes that pull `map` down.
        - `per_class_ap50`: `{class name: AP at IoU .50}`.
        - `num_images`: N.
        - `num_objects`: the true boxes that are scored (not padding, not ignored).

        Classes with no true boxes are left out of every mean, so a detection
        of such a class costs nothing; their per-class entries are `None`.

    Raises:
        ValueError: when an array has the wrong shape or a class id is out of range.

    Example:

    ```python
    targets = np.array([[[10, 10, 50, 60, 0, 0]]], np.float32)
    predictions = {"boxes": targets[..., :4], "scores": np.ones([1, 1]),
                   "class_ids": np.zeros([1, 1], int), "num_detections": np.array([1])}
    coco_metrics(targets, predictions, ["cat"])["map"]  # 1.0, up to float rounding
    ```
    """
    targets = np.asarray(targets, np.float64)
    if targets.ndim != 3 or targets.shape[-1] != 6:
        raise ValueError(f"targets must have shape [N, M, 6]. Received: shape={targets.shape}")
    num_classes = len(class_names)
    ground_truth = _ground_truth(targets, class_names)
    detections = _detections(predictions, len(targets), num_classes)
    evaluation = _run_cocoeval(ground_truth, detections)
    stats = [_defined(value) for value in evaluation.stats[:6]]
    precision = evaluation.eval["precision"][..., _AREA_ALL, _MAX_DETECTIONS_100]
    return {
        "map": stats[0],
        "map50": stats[1],
        "map75": stats[2],
        "map_small": stats[3],
        "map_medium": stats[4],
        "map_large": stats[5],
        "per_class_ap": {name: _mean_defined(precision[:, :, k])
                         for k, name in enumerate(class_names)},
        "per_class_ap50": {name: _mean_defined(precision[_IOU_50, :, k])
                           for k, name in enumerate(class_names)},
        "num_images": int(len(targets)),
        "num_objects": int(((targets[..., 4] >= 0) & (targets[..., 5] <= 0)).sum()),
    }


def _ground_truth(targets: np.ndarray, class_names: Sequence[str]) -> Any:
    """The padded targets as a pycocotools `COCO` object.

    Ids count from 1 as in COCO files. For annotations this matters:
    COCOeval records a match as the partner's id and reads 0 as "unmatched".
    """
    from pycocotools.coco import COCO

    class_ids = targets[..., 4]
    _check_class_ids(class_ids[class_ids >= 0], len(class_names), "targets")
    annotations = []
    for image, box_index in zip(*np.nonzero(class_ids >= 0)):
        x_min, y_min, x_max, y_max, class_id, ignore = targets[image, box_index].tolist()
        width, height = x_max - x_min, y_max - y_min
        annotations.append({
            "id": len(annotations) + 1, "image_id": int(image) + 1,
            "category_id": int(class_id) + 1, "bbox": [x_min, y_min, width, height],
            "area": width * height, "iscrowd": int(ignore > 0),
        })
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": image + 1} for image in range(len(targets))],
        "categories": [{"id": k + 1, "name": str(name)} for k, name in enumerate(class_names)],
        "annotations": annotations,
    }
    with _quiet():
        ground_truth.createIndex()
    return ground_truth


def _detections(predictions: Mapping[str, Any], num_images: int,
                num_classes: int) -> list[dict[str, Any]]:
    """The valid detections of each image as COCO result records."""
    boxes = np.asarray(predictions["boxes"], np.float64)
    scores = np.asarray(predictions["scores"], np.float64)
    class_ids = np.asarray(predictions["class_ids"]).astype(np.int64)
    counts = np.asarray(predictions["num_detections"]).astype(np.int64).reshape(-1)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or len(boxes) != num_images:
        raise ValueError(f"predictions['boxes'] must have shape [{num_images}, K, 4]. "
                         f"Received: shape={boxes.shape}")
    records = []
    for image in range(num_images):
        count = min(int(counts[image]), boxes.shape[1])
        valid = np.nonzero(class_ids[image, :count] >= 0)[0]
        _check_class_ids(class_ids[image, valid], num_classes, "predictions['class_ids']")
        for index in valid:
            x_min, y_min, x_max, y_max = boxes[image, index].tolist()
            records.append({
                "image_id": image + 1, "category_id": int(class_ids[image, index]) + 1,
                "bbox": [x_min, y_min, x_max - x_min, y_max - y_min],
                "score": float(scores[image, index]),
            })
    return records


def _check_class_ids(class_ids: np.ndarray, num_classes: int, where: str) -> None:
    if class_ids.size and (class_ids.max() >= num_classes or class_ids.min() < 0):
        raise ValueError(f"{where} holds class ids outside [0, {num_classes}) for "
                         f"{num_classes} class names. Received: ids "
                         f"{sorted(set(int(i) for i in class_ids.ravel()))}")


def _run_cocoeval(ground_truth: Any, detections: list[dict[str, Any]]) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        if detections:
            results = ground_truth.loadRes(detections)
        else:
            # loadRes fails on an empty list; an empty result set still lets
            # COCOeval score every class with true boxes as AP 0 and keep -1
            # for the rest, which made-up zeros would get wrong.
            results = COCO()
            results.dataset = {"images": list(ground_truth.dataset["images"]),
                               "categories": list(ground_truth.dataset["categories"]),
                               "annotations": []}
            results.createIndex()
        evaluation = COCOeval(ground_truth, results, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


@contextlib.contextmanager
def _quiet():
    """Swallow pycocotools' progress prints, which would interleave with ftk's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _defined(value: float) -> float | None:
    return None if value < 0 else float(value)


def _mean_defined(precision: np.ndarray) -> float | None:
    """Mean of the entries pycocotools filled in; -1 marks "no true boxes"."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else None

