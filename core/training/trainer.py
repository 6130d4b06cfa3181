"""The training loop: phases, checkpoints, resume, early stopping, logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from ftk.errors import FtkError
from ftk.training.callbacks import (
    CHECKPOINT_PREFIX,
    NonFiniteLossGuard,
    RunCheckpointer,
    read_history_rows,
    read_state,
)
from ftk.training.feature_cache import FeatureCache
from ftk.training.freezing import select_trainable
from ftk.training.model import FineTuneModel
from ftk.training.optim import build_optimizer


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
          metrics_factory: Any, config: Mapping[str, Any], run_dir: Path,
          steps_per_epoch: int, resume: bool,
          feature_cache: FeatureCache | None = None) -> dict[str, list[float]]:
    """Fit `model` through every phase; returns the per-epoch history.

    A phase with a frozen backbone trains on `feature_cache`'s datasets when
    `train.cache_features` allows it (the log says which, and why).

    Raises:
        FtkError: the loss became NaN or Inf.
    """
    train_config = config["train"]
    monitor = train_config["monitor"] if validation_data is not None else "loss"
    backbone_variables = select_trainable(model.backbone_variables, config["backbone"])
    folder = run_dir / "checkpoints"
    state = read_state(folder / "last") if resume else None
    done = state["epoch"] if state else 0
    best = state.get("best") if state else None
    phases = plan_phases(config)
    # A backbone no phase trains stays as loaded: checkpoints skip its weights.
    saved = model if any(p.train_backbone for p in phases) else tf.train.Checkpoint(head=model.head)
    for index, phase in enumerate(phases):
        if phase.end <= done:
            continue
        chosen = backbone_variables if phase.train_backbone else []
        data = (train_data, validation_data)
        if feature_cache is not None:
            cached, reason = feature_cache.plan(phase.train_backbone, phase.end - max(done, phase.start))
            print(f"Feature cache {'on' if cached else 'off'}: {reason}.")
            if cached:
                data = feature_cache.datasets()
        checkpoint = _compile_phase(model, saved, phase, chosen, loss, metrics_factory,
                                    train_config, steps_per_epoch * (phase.end - phase.start))
        if state is not None:
            # Optimiser state only carries over within the phase it was saved in.
            restore = checkpoint if state.get("phase") == index else tf.train.Checkpoint(model=model)
            restore.read(str(folder / "last" / CHECKPOINT_PREFIX)).expect_partial()
            print(f"Resuming from epoch {done} of {train_config['epochs']}.")
            state = None
        guard = NonFiniteLossGuard()
        checkpointer = RunCheckpointer(checkpoint, folder, monitor, index, guard,
                                       run_dir / "history.csv", done, best)
        model.fit(
            data[0],
            validation_data=data[1],
            initial_epoch=max(done, phase.start),
            epochs=phase.end,
            callbacks=_callbacks(guard, checkpointer, monitor, train_config, run_dir),
            verbose=2 if _quiet() else 1,
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
        done = phase.end
        if model.stop_training:
            break  # early stopping ends the run, not only the phase
    if (folder / "best").exists():
        tf.train.Checkpoint(model=model).read(str(folder / "best" / CHECKPOINT_PREFIX)).expect_partial()
    return read_history(run_dir / "history.csv")


def _compile_phase(model: FineTuneModel, saved: Any, phase: Phase, chosen: list, loss: Any,
                   metrics_factory: Any, train_config: Mapping[str, Any],
                   steps: int) -> tf.train.Checkpoint:
    """Recompile for one phase (Keras re-traces on a change of trainable state)
    and return the checkpoint holding `saved` (the model, or its head) and this
    phase's optimisers."""
    head_optimizer = _scaled(build_optimizer(train_config, phase.head_learning_rate, steps,
                                             "head_optimizer"), train_config)
    model.compile(optimizer=head_optimizer, loss=loss, metrics=metrics_factory(),
                  jit_compile=train_config["jit_compile"])
    backbone_optimizer = _scaled(build_optimizer(
        train_config, phase.backbone_learning_rate, steps, "backbone_optimizer"),
        train_config) if chosen else None
    model.set_backbone_training(chosen, backbone_optimizer)
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
        raise FtkError(f"train.monitor must be one of {', '.join(known)}. Received: {monitor!r}")


def _callbacks(guard: NonFiniteLossGuard, checkpointer: RunCheckpointer, monitor: str,
               train_config: Mapping[str, Any], run_dir: Path) -> list:
    callbacks = [guard, checkpointer,
                 keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False,
                                             profile_batch=0)]
    patience = train_config["early_stopping_patience"]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, mode="min" if "loss" in monitor else "max"))
    return callbacks


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns of floats."""
    rows = read_history_rows(path)
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _quiet() -> bool:
    import os
    import sys

    return bool(os.environ.get("CI")) or not sys.stdout.isatty()
