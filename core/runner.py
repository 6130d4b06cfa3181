"""One fine-tuning run, as a sequence of steps each owned by its module:
inputs (`ftk.data`), model (`ftk.training.model`), training
(`ftk.training.trainer`), export (`ftk.serving`), evaluation
(`ftk.evaluation`) and reports (the task, through the run directory)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ftk import config as config_lib
from ftk import progress
from ftk.errors import FtkError
from ftk.registry import Registry
from ftk.rundir import CONFIG_FILE, METRICS_FILE, RunDirectory
from ftk.task import Task

log = logging.getLogger(__name__)


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


def execute(task: Task, run: RunDirectory, registry: Registry, placement: Any, *,
            resume: bool) -> RunResult:
    """Train, export and evaluate one run into `run`, on `placement`'s
    strategy (an `ftk.distribute.Distribution`)."""
    import tensorflow as tf
    import tf_keras as keras

    from ftk.data import prepare_inputs
    from ftk.evaluation import evaluate_run
    from ftk.hub.resolve import resolve_backbone
    from ftk.plots import history_png
    from ftk.serving import write_export
    from ftk.training.model import build_model
    from ftk.training.trainer import train_model

    config = task.config
    # Keras's per-batch timing and config-serialisation warnings are noise here.
    tf.get_logger().setLevel("ERROR")
    inputs = prepare_inputs(task)
    if resume:
        check_same_targets(task, run)
    # Before any variable exists: a multi-worker strategy sends each variable's
    # first value from the chief, which workers of other shapes cannot take.
    placement.agree(job_facts(task, inputs, run, registry))
    backbone = resolve_backbone(config["backbone"]["handle"] or task.default_backbone,
                                registry.backbones, preprocessor=config["backbone"]["preprocessor"])
    # Seeds make CPU runs repeatable. Seeded after the backbone is resolved, so a
    # first-use pull (whose conversion draws random numbers) gives the same run
    # as a cached preset. Op determinism is not forced: it rejects Hub models
    # whose dropout ops were saved without a seed.
    keras.utils.set_random_seed(config["train"]["seed"])
    parts = build_model(task, backbone, inputs, placement.strategy)
    # Written once the model has proved buildable, so a bad value needs no --overwrite.
    run.write_text(CONFIG_FILE, config_lib.dump(saved_config(config, registry.backbones)))
    for name, text in task.space.files().items():
        run.write_text(name, text)
    log.info(f"Training {task.name} on {len(inputs.splits.train)} examples "
             f"({task.space.summary() or task.space.kind}) with backbone {backbone.name} ...")
    history = train_model(task, parts, inputs, run, resume=resume, placement=placement)

    metadata = {"task": task.name, "backbone": backbone.name, "targets": task.space.to_json(),
                "config": saved_config(config, registry.backbones)}
    with progress.timed("Writing the export"), run.building("export") as staging:
        write_export(staging, parts.model, parts.preprocessor, task.postprocess, metadata,
                     task.space.files())
    if not run.writes:  # the chief evaluates and reports
        return RunResult(run.final_path, {}, history, dict(config))
    metrics = evaluate_run(task, run, inputs.splits)
    if metrics:
        run.write_json(METRICS_FILE, metrics)
        task.write_reports(metrics, run)
    curves = history_png(history)
    if curves is not None:
        run.write_bytes("plots/training_curves.png", curves)
    return RunResult(run.final_path, metrics, history, dict(config))


def job_facts(task: Task, inputs: Any, run: RunDirectory, registry: Registry) -> dict[str, Any]:
    """What every worker of a multi-worker job must agree on."""
    config = saved_config(task.config, registry.backbones)
    facts: dict[str, Any] = {f"config section {key}": value for key, value in config.items()}
    facts["output folder"] = str(run.final_path.resolve())
    facts["examples per split"] = [None if split is None else len(split) for split in
                                   (inputs.splits.train, inputs.splits.validation,
                                    inputs.splits.test)]
    facts["targets"] = task.space.to_json()
    facts["resume point"] = run.resume_from[1] if run.resume_from else None
    return facts


def check_same_targets(task: Task, run: RunDirectory) -> None:
    """A resumed run must have the targets it was trained on (its classes);
    otherwise nothing of the run is touched."""
    for name, text in task.space.files().items():
        saved = run.file(name)
        if saved.is_file() and saved.read_text(encoding="utf-8") != text:
            raise FtkError(
                f"Cannot resume {run.path}: its {name} differs from what the data gives now "
                f"({task.space.summary()}). Resume with the data the run was started with, "
                "or start a new run in another --output."
            )


def saved_config(config: Mapping[str, Any], presets: Mapping[str, Any]) -> dict[str, Any]:
    """The config as written to a run: data paths and local backbone folders
    absolute, no output folder, so `ftk run --config RUN/config.yaml`
    reproduces the run from anywhere."""
    saved = copy.deepcopy(dict(config))
    for key in ("train", "validation", "test"):
        if saved["data"].get(key):
            saved["data"][key] = str(Path(saved["data"][key]).resolve())
    for key in ("handle", "preprocessor"):
        local = saved["backbone"].get(key)
        if local and local not in presets and "://" not in local and Path(local).expanduser().exists():
            saved["backbone"][key] = str(Path(local).expanduser().resolve())
    saved["output_dir"] = None
    return saved
