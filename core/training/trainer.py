"""The training loop: phases, checkpoints, resume, early stopping, logs."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from ftk import progress
from ftk.errors import ConfigError, FtkError
from ftk.rundir import HISTORY_FILE, RunDirectory
from ftk.training.callbacks import NonFiniteLossGuard, RunCheckpointer, read_history_rows
from ftk.training.checkpoints import CHECKPOINT_PREFIX, resume_point
from ftk.training.feature_cache import FeatureCache
from ftk.training.freezing import select_trainable
from ftk.training.model import FineTuneModel
from ftk.training.optim import build_optimizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one freezing policy and learning rates."""

    start: int
    end: int
    train_backbone: bool
    head_learning_rate: float
    backbone_learning_rate: float


def plan_phases(config: Mapping[str, Any]) -> list[Phase]:
    """One phase, or two for two-phase fine-tuning (head first, then all at a lower rate)."""
    train = config["train"]
    epochs, rate = train["epochs"], train["learning_rate"]
    lower = rate * train["backbone_lr_multiplier"]
    if not config["backbone"]["trainable"]:
        return [Phase(0, epochs, False, rate, 0.0)]
    head_epochs = min(train["head_epochs"], epochs)
    if head_epochs <= 0:
        return [Phase(0, epochs, True, rate, lower)]
    phases = [Phase(0, head_epochs, False, rate, 0.0)]
    if epochs > head_epochs:
        phases.append(Phase(head_epochs, epochs, True, lower, lower))
    return phases


def train(model: FineTuneModel, train_data: Any, validation_data: Any, *, loss: Any,
          metrics_factory: Any, config: Mapping[str, Any], run: RunDirectory,
          steps_per_epoch: int, resume: bool, direction: Any,
          feature_cache: FeatureCache | None = None,
          repeats: bool = False) -> dict[str, list[float]]:
    """Fit `model` through every phase; returns the per-epoch history.

    A phase with a frozen backbone trains on `feature_cache`'s datasets when
    `train.cache_features` allows it (the log says which, and why).

    Args:
        direction: `(monitor) -> "min" | "max"`, the task's metric directions;
            `checkpoints/best` and early stopping keep what is best by it.
        repeats: `train_data` repeats without end, so an epoch is
            `steps_per_epoch` steps (a multi-worker job's own share of records).

    Returns:
        The history; empty for a process that does not write the run.

    Raises:
        FtkError: the loss became NaN or Inf.
    """
    train_config = config["train"]
    monitor = train_config["monitor"] if validation_data is not None else "loss"
    if monitor != train_config["monitor"]:
        log.info(f"No validation data: checkpoints/best follows the training loss, not "
                 f"train.monitor ({train_config['monitor']}).")
    lower_is_better = direction(monitor) == "min"
    backbone_variables = select_trainable(model.backbone_variables, config["backbone"])
    folder = run.checkpoints
    origin, state = (run.resume_from or resume_point(folder)) if resume else (None, None)
    done = state["epoch"] if state else 0
    best = state.get("best") if state else None
    phases = plan_phases(config)
    # A backbone no phase trains stays as loaded: checkpoints skip its weights.
    saved = model if any(p.train_backbone for p in phases) else tf.train.Checkpoint(head=model.head)
    # Epochs each training dataset ("data" or "cache") had given an
    # uninterrupted run before the phase at hand: a resumed run replays its
    # shuffles that far.
    given = {"data": 0, "cache": 0}
    for index, phase in enumerate(phases):
        start = min(max(done, phase.start), phase.end)
        cached = False
        if feature_cache is not None:
            # A phase already done is counted as the uninterrupted run planned it.
            length = phase.end - (phase.start if phase.end <= done else start)
            cached, reason = feature_cache.plan(phase.train_backbone, length)
        if phase.end <= done:
            given["cache" if cached else "data"] += phase.end - phase.start
            continue
        chosen = backbone_variables if phase.train_backbone else []
        data = (train_data, validation_data)
        if feature_cache is not None:
            log.info(f"Feature cache {'on' if cached else 'off'}: {reason}.")
            if cached:
                data = feature_cache.datasets()
        endless = repeats and data[0] is train_data  # one iterator for all epochs
        if not endless:
            replay_shuffles(data[0], given["cache" if cached else "data"] + start - phase.start)
        checkpoint = _compile_phase(model, saved, phase, chosen, loss, metrics_factory,
                                    train_config, steps_per_epoch * (phase.end - phase.start))
        if state is not None:
            # Optimiser state only carries over within the phase it was saved in.
            restore = checkpoint if state.get("phase") == index else tf.train.Checkpoint(model=model)
            try:
                restore.read(str(origin / CHECKPOINT_PREFIX)).expect_partial()
            except (tf.errors.OpError, ValueError) as error:
                raise FtkError(f"Cannot resume: {origin} cannot be read ({type(error).__name__}: "
                               f"{str(error).splitlines()[0]}). Start a new run (--overwrite, "
                               "or another --output).") from None
            log.info(f"Resuming from epoch {done} of {train_config['epochs']}.")
            state = None
        guard = NonFiniteLossGuard()
        checkpointer = RunCheckpointer(checkpoint, run, monitor, lower_is_better, index, guard,
                                       done, best)
        model.fit(
            data[0],
            validation_data=data[1],
            steps_per_epoch=steps_per_epoch if endless else None,
            initial_epoch=start,
            epochs=phase.end,
            callbacks=_callbacks(guard, checkpointer, monitor, lower_is_better, train_config, run),
            verbose=1 if progress.interactive() else 0,
        )
        if guard.where is not None:
            epoch, batch = guard.where
            raise FtkError(
                f"Training stopped: the loss became NaN or Inf at epoch {epoch}, batch {batch}. "
                f"Lower train.learning_rate (now {phase.head_learning_rate:g}), check the data "
                "for broken labels or inputs, or use a warmup (train.warmup_ratio). "
                f"Checkpoints up to the previous epoch are kept in {folder}."
            )
        best = checkpointer.best
        given["cache" if cached else "data"] += phase.end - phase.start
        done = phase.end
        if model.stop_training:
            break  # early stopping ends the run, not only the phase
    if not run.writes:
        # The chief's folder may be mid-swap, or (with --overwrite) an earlier
        # run's: this worker's weights and history matter to no one.
        return {}
    if (folder / "best").exists():
        tf.train.Checkpoint(model=model).read(str(folder / "best" / CHECKPOINT_PREFIX)).expect_partial()
    return read_history(run.file(HISTORY_FILE))


