"""Reading the train/validation/test splits and feeding them through tf.data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ftk.errors import DataError
from ftk.preprocessor import Preprocessor
from ftk.records import RecordSource
from ftk.task import Examples, Task

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: Examples | RecordSource
    validation: Examples | RecordSource | None
    test: Examples | RecordSource | None


def read_examples(task: Task, path: str) -> Any:
    """Read one data source with the task's reader (or, for TFRecords written
    by `ftk data to-tfrecord`, a `RecordSource` streaming them), refusing an
    empty one."""
    from ftk.records import is_records, read_records

    if is_records(path):
        examples = read_records(path)
        written_for = examples.manifest.get("task")
        if written_for != task.name:
            raise DataError(f"{path} holds {written_for} records; task {task.name} cannot "
                            f"read them. Write its data with `ftk data to-tfrecord {task.name}`.")
    elif not Path(path).exists():
        raise DataError(f"Data file {path} does not exist. Check the path given to --data.")
    else:
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
    elif data["validation_split"] > 0 and len(train) > 1 and isinstance(train, RecordSource):
        train, validation = train.split(data["validation_split"])
        log.info(f"Validation: every {validation.every}th record of {train.path} "
                 f"({len(validation)} examples), chosen by record number without a pass "
                 "over the data.")
    elif data["validation_split"] > 0 and len(train) > 1:
        train, validation = task.split_validation(train, data["validation_split"],
                                                  task.config["train"]["seed"])
    else:
        validation = None
    test = read_examples(task, data["test"]) if data["test"] else None
    return Splits(train, validation, test)


def make_dataset(inputs: Any, targets: Any, preprocessor: Preprocessor, batch_size: int, *,
                 training: bool = False, shuffle: bool = False, seed: int = 0,
                 cache_mb: float = 0, read_files: bool = False,
                 shard: tuple[int, int] | None = None) -> Any:
    """Batch, preprocess in parallel inside tf.data, and prefetch.

    `inputs` are raw inputs with their encoded `targets`, in memory, or a
    `RecordSource` streaming both (then `targets` is None). With
    `read_files`, in-memory inputs are file paths, read inside tf.data; the
    preprocessor gets the files' bytes (records hold the bytes already).

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
    In-memory data is shuffled whole; streamed records through a bounded buffer.

    Every dataset is marked to be split over a multi-worker job by example
    (`sharded_by_example`), except with `shard=(workers, worker)`: then this
    worker streams only its share of the record files, without end (the
    trainer counts an epoch's steps), and the job's batches are drawn from
    every worker's share.
    """
    import tensorflow as tf

    count = len(inputs)
    streamed = isinstance(inputs, RecordSource)

    def source(shuffled: bool) -> Any:
        if streamed and shard:
            workers, worker = shard
            return inputs.dataset(shuffle=shuffled, seed=seed, workers=workers,
                                  worker=worker).repeat()
        if streamed:
            return inputs.dataset(shuffle=shuffled, seed=seed)
        raw = tf.data.Dataset.from_tensor_slices(np.asarray(inputs, dtype=object).astype(str)
                                                 if _is_text(inputs) else inputs)
        dataset = tf.data.Dataset.zip((raw, _target_dataset(targets)))
        if shuffled:
            dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        return dataset

    def contents(raw: Any) -> Any:
        return tf.io.read_file(raw) if read_files and not streamed else raw

    if not preprocessor.per_example:
        dataset = source(shuffle).map(lambda x, y: (contents(x), y))
        dataset = dataset.batch(batch_size).map(lambda x, y: (preprocessor(x), y),
                                                num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def load(examples: Any) -> Any:
            examples = tf.data.Dataset.zip((examples, _seeds(seed)))
            return examples.map(
                lambda example, pair: preprocessor.load_example(
                    contents(example[0]), example[1], pair, training),
                num_parallel_calls=tf.data.AUTOTUNE)

        size = _size_mb(load(source(False)).element_spec, count)
        if (not training or not preprocessor.augments) and size is not None and size <= cache_mb \
                and not shard:
            dataset = load(source(False)).cache()
            if shuffle:
                dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        else:
            dataset = load(source(shuffle))
        dataset = dataset.batch(batch_size)
    if training and preprocessor.augments_batches:
        dataset = tf.data.Dataset.zip((dataset, _seeds(seed + 1)))
        dataset = dataset.map(lambda batch, pair: preprocessor.augment_batch(*batch, pair),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    if shard:
        return dataset.with_options(_auto_shard(tf.data.experimental.AutoShardPolicy.OFF))
    return sharded_by_example(dataset)


def _auto_shard(policy: Any) -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return options


def sharded_by_example(dataset: Any) -> Any:
    """Mark an in-memory dataset to be split over a multi-worker job by
    example: each worker prepares every batch and keeps its part of it, so
    the job trains on the same global batches as one device would (every
    shuffle is seeded, so every worker's order is the same)."""
    import tensorflow as tf

    return dataset.with_options(_auto_shard(tf.data.experimental.AutoShardPolicy.DATA))


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

    @property
    def train(self) -> tuple[Any, Any]:
        """`(inputs, targets)` of the training split, as `make_dataset` takes them."""
        return _raw(self.splits.train), self.train_targets

    @property
    def validation(self) -> tuple[Any, Any] | None:
        if self.splits.validation is None:
            return None
        return _raw(self.splits.validation), self.validation_targets


def _raw(examples: Any) -> Any:
    """What `make_dataset` reads: a record source itself, or examples' inputs."""
    return examples if isinstance(examples, RecordSource) else examples.inputs


def prepare_inputs(task: Task) -> RunInputs:
    """Read the splits, build the task's target space from the training part
    (`task.space`) and encode every split's targets, so a bad target in any
    split stops the run before training."""
    splits = load_splits(task)
    if isinstance(splits.train, RecordSource):
        # Encoded when written: the space is the one recorded with them.
        task.space = task.space_type.from_json(splits.train.manifest["targets"])
        log.info(f"Streaming {len(splits.train)} training examples from "
                 f"{len(splits.train.shards)} TFRecord file(s) in {splits.train.path}.")
    else:
        task.space = task.build_target_space(splits.train)
    train_targets = encoded_targets(task, splits.train)
    validation_targets = None
    if splits.validation is not None:
        validation_targets = encoded_targets(task, splits.validation)
    if splits.test is not None:
        encoded_targets(task, splits.test)
    return RunInputs(splits, train_targets, validation_targets)


def encoded_targets(task: Task, examples: Any) -> Any:
    """The targets of in-memory examples, encoded; None for records, whose
    targets were encoded when written (checked to be in the same space)."""
    if isinstance(examples, RecordSource):
        examples.check_targets(task.space)
        return None
    return task.encode_targets(examples)
