"""Object detection: COCO JSON or Pascal VOC data, an FPN + FCOS head over an
image backbone's stride 8/16/32 feature maps, COCO mAP. Registered like any
third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import images
from ftk.config import merged

CONFIG = merged(images.IMAGE_CONFIG, {
    "data": {
        "image_dir": None,
        "clip_tolerance": 0.05,
        "augment": True,
        "augmentation": {"flip": "horizontal", "scale_min": 0.6, "scale_max": 1.4, "photometric": 0.2},
    },
    "backbone": {"image_size": 256},
    "head": {"width": 64, "depth": 2, "score_threshold": 0.05, "iou_threshold": 0.6,
             "max_detections": 100},
    "loss": {"box_weight": 1.0, "centerness_weight": 1.0, "focal_alpha": 0.25,
             "focal_gamma": 2.0},
    "train": {"epochs": 15, "batch_size": 16, "learning_rate": 2e-3, "warmup_ratio": 0.05},
})


def _read(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    from ftk.plugins.detection.annotations import read_detection_data

    return read_detection_data(path, config)


def _label_space(examples: ftk.Examples) -> ftk.LabelSpace:
    classes = examples.classes or sorted({name for label in examples.labels
                                          for name in label["classes"]})
    if not classes:
        raise ftk.DataError(f"{examples.source} declares no classes and has no boxes. "
                            "Add annotated objects.")
    return ftk.LabelSpace(tuple(classes))


def _encode(labels: list[dict], label_space: ftk.LabelSpace, source: str) -> Any:
    from ftk.plugins.detection.preprocessor import encode_detection_targets

    return encode_detection_targets(labels, label_space, source)


def _preprocessor(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.detection.preprocessor import build_detection_preprocessor

    return build_detection_preprocessor(backbone, config)


def _head(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.detection.model import FcosHead

    head = config["head"]
    return FcosHead(label_space.num_classes, config["backbone"]["image_size"],
                    width=head["width"], depth=head["depth"], backbone_name=backbone.name,
                    name="head")


def _loss(label_space: ftk.LabelSpace, config: Mapping[str, Any], class_counts: Any) -> Any:
    from ftk.plugins.detection.postprocess import build_detection_loss

    return build_detection_loss(label_space, config)


def _postprocess(outputs: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any],
                 features: Any = None) -> dict:
    from ftk.plugins.detection.postprocess import postprocess_detections

    return postprocess_detections(outputs, label_space, config, features)


def _evaluate(targets: Any, predictions: Mapping[str, Any], label_space: ftk.LabelSpace,
              config: Mapping[str, Any]) -> dict:
    from ftk.plugins.detection.evaluation import coco_metrics

    return coco_metrics(targets, predictions, label_space.classes)


def _format(row: Mapping[str, Any], label_space: ftk.LabelSpace) -> dict:
    from ftk.plugins.detection.postprocess import format_detections

    return format_detections(row, label_space)


def _prediction_inputs(values: list[str], config: Mapping[str, Any]) -> list[str]:
    return [path for value in values for path in images.image_paths(value)]


def _write_samples(predictor: Any, examples: ftk.Examples, run_dir: Path) -> None:
    from ftk.plugins.detection.draw import save_detection_samples

    chosen = list(range(min(6, len(examples))))
    predictions = predictor.predict([examples.inputs[i] for i in chosen])
    samples = [(examples.inputs[i], prediction, examples.labels[i])
               for i, prediction in zip(chosen, predictions)]
    save_detection_samples(samples, run_dir / "plots" / "detection_samples.png")


def _draw(path: str, prediction: Mapping[str, Any], target: Path) -> None:
    from ftk.plugins.detection.draw import save_prediction_drawing

    save_prediction_drawing(path, prediction, target)


def _demo_data(folder: Path) -> dict[str, Path]:
    from ftk.plugins.detection.demo import demo_detection_data

    return demo_detection_data(folder)


TASK = ftk.Task(
    name="detection",
    default_backbone="efficientnet-lite0",
    description="Detect objects (COCO JSON or Pascal VOC) with an FPN + FCOS head on image "
                "feature maps.",
    read_data=_read,
    build_label_space=_label_space,
    encode_targets=_encode,
    build_preprocessor=_preprocessor,
    build_head=_head,
    build_loss=_loss,
    evaluate=_evaluate,
    evaluate_on="predictions",
    postprocess=_postprocess,
    format_prediction=_format,
    prediction_inputs=_prediction_inputs,
    write_samples=_write_samples,
    draw_prediction=_draw,
    config=CONFIG,
    config_types={**images.IMAGE_TYPES, "data.image_dir": str},
    config_choices={"data.format": ("auto", "coco", "voc"),
                    "data.augmentation.flip": ("horizontal", "none")},
    demo_data=_demo_data,
    head_name="FPN + FCOS (anchor-free)",
    loss_name="focal + GIoU + centerness",
)


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(TASK)
