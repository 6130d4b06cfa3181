"""The final evaluation of a run, and `ftk evaluate`: the task's whole-set
metrics, computed on the exported model."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ftk import progress
from ftk.records import RecordSource
from ftk.rundir import RunDirectory
from ftk.task import Task

log = logging.getLogger(__name__)


def score(task: Task, predictor: Any, examples: Any) -> dict[str, Any]:
    """The task's metrics for one labelled data source (`ftk.Examples`, or
    streamed records), through the export."""
    batch_size = task.config["train"]["batch_size"]
    described = f"Scoring {len(examples)} examples of {examples.source}"
    outputs_of = (predictor.prediction_arrays if task.evaluate_on == "predictions"
                  else predictor.raw_outputs)
    if not isinstance(examples, RecordSource):
        targets = task.encode_targets(examples)
        return task.evaluate(targets, outputs_of(examples.inputs, batch_size, progress=described))
    examples.check_targets(predictor.space)
    # Streamed a batch at a time: only the outputs and targets are kept.
    chunks = [(outputs_of(inputs, batch_size), targets) for inputs, targets in
              progress.track(examples.batches(batch_size), -(-len(examples) // batch_size),
                             described)]
    import tensorflow as tf

    outputs, targets = (tf.nest.map_structure(lambda *parts: np.concatenate(parts),
                                              *[chunk[i] for chunk in chunks]) for i in (0, 1))
    return task.evaluate(targets, outputs)


def evaluate_run(task: Task, run: RunDirectory, splits: Any) -> dict[str, Any]:
    """Metrics of the finished run on its test split (else its validation
    split), with the task's sample pictures; empty without either split."""
    from ftk.predictor import Predictor

    evaluation = splits.test if splits.test is not None else splits.validation
    if evaluation is None:
        return {}
    predictor = Predictor(run.path, type(task))
    metrics = score(task, predictor, evaluation)
    metrics["split"] = "test" if splits.test is not None else "validation"
    if isinstance(evaluation, RecordSource):
        if type(task).write_samples is not Task.write_samples:
            log.info("No sample pictures: they are drawn from data files, and this split "
                     "is streamed from TFRecords.")
    else:
        task.write_samples(predictor, evaluation, run)
    return metrics
