"""Image classification: a folder per class or a CSV of paths, on a TF Hub image
backbone (a feature vector, or a dict with one). Registered like any
third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import classification, images
from ftk.config import merged

CONFIG = merged(classification.CLASSIFICATION_CONFIG, images.IMAGE_CONFIG, {
    "data": {
        "image_column": "image",
        "label_column": "label",
        "augment": True,
        "augmentation": {"crop_area": 0.5, "flip": "horizontal", "color_jitter": 0.2,
                         "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
    },
    "head": {"dropout": 0.2},
    # A linear head on frozen ImageNet features learns fast at this rate; a
    # trainable backbone gets 5e-5 through the multiplier.
    "train": {"epochs": 5, "learning_rate": 5e-3, "backbone_lr_multiplier": 0.01},
})


class ImageClassification(classification.ClassificationTask):
    """Classify images (a folder per class, or a CSV) with an image backbone."""

    name = "image_classification"
    file_inputs = True
    page = {"input": "file", "show": "scores"}
    default_backbone = "efficientnet-lite0"
    description = "Classify images (a folder per class, or a CSV) with a TF Hub image backbone."
    head_name = "dropout + dense"
    loss_name = "cross-entropy or focal (label smoothing, class weights)"
    defaults = CONFIG
    config_types: Mapping[str, Any] = {**classification.CLASSIFICATION_TYPES, **images.IMAGE_TYPES}
    config_choices: Mapping[str, tuple[Any, ...]] = {
        **classification.CLASSIFICATION_CHOICES,
        "data.format": ("auto", "folder", "csv"),
        "data.augmentation.flip": ("horizontal", "vertical", "both", "none")}

    def check_config(self) -> None:
        from ftk.plugins.image_classification.preprocessor import check_augmentation

        super().check_config()
        images.check_image_config(self.config)
        check_augmentation(self.config["data"]["augmentation"])

    def read_data(self, path: str) -> ftk.Examples:
        from ftk.plugins.image_classification.reader import read_image_data

        return read_image_data(path, self.config)

    def build_preprocessor(self, backbone: Any) -> ftk.Preprocessor:
        from ftk.plugins.image_classification.preprocessor import build_image_preprocessor

        return build_image_preprocessor(backbone, self.config, self.space.num_classes)

    def build_head(self, backbone: Any) -> Any:
        from ftk.plugins.image_classification.head import ImageClassificationHead

        return ImageClassificationHead(self.space.num_classes,
                                       dropout=self.config["head"]["dropout"], name="head")

    def prediction_inputs(self, values: list[str]) -> list[str]:
        from ftk.plugins.image_classification.reader import prediction_inputs

        return prediction_inputs(values, self.config)

    def prediction_batches(self, inputs: Any, batch_size: int) -> Any:
        return images.prediction_batches(inputs, batch_size, self.config["data"].get(
            "max_image_pixels", images.MAX_IMAGE_PIXELS))

    def tflite_batches(self, inputs: Any, batch_size: int, facts: Mapping[str, Any]) -> Any:
        return images.pixel_batches(inputs, facts["size"], batch_size,
                                    self.config["data"].get("max_image_pixels",
                                                            images.MAX_IMAGE_PIXELS))

    def demo_data(self, folder: Path) -> dict[str, Path]:
        from ftk.plugins.image_classification.demo import demo_image_data

        return demo_image_data(folder)


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(ImageClassification)
