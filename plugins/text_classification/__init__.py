"""Text classification: CSV/TSV/JSONL or folders of .txt files, on a TF Hub text
embedding or a BERT-style encoder. Registered like any third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ftk
from ftk import classification
from ftk.config import merged

DEMO_FOLDER = Path(__file__).parent / "demo"


class TextClassification(classification.ClassificationTask):
    """Classify texts (single- or multi-label) with a text embedding or a
    BERT-style encoder."""

    name = "text_classification"
    default_backbone = "minilm-l6"
    description = "Classify texts (single- or multi-label) with a text embedding or BERT-style encoder."
    head_name = "pooling + dropout + dense"
    loss_name = "cross-entropy (label smoothing, class weights)"
    defaults = merged(classification.CLASSIFICATION_CONFIG, {
        "data": {"text_column": "text", "label_column": "label", "multi_label": False,
                 "label_delimiter": "|", "skip_bad_rows": False},
        "backbone": {"max_seq_length": 128},
        "head": {"pooling": "auto"},
        # A frozen encoder's features suit a fast head learning rate; the backbone,
        # when trainable, gets 5e-5 through the multiplier, as BERT fine-tuning does.
        "train": {"epochs": 5, "learning_rate": 5e-3, "backbone_lr_multiplier": 0.01},
    })
    config_choices: Mapping[str, tuple[Any, ...]] = {
        **classification.CLASSIFICATION_CHOICES,
        "head.pooling": ("auto", "pooled", "cls", "mean"),
        "data.format": ("auto", "csv", "tsv", "jsonl", "folder")}

    def check_config(self) -> None:
        from ftk.config import require

        super().check_config()
        require(self.config, "backbone.max_seq_length", lambda v: v >= 3, "at least 3")

    def read_data(self, path: str) -> ftk.Examples:
        from ftk.plugins.text_classification.reader import read_text_data

        return read_text_data(path, self.config)

    def build_preprocessor(self, backbone: Any) -> ftk.Preprocessor:
        from ftk.text.preprocessors import build_text_preprocessor

        return build_text_preprocessor(backbone, self.config["backbone"]["max_seq_length"],
                                       task=self.name)

    def build_head(self, backbone: Any) -> Any:
        from ftk.plugins.text_classification.head import TextClassificationHead

        return TextClassificationHead(self.space.num_classes, pooling=self.config["head"]["pooling"],
                                      dropout=self.config["head"]["dropout"], name="head")

    def prediction_inputs(self, values: list[str]) -> list[str]:
        from ftk.text.reading import prediction_texts

        return prediction_texts(values, self.config["data"]["text_column"])

    def demo_data(self, folder: Path) -> dict[str, Path]:
        return {split: DEMO_FOLDER / f"{split}.csv" for split in ("train", "validation", "test")}


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(TextClassification)
