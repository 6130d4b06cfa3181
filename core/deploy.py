"""`ftk export --format tflite`: the file, its sidecar, and the table that
says what the file costs and loses against the SavedModel it came from."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ftk.errors import FtkError

log = logging.getLogger(__name__)

# Examples timed one at a time for the latency column.
LATENCY_EXAMPLES = 20
# A main-metric loss past which the export warns.
WARN_LOSS = 0.05


def write_tf_serving(source: Path, base: Path, name: str) -> Path:
    """Copy the export `source` into `base/name/VERSION/`, the layout TF
    Serving's model server loads (`--model_base_path=base/name`): version 1,
    or one past the highest there, so a running server moves to it. Earlier
    versions stay; TF Serving serves the highest.

    Returns:
        The version folder written.
    """
    import shutil

    from ftk.atomic import building_dir
    from ftk.server import check_name

    check_name(name)
    folder = base / name
    if folder.exists() and not folder.is_dir():
        raise FtkError(f"{folder} is a file; --output must be a folder of TF Serving models.")
    # Dot names are staging folders of writes (a killed one is cleared later).
    entries = [entry.name for entry in folder.iterdir()
               if not entry.name.startswith(".")] if folder.is_dir() else []
    strangers = [entry for entry in entries if not entry.isdigit()]
    if strangers:
        raise FtkError(f"{folder} holds {strangers[0]!r}, which is not a model version; "
                       "TF Serving's model folder holds only numbered versions. Choose another "
                       "--output or --name.")
    target = folder / str(max(map(int, entries), default=0) + 1)
    with building_dir(target) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    log.info(f"Wrote version {target.name} of {name!r} for TF Serving in {target}.")
    return target


def write_tflite(source: Path, target: Path, task_type: Any, *, quantize: str,
                 representative: int, int8_io: bool, run_dir: Path | None) -> str | None:
    """Convert the export `source` into `target` (with `target.json`) and,
    for a run, write the comparison table beside it (`target.md`).

    Returns:
        The table in Markdown, or None when there is no evaluation split.
    """
    from ftk import tflite
    from ftk.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
    from ftk.progress import timed
    from ftk.serving import read_metadata

    metadata = read_metadata(source)
    task = task_type(metadata["config"], task_type.space_type.from_json(metadata["targets"]))
    splits = _splits(task, run_dir)
    float_ops: list[str] = []
    with timed(f"Converting {source} to TFLite ({quantize})"):
        if quantize == "int8":
            flatbuffer, float_ops = _int8(task, source, metadata, splits, representative, int8_io)
        else:
            flatbuffer = tflite.convert(source, metadata, quantize)
    described = tflite.describe(flatbuffer, metadata, quantize, int8_io, float_ops)
    table_file = target.with_name(target.name + ".md")
    # An earlier file's table would describe the wrong file if this one
    # stopped half-way; its sidecar is refused by digest.
    table_file.unlink(missing_ok=True)
    write_bytes_atomic(target, flatbuffer)
    write_json_atomic(tflite.sidecar_path(target), described)
    evaluation = None if splits is None else (
        splits.test if splits.test is not None else splits.validation)
    if evaluation is None:
        if splits is not None:
            log.info("No comparison table: the run has neither a test nor a validation split.")
        return None
    table = comparison(task, source, target, evaluation, quantize, float_ops)
    write_text_atomic(table_file, table)
    return table


def _int8(task: Any, source: Path, metadata: dict[str, Any], splits: Any, count: int,
          int8_io: bool) -> tuple[bytes, list[str]]:
    """The int8 file, and the ops it keeps float.

    Full int8 where it keeps the main metric within `WARN_LOSS` of the
    SavedModel's on the validation split (else the test split). Where it
    does not (a transformer's layer norms and softmax lose most in int8),
    only the weight ops run in int8 and the others stay float: the file
    keeps most of int8's saving in size. `--int8-io` asks for integer ops
    throughout, so it always gets full int8.
    """
    from ftk import tflite
    from ftk.predictor import Predictor

    if splits is None:
        raise FtkError(f"--quantize int8 calibrates on the run's training data, which "
                       f"{source} does not lead to. Pass the run directory, with its "
                       "training data where the run read it.")
    calibrated = tflite.calibrate(source, metadata,
                                  _representative(task, splits.train, count, metadata), int8_io)
    flatbuffer = calibrated.quantize()
    check = splits.validation if splits.validation is not None else splits.test
    if int8_io or check is None:
        return flatbuffer, []
    base = _scores(Predictor(source, type(task)), check)
    metric = main_metric(task, base)
    with tempfile.TemporaryDirectory(prefix="ftk-int8-") as folder:
        lite = _scores(_lite_predictor(flatbuffer, metadata, type(task), Path(folder)), check)
    loss = _loss(task, metric, base, lite)
    if loss is None or loss <= WARN_LOSS:
        return flatbuffer, []
    float_ops = calibrated.float_ops_beside_weights()
    log.info(f"Full int8 loses {loss:.4f} {metric} on {check.source}: only the weight ops "
             f"run in int8, the others stay float ({', '.join(float_ops)}).")
    return calibrated.quantize(float_ops), float_ops


def _lite_predictor(flatbuffer: bytes, metadata: dict[str, Any], task_type: Any,
                    folder: Path) -> Any:
    """A predictor of a file not yet written where it goes."""
    import json

    from ftk import tflite
    from ftk.predictor import LitePredictor

    path = folder / "candidate.tflite"
    path.write_bytes(flatbuffer)
    tflite.sidecar_path(path).write_text(
        json.dumps(tflite.describe(flatbuffer, metadata, "int8", False)), encoding="utf-8")
    return LitePredictor(path, task_type)


def _splits(task: Any, run_dir: Path | None) -> Any:
    """The run's splits, as training made them; None for a bare export or
    when its data is no longer where the run read it."""
    from ftk.data import load_splits

    if run_dir is None:
        return None
    try:
        return load_splits(task)
    except FtkError as error:
        log.warning(f"No comparison with the SavedModel: {error}")
        return None


def _representative(task: Any, train: Any, count: int,
                    metadata: dict[str, Any]) -> Callable[[], Iterable[Any]]:
    """`count` training inputs spread over the split (files sorted by class
    would otherwise give one class), one per calibration batch."""
    if count < 1:
        raise FtkError(f"--representative must be at least 1. Received: {count}")
    inputs = _inputs_of(train, count)
    log.info(f"Calibrating int8 on {len(inputs)} training examples.")

    def batches() -> Iterable[Any]:
        for batch, _ in task.tflite_batches(inputs, 1, metadata["tflite"]["input"]):
            batch = np.asarray(batch)
            yield batch.astype(object) if batch.dtype.kind in "OSU" else batch

    return batches


def _inputs_of(examples: Any, count: int) -> list[Any]:
    from ftk.records import RecordSource

    if isinstance(examples, RecordSource):  # streamed: the first records
        inputs, _ = next(iter(examples.batches(min(count, len(examples)))))
        return list(inputs)
    chosen = np.unique(np.linspace(0, len(examples) - 1, min(count, len(examples))).astype(int))
    return [examples.inputs[i] for i in chosen]


def comparison(task: Any, source: Path, target: Path, evaluation: Any, quantize: str,
               float_ops: Iterable[str] = ()) -> str:
    """Format, size, latency per example and main metric of the SavedModel
    and the TFLite file on `evaluation`, as a Markdown table."""
    from ftk.predictor import LitePredictor, Predictor

    rows = []
    for name, predictor, size in (
            ("SavedModel", Predictor(source, type(task)), _size(source)),
            (f"TFLite ({quantize})", LitePredictor(target, type(task)), target.stat().st_size)):
        rows.append((name, size, _latency(predictor, evaluation), _scores(predictor, evaluation)))
    metric = main_metric(task, rows[0][3])
    base = rows[0][3].get(metric)
    lines = [f"Evaluated on {len(evaluation)} examples of {evaluation.source}; latency is "
             "one example at a time on this machine's CPU (median).", "",
             f"| format | size | latency per example | {metric} | change |",
             "| --- | --- | --- | --- | --- |"]
    for name, size, latency, metrics in rows:
        value = metrics.get(metric)
        change = "" if name == "SavedModel" or value is None else f"{value - base:+.4f}"
        lines.append(f"| {name} | {size / 1e6:.2f} MB | {latency * 1000:.1f} ms | "
                     f"{_number(value)} | {change} |")
    if float_ops:
        lines += ["", "Full int8 lost too much here, so only the weight ops run in int8; "
                  f"these stay float: {', '.join(float_ops)}."]
    loss = _loss(task, metric, rows[0][3], rows[1][3])
    if loss is not None and loss > WARN_LOSS:
        log.warning(f"The TFLite file ({quantize}) loses {loss:.4f} {metric} against the "
                    f"SavedModel on this split ({_number(rows[1][3].get(metric))} against "
                    f"{_number(base)}). Compare another --quantize mode.")
    return "\n".join(lines) + "\n"


def _scores(predictor: Any, split: Any) -> dict[str, Any]:
    from ftk.evaluation import score

    return score(predictor.task, predictor, split)


def _loss(task: Any, metric: str, base: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    """How much worse `metrics` are than `base` in `metric` (negative: better)."""
    value, reference = metrics.get(metric), base.get(metric)
    if not isinstance(value, (int, float)) or not isinstance(reference, (int, float)):
        return None
    return (reference - value) * (-1 if task.direction(metric) == "min" else 1)


def main_metric(task: Any, metrics: dict[str, Any]) -> str:
    """The task's `main_metric`, else its first metric with a direction, else
    the evaluation's first number."""
    for name in (task.main_metric, *task.metric_directions):
        if name and name in metrics:
            return name
    return next(name for name, value in metrics.items() if isinstance(value, (int, float))
                and not isinstance(value, bool) and name != "num_examples")


def _latency(predictor: Any, evaluation: Any) -> float:
    """Median seconds of one prediction, over the first examples (after one
    untimed call, which loads and traces)."""
    inputs = _inputs_of(evaluation, LATENCY_EXAMPLES + 1)
    predictor.predict(inputs[:1])
    times = []
    for item in inputs[1:] or inputs:
        start = time.perf_counter()
        predictor.predict([item])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"

