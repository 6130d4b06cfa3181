"""The final evaluation of a run, and `ftk evaluate`: the task's whole-set
metrics, computed on the exported model."""

from __future__ import annotations

from typing import Any

from ftk.rundir import RunDirectory
from ftk.task import Examples, Task


def score(task: Task, predictor: Any, examples: Examples) -> dict[str, Any]:
    """The task's metrics for one labelled data source, through the export."""
    targets = task.encode_targets(examples)
    batch_size = task.config["train"]["batch_size"]
    described = f"Scoring {len(examples)} examples of {examples.source}"
    if task.evaluate_on == "predictions":
        outputs = predictor.prediction_arrays(examples.inputs, batch_size, progress=described)
    else:
        outputs = predictor.raw_outputs(examples.inputs, batch_size, progress=described)
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
    task.write_samples(predictor, evaluation, run)
    return metrics
