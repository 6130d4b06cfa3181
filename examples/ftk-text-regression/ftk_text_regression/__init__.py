"""A third-party ftk plugin: text regression, a number per text.

It reads CSV, TSV or JSONL with a text column and a numeric target column,
fine-tunes a head over any text backbone on standardised targets (MSE or Huber
loss), and reports MAE, RMSE, R², Pearson and Spearman correlation. It uses
only ftk's public API: the task contract, the default target space of real
numbers (which carries the training targets' mean and spread) and the text
building blocks.
"""

from __future__ import annotations

import math
from typing import Any

import ftk
from ftk.text import reading

__version__ = "0.1.0"


class TextRegression(ftk.Task):
    """Predict a real number for each text."""

    name = "text_regression"
    default_backbone = "minilm-l6"
    description = "Predict a number for each text (CSV/TSV/JSONL with a numeric column)."
    head_name = "pooling + dropout + dense, on standardised targets"
    loss_name = "MSE or Huber"
    defaults = {
        "data": {"text_column": "text", "target_column": "score"},
        "backbone": {"max_seq_length": 128},
        "head": {"pooling": "auto", "dropout": 0.1},
        "loss": {"name": "mse", "huber_delta": 1.0},
        "train": {"epochs": 10, "learning_rate": 5e-3},
    }
    config_choices = {"loss.name": ("mse", "huber"), "head.pooling": ("auto", "pooled", "cls", "mean"),
                      "data.format": ("auto", "csv", "tsv", "jsonl")}
    # Errors are better low; every metric shown during training is an error.
    metric_directions = {"mae": "min", "rmse": "min"}
    space: ftk.RealSpace

    def check_config(self) -> None:
        delta = self.config["loss"]["huber_delta"]
        if not delta > 0:
            raise ftk.ConfigError(f"loss.huber_delta must be above 0. Received: {delta!r}")

    def read_data(self, path: str) -> ftk.Examples:
        data = self.config["data"]
        columns = {"text_column": data["text_column"], "target_column": data["target_column"]}
        texts, targets = [], []
        for where, row in reading.read_rows(path, columns, data["format"]):
            if not isinstance(row["text_column"], str) or not row["text_column"].strip():
                raise ftk.DataError(f"{where}: empty text. Fill it in or remove the row.")
            texts.append(row["text_column"])
            targets.append(_number(row["target_column"], where, data["target_column"]))
        return ftk.Examples(texts, targets, str(path))

    def build_preprocessor(self, backbone: Any) -> ftk.Preprocessor:
        from ftk.text.preprocessors import build_text_preprocessor

        return build_text_preprocessor(backbone, self.config["backbone"]["max_seq_length"],
                                       task=self.name)

    def build_head(self, backbone: Any) -> Any:
        from ftk_text_regression.model import RegressionHead

        return RegressionHead(self.space.mean[0], self.space.std[0], name="head",
                              pooling=self.config["head"]["pooling"],
                              dropout=self.config["head"]["dropout"])

    def build_loss(self) -> Any:
        from ftk_text_regression.model import StandardisedLoss

        loss = self.config["loss"]
        return StandardisedLoss(self.space.mean[0], self.space.std[0], kind=loss["name"],
                                delta=loss["huber_delta"])

    def build_metrics(self) -> list:
        import tf_keras as keras

        return [keras.metrics.MeanAbsoluteError(name="mae"),
                keras.metrics.RootMeanSquaredError(name="rmse")]

    def evaluate(self, targets: Any, outputs: Any) -> dict[str, Any]:
        import numpy as np
        from scipy import stats

        truth, predicted = np.ravel(targets).astype(float), np.ravel(outputs).astype(float)
        errors = predicted - truth
        spread = float(((truth - truth.mean()) ** 2).sum())
        constant = np.ptp(truth) == 0 or np.ptp(predicted) == 0
        return {
            "mae": float(np.abs(errors).mean()),
            "rmse": float(math.sqrt((errors ** 2).mean())),
            "r2": float(1 - (errors ** 2).sum() / spread) if spread > 0 else None,
            # Correlations are undefined when either side is constant.
            "pearson": None if constant else float(stats.pearsonr(truth, predicted)[0]),
            "spearman": None if constant else float(stats.spearmanr(truth, predicted)[0]),
            "num_examples": int(len(truth)),
        }

    def postprocess(self, outputs: Any, features: Any) -> dict[str, Any]:
        return {"score": outputs[:, 0]}

    def format_prediction(self, row: Any) -> dict[str, Any]:
        return {"score": round(float(row["score"]), 6)}

    def prediction_inputs(self, values: list[str]) -> list[str]:
        return reading.prediction_texts(values, self.config["data"]["text_column"])


def _number(value: Any, where: str, column: str) -> float:
    """A finite number from a cell, or an error naming the row and column."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ftk.DataError(f"{where}, column {column!r}: {value!r} is not a number. "
                            "Targets must be finite numbers.")
    return number


@ftk.hookimpl
def ftk_register_tasks(register: Any) -> None:
    register(TextRegression)
