"""The task contract: what a task plugin defines, and what the engine calls.

A task is a subclass of `ftk.Task`. It defines four builders (`read_data`,
`build_preprocessor`, `build_head`, `build_loss`); everything else has a
working default. The engine makes one task object per run, holding the resolved
config (`self.config`) and, once the training data is read, the target space
(`self.space`), so builders take only what differs between calls.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

from ftk.options import Option, option_problems
from ftk.targets import RealSpace, TargetSpace

if TYPE_CHECKING:
    from ftk.preprocessor import Preprocessor
    from ftk.rundir import RunDirectory

DIRECTIONS = ("min", "max")
EVALUATE_ON = ("raw_outputs", "predictions")
ENGINE_SECTIONS = ("task", "data", "backbone", "head", "loss", "train", "output_dir")


@dataclass(frozen=True)
class Examples:
    """Raw examples read from one data source.

    Attributes:
        inputs: one raw input per example, as the preprocessor takes it (a
            text, a file path).
        targets: one raw target per example, as the target space encodes it
            (a class name, a number, a record of boxes).
        source: where they came from, for error messages.
        declared: what the source itself declares about its targets, if
            anything (the categories of a COCO file), for the target space.
    """

    inputs: Sequence[Any]
    targets: Sequence[Any]
    source: str = ""
    declared: Any = None

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices: Sequence[int], part: str) -> "Examples":
        """The examples at `indices`, named `source (part)`."""
        return replace(self, inputs=[self.inputs[i] for i in indices],
                       targets=[self.targets[i] for i in indices],
                       source=f"{self.source} ({part} part)")


class Task:
    """Base class of fine-tuning tasks.

    Class attributes:
        name: what users pass to `--task`.
        default_backbone: preset name, handle or path used without `--backbone`.
        description, head_name, loss_name: shown by `ftk tasks`.
        defaults: the task's config keys and defaults (nested dicts inside the
            engine's sections), merged over the engine's; `ftk config TASK`
            prints the result. A task's default monitor goes in
            `defaults["train"]["monitor"]`.
        config_types: types of task keys whose default is None, by dotted path.
        config_choices: allowed values of keys, by dotted path.
        space_type: the `ftk.TargetSpace` subclass of the task's targets
            (`RealSpace`, numbers, by default).
        metric_directions: `"min"` or `"max"` for each metric the task
            reports during training, by name; `loss` is always `"min"`. A
            `train.monitor` naming a metric without a direction is refused.
        main_metric: the metric `ftk export`'s table compares between a
            TFLite file and its SavedModel; by default the first of
            `metric_directions`.
        evaluate_on: what `evaluate` scores: `"raw_outputs"` (the model's
            outputs) or `"predictions"` (the export's postprocessed outputs).
        predict_options: `ftk.Option`s the task adds to `ftk predict` (and
            `ftk.predict`), handled by `finish_predictions`.
        file_inputs: each raw input `read_data` gives is a file path (an
            image): the engine reads the file, and the preprocessor gets its
            bytes; TFRecords written by `ftk data to-tfrecord` hold the bytes.
        page: how `ftk serve`'s page lets people try the model. `input` is
            `"text"` (a text box) or `"file"` (an upload, sent as its bytes);
            `show` is `"json"` (the prediction as JSON), `"scores"` (the
            prediction's `label` and the top entries of its `scores` mapping)
            or `"detections"` (its `detections`, each with `label`, `score`
            and a pixel `box` `[x_min, y_min, x_max, y_max]`, drawn on the
            uploaded picture).

    Example:
        ```python
        class Sentiment(ftk.Task):
            name = "sentiment"
            default_backbone = "minilm-l6"

            def read_data(self, path): ...
            def build_preprocessor(self, backbone): ...
            def build_head(self, backbone): ...
            def build_loss(self): ...
        ```
    """

    name: ClassVar[str] = ""
    default_backbone: ClassVar[str] = ""
    description: ClassVar[str] = ""
    head_name: ClassVar[str] = ""
    loss_name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    config_types: ClassVar[Mapping[str, Any]] = {}
    config_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    space_type: ClassVar[type[TargetSpace]] = RealSpace
    metric_directions: ClassVar[Mapping[str, str]] = {}
    evaluate_on: ClassVar[str] = "raw_outputs"
    main_metric: ClassVar[str | None] = None
    predict_options: ClassVar[tuple[Option, ...]] = ()
    file_inputs: ClassVar[bool] = False
    page: ClassVar[Mapping[str, str]] = {"input": "text", "show": "json"}

    REQUIRED: ClassVar[tuple[str, ...]] = ("read_data", "build_preprocessor", "build_head",
                                           "build_loss")

    def __init__(self, config: Mapping[str, Any], space: TargetSpace | None = None):
        self.config = config
        self.space = space

    # Config ---------------------------------------------------------------
    def check_config(self) -> None:
        """Value checks of the task's keys, run before any data is read.

        Raises:
            ftk.ConfigError: naming the key, what it must be and what it is.
        """

    # Data -----------------------------------------------------------------
    def read_data(self, path: str) -> Examples:
        """Read one data file or folder; an `ftk.DataError` names the file and
        line (or record) of a bad example."""
        raise NotImplementedError

    def demo_data(self, folder: Path) -> Mapping[str, Path] | None:
        """Built-in data for the quickstart: `{"train": path, "validation":
        path, "test": path}` (validation and test optional), written into
        `folder` if it must be made; None when the task has none."""
        return None

    def split_validation(self, examples: Examples, fraction: float,
                         seed: int) -> tuple[Examples, Examples]:
        """Carve a validation part out of the training data; at random by default."""
        import numpy as np

        order = np.random.default_rng(seed).permutation(len(examples))
        count = min(len(examples) - 1, max(1, int(round(fraction * len(examples)))))
        return (examples.subset(sorted(order[count:]), "train"),
                examples.subset(sorted(order[:count]), "validation"))

    def build_target_space(self, examples: Examples) -> TargetSpace:
        """The target space of the training examples."""
        return self.space_type.from_examples(examples)

    def encode_targets(self, examples: Examples) -> Any:
        """One encoded target per example: what tf.data, the loss and
        `evaluate` see."""
        return self.space.encode(examples.targets, examples.source)

    # Model ----------------------------------------------------------------
    def build_preprocessor(self, backbone: Any) -> "Preprocessor":
        """An `ftk.Preprocessor` for `backbone` (see `ftk.LoadedBackbone`)."""
        raise NotImplementedError

    def build_head(self, backbone: Any) -> Any:
        """A Keras layer called as `head(backbone_outputs, features, training=...)`."""
        raise NotImplementedError

    def build_loss(self) -> Any:
        """A Keras loss of `(targets, head outputs)`."""
        raise NotImplementedError

    def build_metrics(self) -> list:
        """Keras metrics shown during training (one new list per phase)."""
        return []

    # Evaluation and prediction --------------------------------------------
    def evaluate(self, targets: Any, outputs: Any) -> dict[str, Any]:
        """Metrics over a whole evaluation set (numpy in, JSON-ready out).

        By default: the loss and the training metrics, computed over the set.
        """
        import tensorflow as tf

        metrics: dict[str, Any] = {"loss": float(self.build_loss()(targets, outputs))}
        for metric in self.build_metrics():
            metric.update_state(tf.convert_to_tensor(targets), tf.convert_to_tensor(outputs))
            metrics[metric.name] = float(metric.result())
        metrics["num_examples"] = int(len(targets))
        return metrics

    def postprocess(self, outputs: Any, features: Any) -> dict[str, Any]:
        """Model outputs to predictions, as a dict of tensors, inside the export."""
        return {"outputs": outputs}

    def format_prediction(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One example's postprocessed outputs (numpy values) as JSON-ready values."""
        return {key: _json_value(value) for key, value in row.items()}

    def prediction_inputs(self, values: list[str]) -> list[Any]:
        """What `ftk predict` arguments (literal inputs or file paths) mean."""
        return list(values)

    def prediction_batches(self, inputs: Sequence[Any],
                           batch_size: int) -> Iterator[tuple[str, Any]]:
        """`(form, batch)` pairs in input order for the export's signatures:
        form `""` is the raw-input signature (`serving_default`), another form
        one of the preprocessor's `extra_inputs`. By default, strings in
        batches of `batch_size`."""
        items = input_list(inputs)
        for start in range(0, len(items), batch_size):
            yield "", items[start:start + batch_size]

    def tflite_batches(self, inputs: Sequence[Any], batch_size: int,
                       facts: Mapping[str, Any]) -> Iterator[tuple[Any, Any]]:
        """`(batch, context)` pairs in input order: each batch in the input
        form of the task's TFLite files, with what `tflite_outputs` needs to
        finish that batch's outputs. `facts` are what the preprocessor's
        `tflite_input` said of the form (image tasks: the size to resize to).
        By default the raw inputs (strings), as `serving_default` takes them,
        and no context."""
        for form, batch in self.prediction_batches(inputs, batch_size):
            if form:
                from ftk.errors import PluginError

                raise PluginError(f"Task {self.name!r} gives {form!r} inputs; it must define "
                                  "tflite_batches for its TFLite files.")
            yield batch, None

    def tflite_outputs(self, outputs: dict[str, Any], context: Any) -> dict[str, Any]:
        """A TFLite file's outputs for one batch as the export's signatures
        give them (detection scales its boxes back to each image's pixels);
        by default unchanged."""
        return outputs

    # Reports --------------------------------------------------------------
    def write_reports(self, metrics: Mapping[str, Any], run: "RunDirectory") -> None:
        """Extra reports (tables, plots) after the final evaluation, written
        through `run` (`run.write_text`, `run.write_bytes`)."""

    def write_samples(self, predictor: Any, examples: Examples, run: "RunDirectory") -> None:
        """Pictures of a few predictions of the evaluated examples, through `run`."""

    def finish_predictions(self, inputs: Sequence[Any], predictions: list[dict[str, Any]],
                           **options: Any) -> None:
        """Act on the task's `predict_options` after `ftk predict` (detection's
        `--draw DIR` writes pictures); may add keys to `predictions`."""

    # Metric directions ----------------------------------------------------
    def direction(self, monitor: str) -> str | None:
        """`"min"` or `"max"` for a logged value (`val_` prefix allowed), or None."""
        name = monitor[4:] if monitor.startswith("val_") else monitor
        return "min" if name == "loss" else self.metric_directions.get(name)


def task_problems(task: Any) -> list[str]:
    """Problems with a task class, one readable string each (empty when fine)."""
    if not isinstance(task, type) or not issubclass(task, Task):
        return [f"a task must be a subclass of ftk.Task. Received: {task!r}"]
    problems = []
    if not isinstance(task.name, str) or not task.name.isidentifier():
        problems.append(f"name must be an identifier (letters, digits, _). Received: {task.name!r}")
    if not isinstance(task.default_backbone, str) or not task.default_backbone:
        problems.append("default_backbone must name a preset, handle or path")
    for builder in Task.REQUIRED:
        if getattr(task, builder) is getattr(Task, builder):
            problems.append(f"{builder} is required and not defined")
    for attribute in ("defaults", "config_types", "config_choices", "metric_directions"):
        if not isinstance(getattr(task, attribute), Mapping):
            problems.append(f"{attribute} must be a mapping")
    if isinstance(task.defaults, Mapping):
        unknown = sorted(set(task.defaults) - set(ENGINE_SECTIONS))
        if unknown:
            problems.append(f"defaults has sections the engine does not know: {', '.join(unknown)}"
                            f" (sections: {', '.join(ENGINE_SECTIONS)})")
    if isinstance(task.metric_directions, Mapping):
        for metric, direction in task.metric_directions.items():
            if direction not in DIRECTIONS:
                problems.append(f"metric_directions[{metric!r}] must be 'min' or 'max'. "
                                f"Received: {direction!r}")
    if not (isinstance(task.space_type, type) and issubclass(task.space_type, TargetSpace)
            and task.space_type.kind):
        problems.append("space_type must be an ftk.TargetSpace subclass with a kind")
    problems += option_problems(list(task.predict_options))
    if task.evaluate_on not in EVALUATE_ON:
        problems.append(f"evaluate_on must be one of {', '.join(EVALUATE_ON)}. "
                        f"Received: {task.evaluate_on!r}")
    return problems


def _json_value(value: Any) -> Any:
    import numpy as np

    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def input_list(inputs: Any) -> list[Any]:
    """What `predict` was given, as a list: one string, byte string or path is
    one input; anything else is iterated."""
    return [inputs] if isinstance(inputs, (str, bytes, os.PathLike)) else list(inputs)
