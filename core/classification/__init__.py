"""Classification: the space of classes, and the loss, metrics, evaluation,
predictions and reports every classification task shares.

Text and image classification differ in their inputs, not in what happens to
logits, so both tasks derive from `ClassificationTask` and define only their
reader, preprocessor and head.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ftk.errors import ConfigError, DataError
from ftk.targets import TargetSpace
from ftk.task import Examples, Task

log = logging.getLogger(__name__)


class ClassSpace(TargetSpace):
    """The classes of a run, in the order of the model's outputs.

    Attributes:
        classes: class names, sorted (or as the data declares them), as
            written to `labels.txt`.
        multi_label: whether an example may carry several classes.
        counts: training examples per class, when built from training data.
    """

    kind: ClassVar[str] = "classes"

    def __init__(self, classes: Sequence[str], multi_label: bool = False,
                 counts: Sequence[int] | None = None):
        self.classes = tuple(classes)
        self.multi_label = multi_label
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)

    @classmethod
    def from_examples(cls, examples: Examples) -> "ClassSpace":
        """The classes seen in training targets (class names, or lists of them)."""
        targets = examples.targets
        multi_label = bool(targets) and isinstance(targets[0], (list, tuple))
        names = {name for target in targets for name in (target if multi_label else [target])}
        if len(names) < 2:
            raise DataError(
                f"{examples.source or 'The training data'} has {len(names)} class "
                f"({', '.join(sorted(map(str, names))) or 'none'}); classification needs at least "
                "two. Add examples of other classes."
            )
        space = cls(sorted(names), multi_label)
        encoded = space.encode(targets, examples.source)
        counts = encoded.sum(0) if multi_label else np.bincount(encoded, minlength=len(names))
        return cls(space.classes, multi_label, counts)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode(self, targets: Sequence[Any], source: str) -> np.ndarray:
        """Class indices (int32), or multi-hot rows (float32) for multi-label."""
        index = {name: i for i, name in enumerate(self.classes)}

        def lookup(name: str) -> int:
            if name not in index:
                raise DataError(
                    f"{source}: label {name!r} does not occur in the training data "
                    f"(classes: {', '.join(self.classes)}). Fix the label or add "
                    "training examples of it."
                )
            return index[name]

        if not self.multi_label:
            return np.asarray([lookup(target) for target in targets], dtype=np.int32)
        encoded = np.zeros((len(targets), self.num_classes), dtype=np.float32)
        for row, names in enumerate(targets):
            for name in names:
                encoded[row, lookup(name)] = 1.0
        return encoded

    def files(self) -> dict[str, str]:
        return {"labels.txt": "\n".join(self.classes) + "\n"}

    def summary(self) -> str:
        return f"{self.num_classes} classes" + (", multi-label" if self.multi_label else "")

    def to_json(self) -> dict[str, Any]:
        # Counts travel too: `loss.class_weights: balanced` needs them when the
        # space is read back from a TFRecord manifest.
        counts = None if self.counts is None else self.counts.tolist()
        return {"kind": self.kind, "classes": list(self.classes), "multi_label": self.multi_label,
                "counts": counts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ClassSpace":
        return cls(data["classes"], bool(data.get("multi_label", False)), data.get("counts"))


def stratified_split(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """A seeded split keeping every class in both parts; multi-label targets
    have no strata and are split at random."""
    targets = list(examples.targets)
    rng = np.random.default_rng(seed)
    if targets and not isinstance(targets[0], str):
        order = rng.permutation(len(targets))
        count = min(len(targets) - 1, max(1, int(round(fraction * len(targets)))))
        return (examples.subset(sorted(order[count:]), "train"),
                examples.subset(sorted(order[:count]), "validation"))
    by_class: dict[Any, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    train_ids, val_ids = [], []
    for name, ids in sorted(by_class.items()):
        if len(ids) < 2:
            raise DataError(
                f"{examples.source}: class {name!r} has only {len(ids)} example, so the "
                "validation split would have none. Add examples of it, or pass a "
                "validation file with --val-data."
            )
        ids = rng.permutation(ids).tolist()
        count = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        val_ids += ids[:count]
        train_ids += ids[count:]
    return examples.subset(sorted(train_ids), "train"), examples.subset(sorted(val_ids), "validation")


def warn_missing_classes(examples: Examples, space: ClassSpace) -> None:
    """Log a warning when a class never occurs in an evaluation split."""
    seen = {name for target in examples.targets
            for name in (target if isinstance(target, (list, tuple)) else [target])}
    missing = [name for name in space.classes if name not in seen]
    if missing:
        log.warning(f"{examples.source} has no examples of class(es) {', '.join(missing)}; "
                    "their metrics will be 0.")


# Config keys every classification task offers, merged into its own defaults.
CLASSIFICATION_CONFIG: dict[str, Any] = {
    "head": {"dropout": 0.1},
    "loss": {"name": "cross_entropy", "focal_gamma": 2.0, "label_smoothing": 0.0,
             "class_weights": None},
}
CLASSIFICATION_CHOICES: dict[str, tuple[str, ...]] = {"loss.name": ("cross_entropy", "focal")}
CLASSIFICATION_TYPES: dict[str, Any] = {"loss.class_weights": (str, dict)}


def class_weight_vector(space: ClassSpace, config: Mapping[str, Any]) -> np.ndarray | None:
    """Per-class loss weights from `loss.class_weights` ("balanced" or a mapping)."""
    spec = config["loss"]["class_weights"]
    if spec is None:
        return None
    if spec == "balanced":
        if space.counts is None:
            return None
        counts = np.maximum(space.counts.astype(np.float64), 1.0)
        return (counts.sum() / (len(counts) * counts)).astype(np.float32)
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(space.classes))
        if unknown:
            raise ConfigError(
                f"loss.class_weights names classes not in the data: {', '.join(map(str, unknown))}. "
                f"Classes: {', '.join(space.classes)}"
            )
        return np.asarray([float(spec.get(c, 1.0)) for c in space.classes], np.float32)
    raise ConfigError(
        f"loss.class_weights must be 'balanced' or a mapping of class to weight. Received: {spec!r}"
    )


def build_classification_loss(space: ClassSpace, config: Mapping[str, Any]) -> Any:
    """Cross-entropy on logits (focal with `loss.name: focal`), with label
    smoothing and optional class weights."""
    from ftk.classification.losses import WeightedCrossEntropy

    focal = config["loss"]["name"] == "focal"
    return WeightedCrossEntropy(
        num_classes=space.num_classes,
        multi_label=space.multi_label,
        label_smoothing=float(config["loss"]["label_smoothing"]),
        class_weights=class_weight_vector(space, config),
        focal_gamma=float(config["loss"]["focal_gamma"]) if focal else 0.0,
        name="focal" if focal else "cross_entropy",
    )


def build_classification_metrics(space: ClassSpace) -> list:
    import tf_keras as keras

    if space.multi_label:
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    metrics = [keras.metrics.MeanMetricWrapper(_top_k_hits(1), name="accuracy")]
    if space.num_classes > 5:
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


def evaluate_classification(targets: np.ndarray, outputs: np.ndarray, space: ClassSpace) -> dict:
    """Accuracy, F1 (macro; micro too for multi-label), per-class P/R, confusion."""
    classes = list(space.classes)
    if space.multi_label:
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
    from ftk.classification.reports import MATRIX_IN_METRICS, confusion_matrix

    predicted = outputs.argmax(-1)
    count = len(classes)
    # Per-class counts without the N x N matrix, which grows too large for many classes.
    support = np.bincount(targets, minlength=count)
    tp = np.bincount(targets[predicted == targets], minlength=count)
    precision, recall, f1 = _prf(tp, np.bincount(predicted, minlength=count) - tp, support - tp)
    metrics = {
        "accuracy": float((predicted == targets).mean()),
        "macro_f1": float(f1.mean()),
        "per_class": _per_class(classes, precision, recall, f1, support),
        "num_examples": int(len(targets)),
    }
    if count <= MATRIX_IN_METRICS:
        metrics["confusion_matrix"] = confusion_matrix(targets, predicted, count).tolist()
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


def postprocess_classification(outputs: Any, space: ClassSpace) -> dict:
    """Logits to `label`, `score` and `scores` (plus a `predicted` mask if multi-label)."""
    import tensorflow as tf

    classes = tf.constant(list(space.classes))
    outputs = tf.cast(outputs, tf.float32)
    scores = tf.sigmoid(outputs) if space.multi_label else tf.nn.softmax(outputs, -1)
    best = tf.argmax(scores, axis=-1)
    result = {"label": tf.gather(classes, best), "score": tf.reduce_max(scores, -1),
              "scores": scores}
    if space.multi_label:
        result["predicted"] = scores > 0.5
    return result


def format_classification(row: Mapping[str, Any], space: ClassSpace) -> dict:
    """One example's postprocessed outputs as JSON-ready values."""
    scores = {name: round(float(s), 6) for name, s in zip(space.classes, row["scores"])}
    result: dict[str, Any] = {"label": _text(row["label"]), "score": round(float(row["score"]), 6)}
    if space.multi_label:
        result["labels"] = [n for n, hit in zip(space.classes, row["predicted"]) if hit]
    result["scores"] = scores
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class ClassificationTask(Task):
    """A task whose targets are classes: single-label (a class name per
    example) or multi-label (a list of names).

    Subclasses define `read_data`, `build_preprocessor` and `build_head`; the
    head returns one logit per class (`self.space.num_classes`). This class
    gives the class space, a stratified validation split, cross-entropy or
    focal loss with label smoothing and class weights, accuracy metrics,
    whole-set evaluation (accuracy, macro F1, per-class precision/recall,
    confusion matrix), labels and scores as predictions, and the confusion
    matrix report.
    """

    defaults: ClassVar[Mapping[str, Any]] = CLASSIFICATION_CONFIG
    config_types: ClassVar[Mapping[str, Any]] = CLASSIFICATION_TYPES
    config_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = CLASSIFICATION_CHOICES
    space_type = ClassSpace
    page: ClassVar[Mapping[str, str]] = {"input": "text", "show": "scores"}
    metric_directions: ClassVar[Mapping[str, str]] = {
        "accuracy": "max", "top5_accuracy": "max"}
    space: ClassSpace
    evaluated: tuple[Any, Any] | None = None

    def check_config(self) -> None:
        from ftk.config import require

        config = self.config
        require(config, "head.dropout", lambda v: 0 <= v < 1, "at least 0 and below 1")
        require(config, "loss.label_smoothing", lambda v: 0 <= v < 1, "at least 0 and below 1")
        require(config, "loss.focal_gamma", lambda v: v >= 0, "0 or more")
        require(config, "loss.class_weights",
                lambda v: v is None or v == "balanced" or (isinstance(v, dict) and all(
                    isinstance(w, (int, float)) and w >= 0 for w in v.values())),
                "'balanced' or a mapping of class name to a weight of 0 or more")

    def split_validation(self, examples: Examples, fraction: float,
                         seed: int) -> tuple[Examples, Examples]:
        return stratified_split(examples, fraction, seed)

    def encode_targets(self, examples: Examples) -> np.ndarray:
        encoded = self.space.encode(examples.targets, examples.source)
        if not self.space.multi_label:
            warn_missing_classes(examples, self.space)
        return encoded

    def build_loss(self) -> Any:
        return build_classification_loss(self.space, self.config)

    def build_metrics(self) -> list:
        return build_classification_metrics(self.space)

    def evaluate(self, targets: Any, outputs: Any) -> dict[str, Any]:
        # Kept for the confusion report, which needs every (true, predicted) pair.
        self.evaluated = None if self.space.multi_label else (targets, outputs.argmax(-1))
        return evaluate_classification(targets, outputs, self.space)

    def postprocess(self, outputs: Any, features: Any) -> dict[str, Any]:
        return postprocess_classification(outputs, self.space)

    def format_prediction(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return format_classification(row, self.space)

    def write_reports(self, metrics: Mapping[str, Any], run: Any) -> None:
        from ftk.classification.reports import confusion_report

        if self.evaluated is not None:
            confusion_report(*self.evaluated, self.space, run)
