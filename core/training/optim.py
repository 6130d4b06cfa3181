"""Optimisers with linear warmup then cosine decay."""

from __future__ import annotations

from typing import Any, Mapping

import tf_keras as keras

# Normalisation scales/offsets and biases are conventionally excluded from decay.
NO_DECAY = ["bias", "LayerNorm", "layer_norm", "gamma", "beta"]


def build_schedule(train_config: Mapping[str, Any], learning_rate: float, total_steps: int) -> Any:
    """Linear warmup over `warmup_ratio` of the steps, then cosine decay to 0;
    or a constant rate."""
    if train_config["schedule"] != "cosine":
        return learning_rate
    warmup = int(round(train_config["warmup_ratio"] * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=max(1, total_steps - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def build_optimizer(train_config: Mapping[str, Any], learning_rate: float, total_steps: int,
                    name: str) -> keras.optimizers.Optimizer:
    """An optimiser for one phase of training.

    Args:
        train_config: the `train` config section (optimizer, schedule,
            warmup_ratio, weight_decay).
        learning_rate: peak learning rate for this parameter group and phase.
        total_steps: optimiser steps in the phase, for the schedule.
        name: distinguishes the head's and the backbone's optimisers.
    """
    schedule = build_schedule(train_config, learning_rate, total_steps)
    kind = train_config["optimizer"]
    if kind == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, name=name,
                                           weight_decay=train_config["weight_decay"])
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
        return optimizer
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, name=name)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, name=name)
