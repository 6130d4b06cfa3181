"""Object detection: COCO JSON or Pascal VOC data, an FPN + FCOS head over an
image backbone's stride 8/16/32 feature maps, COCO mAP. Registered like any
third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import images
from ftk.config import merged
from ftk.plugins.detection.space import BoxSpace

CONFIG = merged(images.IMAGE_CONFIG, {
    "data": {
        "image_dir": None,
        "allow_outside_paths": False,
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


class Detection(ftk.Task):
    """Detect objects: COCO JSON or Pascal VOC data, an FPN + FCOS head over an
    image backbone's stride 8/16/32 feature maps, COCO mAP."""

    name = "detection"
    file_inputs = True
    default_backbone = "efficientnet-lite0"
    description = ("Detect objects (COCO JSON or Pascal VOC) with an FPN + FCOS head on image "
                   "feature maps.")
    head_name = "FPN + FCOS (anchor-free)"
    loss_name = "focal + GIoU + centerness"
    defaults = CONFIG
    config_types: Mapping[str, Any] = {**images.IMAGE_TYPES, "data.image_dir": str}
    config_choices: Mapping[str, tuple[Any, ...]] = {
        "data.format": ("auto", "coco", "voc"), "data.augmentation.flip": ("horizontal", "none")}
    space_type = BoxSpace
    evaluate_on = "predictions"
    main_metric = "map"
    page = {"input": "file", "show": "detections"}
    predict_options = (ftk.Option("draw", str, "Also write each input with its detections "
                                              "drawn into this folder (PNG)."),)
    space: BoxSpace

    def check_config(self) -> None:
        from ftk.config import require
        from ftk.plugins.detection.preprocessor import check_augmentation

        config = self.config
        images.check_image_config(config)
        require(config, "backbone.image_size", lambda v: v is not None and v >= 32,
                "at least 32 (detection resizes every image to this square)")
        check_augmentation(config["data"]["augmentation"])
        require(config, "data.clip_tolerance", lambda v: 0 <= v < 1, "a fraction in [0, 1)")
        for key in ("head.width", "head.depth", "head.max_detections"):
            require(config, key, lambda v: v >= 1, "at least 1")
        for key in ("head.score_threshold", "head.iou_threshold", "loss.focal_alpha"):
            require(config, key, lambda v: 0 <= v <= 1, "between 0 and 1")
        for key in ("loss.box_weight", "loss.centerness_weight", "loss.focal_gamma"):
            require(config, key, lambda v: v >= 0, "0 or more")

    def read_data(self, path: str) -> ftk.Examples:
        from ftk.plugins.detection.annotations import read_detection_data

        return read_detection_data(path, self.config)

    def build_preprocessor(self, backbone: Any) -> ftk.Preprocessor:
        from ftk.plugins.detection.preprocessor import build_detection_preprocessor

        return build_detection_preprocessor(backbone, self.config)

    def build_head(self, backbone: Any) -> Any:
        from ftk.plugins.detection.model import FcosHead

        head = self.config["head"]
        return FcosHead(self.space.num_classes, self.config["backbone"]["image_size"],
                        width=head["width"], depth=head["depth"], backbone_name=backbone.name,
                        name="head")

    def build_loss(self) -> Any:
        from ftk.plugins.detection.postprocess import build_detection_loss

        return build_detection_loss(self.space, self.config)

    def evaluate(self, targets: Any, outputs: Any) -> dict[str, Any]:
        from ftk.plugins.detection.evaluation import coco_metrics

        return coco_metrics(targets, outputs, self.space.classes)

    def postprocess(self, outputs: Any, features: Any) -> dict[str, Any]:
        from ftk.plugins.detection.postprocess import postprocess_detections

        return postprocess_detections(outputs, self.space, self.config, features)

    def format_prediction(self, row: Mapping[str, Any]) -> dict[str, Any]:
        from ftk.plugins.detection.postprocess import format_detections

        return format_detections(row, self.space)

    def prediction_inputs(self, values: list[str]) -> list[str]:
        return [path for value in values for path in images.image_paths(value)]

    def prediction_batches(self, inputs: Any, batch_size: int) -> Any:
        return images.prediction_batches(inputs, batch_size, self.config["data"].get(
            "max_image_pixels", images.MAX_IMAGE_PIXELS))

    def tflite_batches(self, inputs: Any, batch_size: int, facts: Mapping[str, Any]) -> Any:
        return images.pixel_batches(inputs, facts["size"], batch_size,
                                    self.config["data"].get("max_image_pixels",
                                                            images.MAX_IMAGE_PIXELS))

    def tflite_outputs(self, outputs: dict[str, Any], sizes: Any) -> dict[str, Any]:
        import numpy as np

        # The file's boxes are fractions of each image: back to its pixels.
        height, width = sizes[:, 0, None, None], sizes[:, 1, None, None]
        scale = np.concatenate([width, height, width, height], axis=-1)
        return {**outputs, "boxes": outputs["boxes"] * scale}

    def write_samples(self, predictor: Any, examples: ftk.Examples, run: ftk.RunDirectory) -> None:
        from ftk.plugins.detection.draw import detection_samples_png

        chosen = list(range(min(6, len(examples))))
        predictions = predictor.predict([examples.inputs[i] for i in chosen])
        samples = [(examples.inputs[i], prediction, examples.targets[i])
                   for i, prediction in zip(chosen, predictions)]
        picture = detection_samples_png(samples)
        if picture is not None:
            run.write_bytes("plots/detection_samples.png", picture)

    def finish_predictions(self, inputs: Any, predictions: list[dict[str, Any]],
                           draw: str | None = None) -> None:
        from ftk.plugins.detection.draw import save_prediction_drawing

        if draw is None:
            return
        folder = Path(draw)
        folder.mkdir(parents=True, exist_ok=True)
        stems = [Path(str(value)).stem for value in inputs]
        for index, (value, prediction) in enumerate(zip(inputs, predictions)):
            if "error" in prediction:
                continue
            # Inputs from different folders may share a name; each gets its own picture.
            stem = stems[index] if stems.count(stems[index]) == 1 else f"{index:04d}-{stems[index]}"
            target = folder / f"{stem}.png"
            save_prediction_drawing(value, prediction, target)
            prediction["drawing"] = str(target)

    def demo_data(self, folder: Path) -> dict[str, Path]:
        from ftk.plugins.detection.demo import demo_detection_data

        return demo_detection_data(folder)


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(Detection)
