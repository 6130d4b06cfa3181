"""Loss, metrics, evaluation and postprocessing shared by classification tasks.

Text and image classification differ in their inputs, not in what happens to
logits, so both plugins build their Task from these pieces.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ftk.errors import ConfigError
from ftk.labels import LabelSpace
from ftk.rundir import write_text_atomic

# Config keys every classification task offers, merged into its own defaults.
CLASSIFICATION_CONFIG: dict[str, Any] = {
    "head": {"dropout": 0.1},
    "loss": {"name": "cross_entropy", "focal_gamma": 2.0, "label_smoothing": 0.0,
             "class_weights": None},
}
CLASSIFICATION_CHOICES: dict[str, tuple[str, ...]] = {"loss.name": ("cross_entropy", "focal")}
CLASSIFICATION_TYPES: dict[str, Any] = {"loss.class_weights": (str, dict)}


def class_weight_vector(label_space: LabelSpace, config: Mapping[str, Any],
                        counts: np.ndarray | None = None) -> np.ndarray | None:
    """Per-class loss weights from `loss.class_weights` ("balanced" or a mapping)."""
    spec = config["loss"]["class_weights"]
    if spec is None:
        return None
    if spec == "balanced":
        if counts is None:
            return None
        counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
        return (counts.sum() / (len(counts) * counts)).astype(np.float32)
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(label_space.classes))
        if unknown:
            raise ConfigError(
                f"loss.class_weights names classes not in the data: {', '.join(map(str, unknown))}. "
                f"Classes: {', '.join(label_space.classes)}"
            )
        return np.asarray([float(spec.get(c, 1.0)) for c in label_space.classes], np.float32)
    raise ConfigError(
        f"loss.class_weights must be 'balanced' or a mapping of class to weight. Received: {spec!r}"
    )


def build_classification_loss(label_space: LabelSpace, config: Mapping[str, Any],
                              class_counts: np.ndarray | None = None) -> Any:
    """Cross-entropy on logits (focal with `loss.name: focal`), with label
    smoothing and optional class weights."""
    from ftk.losses import WeightedCrossEntropy

    focal = config["loss"]["name"] == "focal"
    return WeightedCrossEntropy(
        num_classes=label_space.num_classes,
        multi_label=label_space.multi_label,
        label_smoothing=float(config["loss"]["label_smoothing"]),
        class_weights=class_weight_vector(label_space, config, class_counts),
        focal_gamma=float(config["loss"]["focal_gamma"]) if focal else 0.0,
        name="focal" if focal else "cross_entropy",
    )


def build_classification_metrics(label_space: LabelSpace, config: Mapping[str, Any]) -> list:
    import tf_keras as keras

    if label_space.multi_label:
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    metrics = [keras.metrics.MeanMetricWrapper(_top_k_hits(1), name="accuracy")]
    if label_space.num_classes > 5:
        metrics.append(keras.metrics.MeanMetricWrapper(_top_k_hits(5), name="top5_accuracy"))
    return metrics


def _top_k_hits(k: int) -> Any:
    """Whether the true class is among the k highest logits; targets may be
    class indices or rows of class probabilities (mixup), whose argmax counts."""
    import tensorflow as tf

    def hits(y_true: Any, y_pred: Any) -> Any:
        if y_true.shape.rank == 2 and y_true.shape[-1] == y_pred.shape[-1]:
            y_true = tf.argmax(y_true, -1)
        indices = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return tf.cast(tf.math.in_top_k(indices, tf.cast(y_pred, tf.float32), k), tf.float32)

    return hits


def evaluate_classification(targets: np.ndarray, outputs: np.ndarray,
                            label_space: LabelSpace, config: Mapping[str, Any]) -> dict:
    """Accuracy, F1 (macro; micro too for multi-label), per-class P/R, confusion."""
    classes = list(label_space.classes)
    if label_space.multi_label:
        predicted = (outputs > 0.0).astype(np.int64)
        truth = targets.astype(np.int64)
        tp = (predicted & truth).sum(0)
        fp = (predicted & (1 - truth)).sum(0)
        fn = ((1 - predicted) & truth).sum(0)
        precision, recall, f1 = _prf(tp, fp, fn)
        micro_p, micro_r, micro_f1 = _prf(tp.sum(), fp.sum(), fn.sum())
        return {
            "subset_accuracy": float((predicted == truth).all(1).mean()),
            "micro_f1": float(micro_f1),
            "macro_f1": float(f1.mean()),
            "per_class": _per_class(classes, precision, recall, f1, truth.sum(0)),
            "num_examples": int(len(truth)),
        }
    predicted = outputs.argmax(-1)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (targets, predicted), 1)
    tp = np.diag(confusion)
    precision, recall, f1 = _prf(tp, confusion.sum(0) - tp, confusion.sum(1) - tp)
    metrics = {
        "accuracy": float((predicted == targets).mean()),
        "macro_f1": float(f1.mean()),
        "per_class": _per_class(classes, precision, recall, f1, confusion.sum(1)),
        "confusion_matrix": confusion.tolist(),
        "num_examples": int(len(targets)),
    }
    if len(classes) > 5:
        top5 = np.argsort(-outputs, axis=-1)[:, :5]
        metrics["top5_accuracy"] = float((top5 == targets[:, None]).any(-1).mean())
    return metrics


def _prf(tp: Any, fp: Any, fn: Any) -> tuple[Any, Any, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / (tp + fp))
        recall = np.nan_to_num(tp / (tp + fn))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return precision, recall, f1


def _per_class(classes: list[str], precision: Any, recall: Any, f1: Any, support: Any) -> dict:
    return {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    }


def postprocess_classification(outputs: Any, label_space: LabelSpace,
                               config: Mapping[str, Any]) -> dict:
    """Logits to `label`, `score` and `scores` (plus a `predicted` mask if multi-label)."""
    import tensorflow as tf

    classes = tf.constant(list(label_space.classes))
    outputs = tf.cast(outputs, tf.float32)
    scores = tf.sigmoid(outputs) if label_space.multi_label else tf.nn.softmax(outputs, -1)
    best = tf.argmax(scores, axis=-1)
    result = {"label": tf.gather(classes, best), "score": tf.reduce_max(scores, -1),
              "scores": scores}
    if label_space.multi_label:
        result["predicted"] = scores > 0.5
    return result


def format_classification(row: Mapping[str, Any], label_space: LabelSpace) -> dict:
    """One example's postprocessed outputs as JSON-ready values."""
    scores = {name: round(float(s), 6) for name, s in zip(label_space.classes, row["scores"])}
    result: dict[str, Any] = {"label": _text(row["label"]), "score": round(float(row["score"]), 6)}
    if label_space.multi_label:
        result["labels"] = [n for n, hit in zip(label_space.classes, row["predicted"]) if hit]
    result["scores"] = scores
    return result


def write_classification_artifacts(metrics: Mapping[str, Any], label_space: LabelSpace,
                                   run_dir: Path) -> None:
    """`confusion_matrix.csv` and `plots/confusion_matrix.png` for single-label runs."""
    if "confusion_matrix" not in metrics:
        return
    matrix = np.asarray(metrics["confusion_matrix"])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *label_space.classes])
    for name, row in zip(label_space.classes, matrix):
        writer.writerow([name, *row.tolist()])
    write_text_atomic(run_dir / "confusion_matrix.csv", buffer.getvalue())
    from ftk.plots import plot_confusion_matrix

    plot_confusion_matrix(matrix, label_space.classes, run_dir / "plots" / "confusion_matrix.png")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# The Task fields every classification plugin takes as they are:
# `ftk.Task(name=..., read_data=..., ..., **classification.TASK_FIELDS)`.
TASK_FIELDS: dict[str, Any] = {
    "build_loss": build_classification_loss,
    "build_metrics": build_classification_metrics,
    "evaluate": evaluate_classification,
    "postprocess": postprocess_classification,
    "format_prediction": format_classification,
    "write_artifacts": write_classification_artifacts,
}