def replay_shuffles(dataset: Any, epochs: int) -> None:
    """Draw, and drop, the seeded shuffles of `dataset`'s first `epochs`
    epochs, so that the next epoch is shuffled as it was in an uninterrupted
    run. Each new iterator draws its epoch's shuffle seeds when it is created,
    before it reads anything.

    The order is replayed exactly where the model trains on this dataset
    object itself (the default strategy); a distributed dataset is rebuilt
    from it and draws its own orders."""
    for _ in range(epochs):
        iter(dataset)


def _compile_phase(model: FineTuneModel, saved: Any, phase: Phase, chosen: list, loss: Any,
                   metrics_factory: Any, train_config: Mapping[str, Any],
                   steps: int) -> tf.train.Checkpoint:
    """Recompile for one phase (Keras re-traces on a change of trainable state)
    and return the checkpoint holding `saved` (the model, or its head) and this
    phase's optimisers. Optimisers and metrics are made under the model's
    strategy, so each replica updates its copy of the variables in step."""
    with model.distribute_strategy.scope():
        head_optimizer = _scaled(build_optimizer(train_config, phase.head_learning_rate, steps,
                                                 "head_optimizer"), train_config)
        backbone_optimizer = _scaled(build_optimizer(
            train_config, phase.backbone_learning_rate, steps, "backbone_optimizer"),
            train_config) if chosen else None
        # Before compiling: `fit` puts back the trainable state `compile` saw, and a
        # backbone that was not trainable then would run in inference mode.
        model.set_backbone_training(chosen, backbone_optimizer)
        model.compile(optimizer=head_optimizer, loss=loss, metrics=metrics_factory(),
                      jit_compile=train_config["jit_compile"])
        # Built now so that a checkpoint restores their slots instead of deferring.
        head_optimizer.build(model.head.trainable_variables)
        parts = {"model": saved, "optimizer": head_optimizer}
        if backbone_optimizer is not None:
            backbone_optimizer.build(chosen)
            parts["backbone_optimizer"] = backbone_optimizer
        return tf.train.Checkpoint(**parts)


