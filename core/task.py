"""What a task plugin registers: the builders that differ from task to task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class Examples:
    """Raw examples read from one data source.

    Attributes:
        inputs: one raw input per example, as the task's preprocessor takes it
            (text for text tasks, file paths or encoded bytes for image tasks).
        labels: one label per example: a class name, or a list of class names
            for multi-label data.
        source: where they came from, for error messages.
    """

    inputs: Sequence[Any]
    labels: Sequence[Any]
    source: str = ""

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class Task:
    """A fine-tuning task: a small set of builders the engine calls in order.

    Every builder is called lazily, at run time, so registering a task builds no
    model and imports no TensorFlow. `config` holds the task's own config keys
    and defaults, merged over the engine's (see `ftk config TASK`).

    Attributes:
        name: the name users pass to `--task`.
        default_backbone: preset name, handle or path used when none is given.
        read_data: `(path, config) -> Examples` for one data file or folder.
        build_preprocessor: `(backbone, label_space, config) -> fn` where `fn`
            maps a batch of raw inputs (a tf.Tensor) to the backbone's input
            features. It runs in tf.data during training and inside the exported
            serving signature. Optional methods on it: `load_example(raw, target,
            seed, training)` works per example before batching instead (image
            files of different sizes), `augment_batch(features, targets, seed)`
            transforms training batches, `from_pixels(images)` adds float-image
            export signatures, and `input_kind` (`"text"` or `"image"`) tells
            `ftk.load(...).predict` how to read inputs.
        build_head: `(backbone, label_space, config) -> layer`; the layer is
            called as `layer(backbone_outputs, features, training=...)`.
        build_loss: `(label_space, config, class_counts) -> keras loss`;
            `class_counts` holds training examples per class.
        build_metrics: `(label_space, config) -> list of keras metrics` shown
            during training.
        evaluate: `(targets, outputs, label_space, config) -> dict` computing the
            final metrics over a whole evaluation set (numpy arrays in and out).
        postprocess: `(outputs, label_space, config) -> dict of tensors`, turning
            model outputs into predictions inside the exported model.
        config: the task's config keys with their defaults, as nested dicts.
        config_types: types of task keys whose default is None, by dotted path.
        config_choices: allowed values of task keys, by dotted path.
        format_prediction: `(row, label_space) -> dict` turning one example's
            postprocessed outputs (numpy values) into JSON-ready predictions.
        prediction_inputs: `(values, config) -> list` turning what a user passes
            to `ftk predict` (literal inputs or file paths) into raw inputs.
        write_artifacts: `(metrics, label_space, run_dir) -> None` writing extra
            reports (tables, plots) after the final evaluation.
        demo_data: `(folder) -> {"train": path, "validation": path, "test": path}`
            writing or locating built-in demo data for the quickstart.
        head_name, loss_name: short descriptions for `ftk tasks`.
        description: one line for `ftk tasks`.
    """

    name: str
    default_backbone: str
    read_data: Callable[..., Examples]
    build_preprocessor: Callable[..., Callable]
    build_head: Callable[..., Any]
    build_loss: Callable[..., Any]
    evaluate: Callable[..., dict]
    postprocess: Callable[..., dict]
    build_metrics: Callable[..., list] = lambda label_space, config: []
    config: Mapping[str, Any] = field(default_factory=dict)
    config_types: Mapping[str, Any] = field(default_factory=dict)
    config_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    format_prediction: Callable[..., dict] = lambda row, label_space: dict(row)
    prediction_inputs: Callable[..., list] = lambda values, config: list(values)
    write_artifacts: Callable[..., None] | None = None
    demo_data: Callable[..., dict] | None = None
    head_name: str = ""
    loss_name: str = ""
    description: str = ""
