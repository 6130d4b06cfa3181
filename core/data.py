"""Reading the train/validation/test splits and feeding them through tf.data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ftk.errors import DataError
from ftk.preprocessor import Preprocessor
from ftk.task import Examples, Task


@dataclass
class Splits:
    train: Examples
    validation: Examples | None
    test: Examples | None


def read_examples(task: Task, path: str) -> Examples:
    """Read one data source with the task's reader, refusing an empty one."""
    if not Path(path).exists():
        raise DataError(f"Data file {path} does not exist. Check the path given to --data.")
    examples = task.read_data(path)
    if len(examples) == 0:
        raise DataError(f"{path} holds no examples. Add labelled rows, or pass another file.")
    return examples


def load_splits(task: Task) -> Splits:
    """Read the splits named in `data`, carving validation out of train if needed
    (the task decides how: stratified for classes, at random by default)."""
    data = task.config["data"]
    if not data["train"]:
        raise DataError("No training data: pass --data PATH (or data.train in a config file).")
    train = read_examples(task, data["train"])
    if data["validation"]:
        validation = read_examples(task, data["validation"])
    elif data["validation_split"] > 0 and len(train) > 1:
        train, validation = task.split_validation(train, data["validation_split"],
                                                  task.config["train"]["seed"])
    else:
        validation = None
    test = read_examples(task, data["test"]) if data["test"] else None
    return Splits(train, validation, test)


def make_dataset(inputs: Any, targets: Any, preprocessor: Preprocessor, batch_size: int, *,
                 training: bool = False, shuffle: bool = False, seed: int = 0,
                 cache_mb: float = 0) -> Any:
    """Batch, preprocess in parallel inside tf.data, and prefetch.

    A `per_example` preprocessor loads each example before batching (image
    files of different sizes are decoded and resized there); any other works
    per batch (tokenizers are vectorised). With `training`, a preprocessor
    that `augments_batches` transforms each batch (mixup, cutmix). Random
    transforms take stateless seeds drawn from `seed`, so a seeded run
    repeats exactly. No Python code runs per example.

    When per-example inputs come out the same every epoch (no augmentation)
    and all of them fit in `cache_mb`, they are kept in memory after the first
    epoch, so files are read and decoded once. They are shuffled after the
    cache with the same seed, so the batches are those of the uncached order.
    """
    import tensorflow as tf

    raw = tf.data.Dataset.from_tensor_slices(np.asarray(inputs, dtype=object).astype(str)
                                             if _is_text(inputs) else inputs)
    dataset = tf.data.Dataset.zip((raw, _target_dataset(targets)))
    if not preprocessor.per_example:
        if shuffle:
            dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size).map(lambda x, y: (preprocessor(x), y),
                                                num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def load(examples: Any) -> Any:
            examples = tf.data.Dataset.zip((examples, _seeds(seed)))
            return examples.map(
                lambda example, pair: preprocessor.load_example(*example, pair, training),
                num_parallel_calls=tf.data.AUTOTUNE)

        size = _size_mb(load(dataset).element_spec, len(inputs))
        if (not training or not preprocessor.augments) and size is not None and size <= cache_mb:
            dataset = load(dataset).cache()
            if shuffle:
                dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
        else:
            if shuffle:
                dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
            dataset = load(dataset)
        dataset = dataset.batch(batch_size)
    if training and preprocessor.augments_batches:
        dataset = tf.data.Dataset.zip((dataset, _seeds(seed + 1)))
        dataset = dataset.map(lambda batch, pair: preprocessor.augment_batch(*batch, pair),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return sharded_by_example(dataset.prefetch(tf.data.AUTOTUNE))


def sharded_by_example(dataset: Any) -> Any:
    """Mark an in-memory dataset to be split over a multi-worker job by
    example: each worker prepares every batch and keeps its part of it, so
    the job trains on the same global batches as one device would (every
    shuffle is seeded, so every worker's order is the same)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


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


@dataclass
class RunInputs:
    """The splits of a run and their encoded targets."""

    splits: Splits
    train_targets: Any
    validation_targets: Any


def prepare_inputs(task: Task) -> RunInputs:
    """Read the splits, build the task's target space from the training part
    (`task.space`) and encode every split's targets, so a bad target in any
    split stops the run before training."""
    splits = load_splits(task)
    task.space = task.build_target_space(splits.train)
    train_targets = task.encode_targets(splits.train)
    validation_targets = None
    if splits.validation is not None:
        validation_targets = task.encode_targets(splits.validation)
    if splits.test is not None:
        task.encode_targets(splits.test)
    return RunInputs(splits, train_targets, validation_targets)
