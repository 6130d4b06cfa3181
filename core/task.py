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
        classes: every class the source declares, in order, when it declares
            them (COCO categories); None to take the classes seen in labels.
    """

    inputs: Sequence[Any]
    labels: Sequence[Any]
    source: str = ""
    classes: Sequence[str] | None = None

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
            model outputs into predictions inside the exported model. If it
            takes a `features` keyword it also gets the preprocessed inputs
            (e.g. the original image sizes, to scale boxes back).
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
        build_label_space: `(examples) -> LabelSpace` from the training
            examples; by default the sorted class names seen in their labels.
        encode_targets: `(labels, label_space, source) -> targets`, an array
            with one row per example that training, the loss and `evaluate`
            see; by default class indices (multi-hot rows for multi-label).
        evaluate_on: what `evaluate` scores: `"raw_outputs"` (the model's
            outputs, e.g. logits) or `"predictions"` (the postprocessed outputs
            of the export's `serving_default`, a dict of arrays, e.g. boxes
            after non-maximum suppression).
        write_samples: `(predictor, examples, run_dir) -> None`, called after
            the final evaluation with the evaluated examples, e.g. to draw a
            few predictions into `run_dir/plots`.
        draw_prediction: `(input, prediction, path) -> None` writing a picture
            of one prediction; enables `ftk predict --draw DIR`.
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
    build_label_space: Callable[..., Any] | None = None
    encode_targets: Callable[..., Any] | None = None
    evaluate_on: str = "raw_outputs"
    write_samples: Callable[..., None] | None = None
    draw_prediction: Callable[..., None] | None = None
    head_name: str = ""
    loss_name: str = ""
    description: str = ""


def label_space_of(task: Task, examples: Examples) -> Any:
    """The task's label space for its training examples."""
    from ftk.labels import LabelSpace

    if task.build_label_space is not None:
        return task.build_label_space(examples)
    return LabelSpace.from_labels(examples.labels, source=examples.source)


def encode_targets(task: Task, examples: Examples, label_space: Any) -> Any:
    """The task's training/evaluation targets for `examples`."""
    if task.encode_targets is not None:
        return task.encode_targets(examples.labels, label_space, examples.source)
    return label_space.encode(examples.labels, source=examples.source)
