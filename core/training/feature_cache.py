"""Frozen-backbone feature caching.

While the backbone is frozen and the inputs are the same every epoch, the
backbone's forward pass gives the same outputs every epoch too. Computing
them once and training the head on them turns each later epoch into a pass
over the head alone, which is most of the time saved in frozen fine-tuning.

The cache holds only what the head reads (outputs are pruned by tracing which
ones the head's result depends on) and is kept in memory when it fits under
`train.cache_memory_mb`, else written as a tf.data snapshot under
`RUN/cache/` and streamed, with a shuffle buffer that fits the same budget.
The in-memory cache shuffles exactly as the uncached pipeline does (same seed,
same buffer), so both train the head on the same batches.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow as tf

from ftk import progress
from ftk.data import make_dataset, sharded_by_example
from ftk.errors import ConfigError
from ftk.training.model import BACKBONE_OUTPUTS, HEAD_FEATURES

AUTO = "auto"
log = logging.getLogger(__name__)


def check_setting(setting: Any, preprocessor: Any) -> None:
    """`train.cache_features: true` needs inputs that repeat exactly."""
    if setting is True and preprocessor.augments:
        raise ConfigError(
            "train.cache_features is true, but train-time augmentation is on, so the "
            "backbone sees new inputs every epoch and its outputs cannot be cached. "
            "Set data.augment: false, or train.cache_features: auto."
        )


def plan(setting: Any, trains_backbone: bool, epochs: int, preprocessor: Any) -> tuple[bool, str]:
    """Whether a phase trains on cached features, and why (for the log)."""
    if setting is False:
        return False, "train.cache_features is false"
    if trains_backbone:
        return False, "the backbone trains in this phase"
    if preprocessor.augments:
        return False, ("train-time augmentation gives new inputs every epoch "
                       "(data.augment: false would allow it)")
    if setting == AUTO and epochs < 2:
        return False, "a single epoch computes the backbone outputs once anyway"
    return True, "the backbone is frozen and the inputs repeat every epoch"


class FeatureCache:
    """The backbone outputs of the training and validation data, computed on
    first use and reused by every frozen phase of the run.

    Args:
        model: the `FineTuneModel`, already built.
        preprocessor: the task's preprocessor.
        train: `(inputs, targets)` of the training split.
        validation: the same for validation, or None.
        setting: `train.cache_features` (auto, true or false).
        batch_size, seed: as `train.batch_size` and `train.seed`.
        memory_mb: `train.cache_memory_mb`, the in-memory budget.
        folder: where a cache that does not fit in memory is written.
        read_files: the inputs are file paths (see `make_dataset`).
    """

    def __init__(self, model: Any, preprocessor: Any, train: tuple[Any, Any],
                 validation: tuple[Any, Any] | None, *, setting: Any, batch_size: int,
                 seed: int, memory_mb: float, folder: Path, read_files: bool = False):
        check_setting(setting, preprocessor)
        self.setting = setting
        self.model = model
        self.preprocessor = preprocessor
        self.splits = {"train": train, "validation": validation}
        self.batch_size = batch_size
        self.seed = seed
        self.budget = memory_mb * 2**20
        self.folder = Path(folder)
        self.read_files = read_files
        self._datasets: tuple[Any, Any] | None = None
        self._encode: Any = None

    def plan(self, trains_backbone: bool, epochs: int) -> tuple[bool, str]:
        """Whether a phase of `epochs` epochs trains on the cache, and why."""
        use, reason = plan(self.setting, trains_backbone, epochs, self.preprocessor)
        if use:
            self._prepare()
            if self._shape_problem:
                return False, self._shape_problem
        return use, reason

    def datasets(self) -> tuple[Any, Any]:
        """`(train, validation)` datasets of cached outputs, built once."""
        if self._datasets is None:
            train = self._cached("train")
            validation = self._cached("validation") if self.splits["validation"] else None
            self._datasets = (train, validation)
        return self._datasets

    def remove(self) -> None:
        """Delete the on-disk cache (it is only valid for this run)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _prepare(self) -> None:
        if self._encode is not None:
            return
        inputs, targets = self.splits["train"]
        source = make_dataset(inputs, targets, self.preprocessor, self.batch_size,
                              read_files=self.read_files)
        features, batch_targets = next(iter(source))
        keep, with_features = _head_needs(self.model, features)

        def encode(features: Any) -> dict[str, Any]:
            outputs = outputs_of(self.model, features)
            element = {BACKBONE_OUTPUTS: _tuples(_pruned(outputs, keep))}
            if with_features:
                element[HEAD_FEATURES] = self.preprocessor.head_features(features)
            return element

        spec = source.element_spec[0]
        # Traced once for any batch size; calling the concrete function never retraces.
        self._encode = tf.function(encode).get_concrete_function(spec)
        self._names = "one tensor" if keep is None else ", ".join(sorted(keep))
        if with_features:
            self._names += " and the head's input features"
        outputs = self._encode.structured_outputs
        varying = [s for s in tf.nest.flatten(outputs) if None in s.shape.as_list()[1:]]
        rows = len(tf.nest.flatten(batch_targets)[0])
        # Cached outputs are stored per example, so each needs one row per example.
        uneven = [t for t in tf.nest.flatten(self._encode(features)) if len(t) != rows]
        self._shape_problem = (
            "the backbone's outputs change shape from batch to batch (e.g. per-token outputs of "
            "texts trimmed to each batch's longest)" if varying else
            "the backbone's outputs do not have one row per example (the preprocessor gives it "
            "more rows than the batch has examples)" if uneven else None)

    def _cached(self, split: str) -> Any:
        self._prepare()
        inputs, targets = self.splits[split]
        ordered = make_dataset(inputs, targets, self.preprocessor, self.batch_size,
                               read_files=self.read_files)
        start = time.perf_counter()
        # Targets come from the pipeline too: a preprocessor may transform them
        # (detection scales boxes to the resized image).
        steps = -(-len(inputs) // self.batch_size)
        batches = ((self._encode(features), targets) for features, targets in
                   progress.track(ordered, steps, f"Caching backbone features ({split})"))
        first = _numpy(next(batches))
        count = len(inputs)
        per_example = sum(leaf.nbytes for leaf in tf.nest.flatten(first)) / _batch_length(first)
        total = per_example * count
        if total <= self.budget:
            self.budget -= total
            stacked = tf.nest.map_structure(lambda *parts: np.concatenate(parts),
                                            first, *(_numpy(batch) for batch in batches))
            dataset = tf.data.Dataset.from_tensor_slices(stacked)
            where, buffer = "in memory", count
        else:
            path = self.folder / split
            _save(itertools.chain([first], (_numpy(batch) for batch in batches)), first, path)
            dataset = tf.data.Dataset.load(str(path)).unbatch().apply(
                tf.data.experimental.assert_cardinality(count))  # shuffles as the memory cache
            where = f"on disk in {path}"
            # A shuffle buffer holding the whole split would hold it all in memory.
            buffer = int(min(count, max(self.batch_size, self.budget // max(per_example, 1))))
        seconds = time.perf_counter() - start
        log.info(f"Cached backbone features of {count} {split} examples in {seconds:.1f} s "
                 f"({count / seconds:.1f} examples/s): {self._names}, {total / 2**20:.1f} MB {where}.")
        if split == "train":
            dataset = dataset.shuffle(buffer, seed=self.seed, reshuffle_each_iteration=True)
        return sharded_by_example(dataset.batch(self.batch_size).prefetch(tf.data.AUTOTUNE))


def _head_needs(model: Any, features: Any) -> tuple[Any, bool]:
    """Which backbone outputs the head reads, and whether it reads the features.

    Returns:
        `(keys, with_features)`: the output keys to keep (None: the outputs are
        one tensor).
    """
    outputs = outputs_of(model, features)
    expected = model.head(outputs, features, training=False)
    keep = None
    if isinstance(outputs, Mapping):
        floating = {k: v for k, v in outputs.items()
                    if all(t.dtype.is_floating for t in tf.nest.flatten(v))}
        with tf.GradientTape() as tape:
            tape.watch(floating)
            result = model.head(outputs, features, training=False)
        gradients = tape.gradient(result, floating)
        keep = {k for k in outputs if k not in floating or any(
            g is not None for g in tf.nest.flatten(gradients[k]))}
        # A head may branch on which keys exist; keep everything if pruning changes its result.
        if not _same(model.head(_pruned(outputs, keep), features, training=False), expected):
            keep = set(outputs)
    pruned = _pruned(outputs, keep)
    try:
        alone = model.head(pruned, None, training=False)
    except Exception:  # noqa: BLE001 - any failure means the head reads its features
        return keep, True
    return keep, not _same(alone, expected)


def outputs_of(model: Any, features: Any) -> Any:
    return model.backbone(model.backbone_features(features), training=False)


def _pruned(outputs: Any, keep: Any) -> Any:
    if keep is None or not isinstance(outputs, Mapping):
        return outputs
    return {k: v for k, v in outputs.items() if k in keep}


def _tuples(tree: Any) -> Any:
    """Lists become tuples: tf.data would stack a list into one tensor."""
    if isinstance(tree, Mapping):
        return {k: _tuples(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return tuple(_tuples(v) for v in tree)
    return tree


def _same(a: Any, b: Any) -> bool:
    try:
        tf.nest.assert_same_structure(a, b)
    except (ValueError, TypeError):
        return False
    return all(np.allclose(x.numpy(), y.numpy(), rtol=1e-4, atol=1e-5)
               for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)))


def _numpy(tree: Any) -> Any:
    return tf.nest.map_structure(lambda t: t.numpy(), tree)


def _batch_length(tree: Any) -> int:
    return len(tf.nest.flatten(tree)[0])


def _save(batches: Iterator[Any], first: Any, path: Path) -> None:
    """Write batches of outputs as a tf.data snapshot, streaming."""
    spec = tf.nest.map_structure(
        lambda a: tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)), first)
    dataset = tf.data.Dataset.from_generator(lambda: batches, output_signature=spec)
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save(str(path))
