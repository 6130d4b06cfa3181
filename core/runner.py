"""One fine-tuning run, start to finish: data, model, training, export, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ftk import config as config_lib
from ftk.hub.resolve import resolve_backbone
from ftk.data import check_validation_classes, load_splits, make_dataset
from ftk.labels import LabelSpace
from ftk.registry import Registry
from ftk.rundir import write_json_atomic, write_text_atomic
from ftk.task import Examples, Task, encode_targets, label_space_of


@dataclass
class RunResult:
    """What `ftk.run` returns.

    Attributes:
        run_dir: the run directory.
        metrics: final evaluation metrics (also in `run_dir/metrics.json`).
        history: per-epoch training metrics (also in `run_dir/history.csv`).
        config: the resolved config (also in `run_dir/config.yaml`).
    """

    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def execute(task: Task, config: dict[str, Any], run_dir: Path, registry: Registry,
            *, resume: bool) -> RunResult:
    """Train, export and evaluate one run into `run_dir`."""
    import tensorflow as tf
    import tf_keras as keras

    from ftk.serving import export_saved_model
    from ftk.plots import plot_history
    from ftk.predictor import Predictor
    from ftk.training.feature_cache import FeatureCache
    from ftk.training.model import FineTuneModel, precision_policy
    from ftk.training.trainer import check_monitor, train

    # Keras's per-batch timing and config-serialisation warnings are noise here.
    tf.get_logger().setLevel("ERROR")
    seed = config["train"]["seed"]
    # Seeds make CPU runs repeatable. Op determinism is not forced: it rejects
    # Hub models whose dropout ops were saved without a seed.
    keras.utils.set_random_seed(seed)

    splits, label_space, train_targets, validation_targets = _labelled_splits(task, config)
    backbone = resolve_backbone(config["backbone"]["handle"] or task.default_backbone,
                                registry.backbones, preprocessor=config["backbone"]["preprocessor"])
    batch_size = config["train"]["batch_size"]
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        preprocessor = task.build_preprocessor(backbone, label_space, config)
        with precision_policy(config["train"]["mixed_precision"]):
            head = task.build_head(backbone, label_space, config)
        model = FineTuneModel(backbone.keras_layer(trainable=True), head, name="ftk_model",
                              freeze_batchnorm=config["backbone"]["freeze_batchnorm"])
        loss = task.build_loss(label_space, config, class_counts(train_targets, label_space))
    feature_cache = FeatureCache(
        model, preprocessor, (splits.train.inputs, train_targets),
        None if validation_targets is None else (splits.validation.inputs, validation_targets),
        setting=config["train"]["cache_features"], batch_size=batch_size, seed=seed,
        memory_mb=config["train"]["cache_memory_mb"], folder=run_dir / "cache")
    if splits.validation is not None:
        check_monitor(config["train"]["monitor"], task.build_metrics(label_space, config), True)
    # Written once the config has proved buildable, so a bad value needs no --overwrite.
    write_text_atomic(run_dir / "config.yaml", config_lib.dump(saved_config(config)))
    write_text_atomic(run_dir / "labels.txt", "\n".join(label_space.classes) + "\n")
    memory = config["train"]["cache_memory_mb"]
    train_data = make_dataset(splits.train.inputs, train_targets, preprocessor, batch_size,
                              training=True, shuffle=True, seed=seed, cache_mb=memory)
    validation_data = None if validation_targets is None else make_dataset(
        splits.validation.inputs, validation_targets, preprocessor, batch_size,
        cache_mb=memory)
    # Build the head before optimisers and checkpoints, from an unshuffled batch:
    # iterating `train_data` would move its shuffling on by an epoch.
    model(next(iter(make_dataset(splits.train.inputs, train_targets, preprocessor, batch_size)))[0])
    steps = -(-len(splits.train) // batch_size)
    print(f"Training {task.name} on {len(splits.train)} examples ({label_space.num_classes} "
          f"classes) with backbone {backbone.name} ...")
    try:
        history = train(model, train_data, validation_data, loss=loss,
                        metrics_factory=lambda: task.build_metrics(label_space, config),
                        config=config, run_dir=run_dir, steps_per_epoch=steps, resume=resume,
                        feature_cache=feature_cache)
    finally:
        feature_cache.remove()

    metadata = {"task": task.name, "backbone": backbone.name, "labels": label_space.to_json(),
                "inputs": getattr(preprocessor, "input_kind", "text"), "config": saved_config(config)}
    export_saved_model(model, preprocessor, postprocessor(task, label_space, config),
                       run_dir / "export", metadata, label_space)
    evaluation = splits.test if splits.test is not None else splits.validation
    metrics: dict[str, Any] = {}
    if evaluation is not None:
        predictor = Predictor(run_dir, task)
        metrics = score(task, predictor, evaluation, label_space, config)
        metrics["split"] = "test" if splits.test is not None else "validation"
        write_json_atomic(run_dir / "metrics.json", metrics)
        if task.write_artifacts is not None:
            task.write_artifacts(metrics, label_space, run_dir)
        if task.write_samples is not None:
            task.write_samples(predictor, evaluation, run_dir)
    plot_history(history, run_dir / "plots" / "training_curves.png")
    return RunResult(run_dir, metrics, history, config)


def postprocessor(task: Task, label_space: LabelSpace, config: Mapping[str, Any]) -> Any:
    """`(outputs, features) -> predictions` for the export, from `task.postprocess`."""
    import inspect

    if "features" in inspect.signature(task.postprocess).parameters:
        return lambda outputs, features: task.postprocess(outputs, label_space, config,
                                                          features=features)
    return lambda outputs, features: task.postprocess(outputs, label_space, config)


def _labelled_splits(task: Task, config: Mapping[str, Any]) -> tuple[Any, LabelSpace, Any, Any]:
    """Read the splits and encode their labels, checking all of them up front."""
    splits = load_splits(task, config)
    label_space = label_space_of(task, splits.train)
    train_targets = encode_targets(task, splits.train, label_space)
    validation_targets = None
    if splits.validation is not None:
        validation_targets = encode_targets(task, splits.validation, label_space)
        if task.encode_targets is None:
            check_validation_classes(splits.validation, label_space)
    if splits.test is not None:  # fail before training, not after it
        encode_targets(task, splits.test, label_space)
    return splits, label_space, train_targets, validation_targets


def score(task: Task, predictor: Any, examples: Examples, label_space: LabelSpace,
          config: Mapping[str, Any]) -> dict[str, Any]:
    """The task's whole-set metrics for one labelled data source."""
    targets = encode_targets(task, examples, label_space)
    batch_size = config["train"]["batch_size"]
    if task.evaluate_on == "predictions":
        outputs = predictor.prediction_arrays(examples.inputs, batch_size=batch_size)
    else:
        outputs = predictor.raw_outputs(examples.inputs, batch_size=batch_size)
    return task.evaluate(targets, outputs, label_space, config)


def class_counts(targets: Any, label_space: LabelSpace) -> Any:
    """Training examples per class, or None for targets that are not classes."""
    import numpy as np

    if getattr(targets, "ndim", 0) not in (1, 2):
        return None
    if label_space.multi_label:
        return targets.sum(0)
    return np.bincount(targets, minlength=label_space.num_classes)


def saved_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as written to a run: data paths absolute, no output folder,
    so `ftk run --config RUN/config.yaml` reproduces the run from anywhere."""
    import copy

    saved = copy.deepcopy(dict(config))
    for key in ("train", "validation", "test"):
        if saved["data"].get(key):
            saved["data"][key] = str(Path(saved["data"][key]).resolve())
    saved["output_dir"] = None
    return saved
