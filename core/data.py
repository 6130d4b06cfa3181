"""Reading the train/validation/test splits and feeding them through tf.data."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ftk.errors import DataError
from ftk.labels import LabelSpace
from ftk.task import Examples, Task


@dataclass
class Splits:
    train: Examples
    validation: Examples | None
    test: Examples | None


def read_examples(task: Task, path: str, config: Mapping[str, Any]) -> Examples:
    """Read one data source with the task's reader, refusing an empty one."""
    if not Path(path).exists():
        raise DataError(f"Data file {path} does not exist. Check the path given to --data.")
    examples = task.read_data(path, config)
    if len(examples) == 0:
        raise DataError(f"{path} holds no examples. Add labelled rows, or pass another file.")
    return examples


def load_splits(task: Task, config: Mapping[str, Any]) -> Splits:
    """Read the splits named in `data`, carving validation out of train if needed."""
    data = config["data"]
    if not data["train"]:
        raise DataError("No training data: pass --data PATH (or data.train in a config file).")
    train = read_examples(task, data["train"], config)
    if not 0 <= data["validation_split"] < 1:
        raise DataError("data.validation_split must be at least 0 and below 1. "
                        f"Received: {data['validation_split']}")
    if data["validation"]:
        validation = read_examples(task, data["validation"], config)
    elif data["validation_split"] > 0:
        train, validation = split_validation(train, data["validation_split"], config["train"]["seed"])
    else:
        validation = None
    test = read_examples(task, data["test"], config) if data["test"] else None
    return Splits(train, validation, test)


def split_validation(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """A seeded split keeping every class in both parts (stratified); labels
    that are not single class names (multi-label, boxes) are split at random."""
    rng = np.random.default_rng(seed)
    labels = list(examples.labels)
    if labels and not isinstance(labels[0], str):  # multi-label or task records: no strata
        order = rng.permutation(len(labels))
        count = max(1, int(round(fraction * len(labels))))
        return _subset(examples, order[count:], "train"), _subset(examples, order[:count], "validation")
    by_class: dict[Any, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train_ids, val_ids = [], []
    for label, ids in sorted(by_class.items()):
        if len(ids) < 2:
            raise DataError(
                f"{examples.source}: class {label!r} has only {len(ids)} example, so the "
                "validation split would have none. Add examples of it, or pass a "
                "validation file with --val-data."
            )
        ids = rng.permutation(ids).tolist()
        count = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        val_ids += ids[:count]
        train_ids += ids[count:]
    return (_subset(examples, sorted(train_ids), "train"),
            _subset(examples, sorted(val_ids), "validation"))


def _subset(examples: Examples, ids: Any, part: str) -> Examples:
    return Examples([examples.inputs[i] for i in ids], [examples.labels[i] for i in ids],
                    f"{examples.source} ({part} part)", examples.classes)


def check_validation_classes(validation: Examples, label_space: LabelSpace) -> None:
    """Warn when a class never occurs in validation: its metrics will be empty."""
    seen = {name for label in validation.labels
            for name in (label if isinstance(label, (list, tuple)) else [label])}
    missing = [name for name in label_space.classes if name not in seen]
    if missing:
        print(f"Warning: {validation.source} has no examples of class(es) "
              f"{', '.join(missing)}; their validation metrics will be 0.", file=sys.stderr)


def make_dataset(inputs: Any, targets: Any, preprocess: Callable, batch_size: int, *,
                 training: bool = False, shuffle: bool = False, seed: int = 0,
                 cache_mb: float = 0) -> Any:
    """Batch, preprocess in parallel inside tf.data, and prefetch.

    A preprocessor with `load_example(raw, target, seed, training)` works per
    example before batching (image files of different sizes are decoded and
    resized there); one without it works per batch (tokenizers are
    vectorised). With `training`, an optional `augment_batch(features,
    targets, seed)` runs on each batch (mixup, cutmix). Random transforms take
    stateless seeds drawn from `seed`, so a seeded run repeats exactly.
    No Python code runs per example.

    When per-example inputs come out the same every epoch (no augmentation)
    and all of them fit in `cache_mb`, they are kept in memory after the first
    epoch, so files are read and decoded once. They are shuffled after the
    cache with the same seed, so the batches are those of the uncached order.
    """
    import tensorflow as tf

    raw = tf.data.Dataset.from_tensor_slices(np.asarray(inputs, dtype=object).astype(str)
                                             if _is_text(inputs) else inputs)
    dataset = tf.data.Dataset.zip((raw, _target_dataset(targets)))
    load_example = getattr(preprocess, "load_example", None)
    if load_example is None:
        if shuffle:
            dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size).map(lambda x, y: (preprocess(x), y),
                                                num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def load(examples: Any) -> Any:
            examples = tf.data.Dataset.zip((examples, _seeds(seed)))
            return examples.map(lambda example, pair: load_example(*example, pair, training),
                                num_parallel_calls=tf.data.AUTOTUNE)

        size = _size_mb(load(dataset).element_spec, len(inputs))
        if (not training or not augments(preprocess)) and size is not None and size <= cache_mb:
            dataset = load(dataset).cache()
            if shuffle:
                dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
        else:
            if shuffle:
                dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
            dataset = load(dataset)
        dataset = dataset.batch(batch_size)
    augment_batch = getattr(preprocess, "augment_batch", None)
    if training and augment_batch is not None:
        dataset = tf.data.Dataset.zip((dataset, _seeds(seed + 1)))
        dataset = dataset.map(lambda batch, pair: augment_batch(*batch, pair),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def augments(preprocessor: Any) -> bool:
    """Whether the preprocessor may give different training inputs each epoch.

    A preprocessor that only works on whole batches (`__call__`) is
    deterministic. One with per-example loading or batch augmentation says so
    with an `augments` attribute; without it, it is assumed to augment.
    """
    if not hasattr(preprocessor, "load_example") and not hasattr(preprocessor, "augment_batch"):
        return False
    return bool(getattr(preprocessor, "augments", True))


def _size_mb(spec: Any, count: int) -> float | None:
    """Megabytes of `count` elements of `spec`, or None if their shapes vary."""
    import tensorflow as tf

    total = 0
    for leaf in tf.nest.flatten(spec):
        if not leaf.shape.is_fully_defined():
            return None
        total += leaf.shape.num_elements() * leaf.dtype.size
    return total * count / 2**20


def _target_dataset(targets: Any) -> Any:
    import tensorflow as tf

    if isinstance(targets, Mapping):  # e.g. boxes and classes per image
        return tf.data.Dataset.from_tensor_slices(dict(targets))
    return tf.data.Dataset.from_tensor_slices(targets)


def _seeds(seed: int) -> Any:
    """An endless stream of `[2]` int64 seeds for stateless random ops, new each epoch."""
    import tensorflow as tf

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def _is_text(inputs: Any) -> bool:
    return len(inputs) > 0 and isinstance(inputs[0], str)