def _scaled(optimizer: Any, train_config: Mapping[str, Any]) -> Any:
    """float16 gradients underflow without loss scaling; bfloat16 needs none."""
    if train_config["mixed_precision"] == "mixed_float16":
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def check_monitor(monitor: str, metrics: list, has_validation: bool) -> None:
    """`train.monitor` must name the loss or a metric the training logs."""
    names = ["loss", *(metric.name for metric in metrics)]
    known = names + [f"val_{name}" for name in names] if has_validation else names
    if monitor not in known:
        raise ConfigError(f"train.monitor must be one of {', '.join(known)}. Received: {monitor!r}")


def _callbacks(guard: NonFiniteLossGuard, checkpointer: RunCheckpointer, monitor: str,
               lower_is_better: bool, train_config: Mapping[str, Any], run: RunDirectory) -> list:
    callbacks = [guard, checkpointer, EpochLog(train_config["epochs"])]
    if run.writes:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run.logs), write_graph=False,
                                                     profile_batch=0))
    patience = train_config["early_stopping_patience"]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, mode="min" if lower_is_better else "max"))
    return callbacks


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, so a run reports its progress through logging
    (Keras's own progress bar is shown on a terminal only)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        values = ", ".join(f"{key} {value:.4g}" for key, value in (logs or {}).items()
                           if isinstance(value, (int, float)))
        log.info(f"Epoch {epoch + 1}/{self.epochs}: {values}")


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns of floats."""
    rows = read_history_rows(path)
    # A column that started later (validation added on resume) is empty before it.
    return {key: [float(row[key]) if row.get(key) else math.nan for row in rows]
            for key in dict.fromkeys(key for row in rows for key in row)}



def train_model(task: Any, parts: Any, inputs: Any, run: RunDirectory, *,
                resume: bool, placement: Any = None) -> dict[str, list[float]]:
    """Train a built model on a run's inputs; the feature cache lives for
    this call only. In a multi-worker job (`placement`), training records
    are split by file between the workers."""
    from ftk.data import make_dataset
    from ftk.records import RecordSource

    config = task.config
    seed, batch_size = config["train"]["seed"], config["train"]["batch_size"]
    memory = config["train"]["cache_memory_mb"]
    validation, files = inputs.validation, task.file_inputs
    shard = None
    if isinstance(inputs.splits.train, RecordSource) and placement and placement.workers > 1:
        shard = (placement.workers, placement.cluster.rank)
        inputs.splits.train.check_shardable(placement.workers)
        mine = len(inputs.splits.train.shards[shard[1]::shard[0]])
        log.info(f"Worker {shard[1]} streams {mine} of the {len(inputs.splits.train.shards)} "
                 "training files; an epoch is the steps one pass over all of them takes.")
        shares = inputs.splits.train.shares(shard[0])
        if max(shares) > 1.1 * min(shares):
            log.warning(f"The workers' shares of the training files hold {min(shares)} to "
                        f"{max(shares)} examples, so each worker takes the same number from its "
                        "share and the smaller shares' examples count more. Write the records "
                        "with a number of files that is a multiple of the workers (--shards).")
    feature_cache = FeatureCache(
        parts.model, parts.preprocessor, inputs.train, validation,
        setting=config["train"]["cache_features"], batch_size=batch_size, seed=seed,
        memory_mb=memory, folder=run.cache, read_files=files)
    train_data = make_dataset(*inputs.train, parts.preprocessor, batch_size, training=True,
                              shuffle=True, seed=seed, cache_mb=memory, read_files=files,
                              shard=shard)
    validation_data = None if validation is None else make_dataset(
        *validation, parts.preprocessor, batch_size, cache_mb=memory, read_files=files)
    try:
        return train(parts.model, train_data, validation_data, loss=parts.loss,
                     metrics_factory=task.build_metrics, config=config, run=run,
                     steps_per_epoch=-(-len(inputs.splits.train) // batch_size), resume=resume,
                     direction=task.direction, feature_cache=feature_cache,
                     repeats=shard is not None)
    finally:
        feature_cache.remove()
