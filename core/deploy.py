"""`ftk export`: a copy of the SavedModel, TF Serving's model folder, or a
TFLite file with its sidecar and the table that says what the file costs and
loses against the SavedModel it came from."""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ftk.errors import FtkError

log = logging.getLogger(__name__)

# Examples timed one at a time for the latency column.
LATENCY_EXAMPLES = 20
# A main-metric loss past which int8 tries keeping all but the matrix ops
# float, and past which the export warns about the file it wrote.
WARN_LOSS = 0.05


def export_run(run_dir: str | Path, format: str, output: str | Path | None, *,
               quantize: str, representative: int, int8_io: bool, name: str | None,
               plugins: Sequence[str]) -> Path:
    """Write the export of `run_dir` (a run or an export folder) in `format`;
    what `ftk.export` documents. Returns the path written."""
    import shutil

    from ftk.atomic import building_dir
    from ftk.predictor import find_export
    from ftk.registry import build_registry
    from ftk.serving import read_metadata
    from ftk.tflite import check_modes

    source = find_export(run_dir)
    if format != "tflite" and (quantize != "none" or int8_io):
        raise FtkError("--quantize and --int8-io apply to --format tflite only.")
    if format == "tf_serving":
        from ftk.server import default_name

        if output is None:
            raise FtkError("--format tf_serving needs --output DIR: the model base folder "
                           "TF Serving reads (DIR/NAME/1/ is written).")
        return write_tf_serving(source, Path(output), name or default_name(run_dir))
    if format not in ("saved_model", "tflite"):
        raise FtkError("Export format must be saved_model, tf_serving or tflite. "
                       f"Received: {format!r}")
    if output is not None:
        _check_target(Path(output), format)
    if format == "saved_model":
        if output is None or Path(output).resolve() == source.resolve():
            return source
        with building_dir(output) as staging:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        return Path(output)
    check_modes(quantize, int8_io)
    run = Path(run_dir) if source != Path(run_dir) else None
    file_name = "model.tflite" if quantize == "none" else f"model-{quantize}.tflite"
    target = Path(output) if output is not None else Path(run_dir) / file_name
    task_type = build_registry(plugins).task(read_metadata(source)["task"])
    write_tflite(source, target, task_type, quantize=quantize, representative=representative,
                 int8_io=int8_io, run_dir=run)
    return target


def _check_target(output: Path, format: str) -> None:
    """Never replace something that is not an earlier export of the same kind."""
    if format == "tflite" and output.suffix != ".tflite":
        raise FtkError(f"A TFLite export is one file ending in .tflite. Received: --output {output}")
    if not output.exists():
        return
    earlier_export = (output / "ftk.json").exists() if format == "saved_model" else output.is_file()
    if not earlier_export and (output.is_file() or not output.is_dir() or any(output.iterdir())
                               or format == "tflite"):
        raise FtkError(
            f"{output} exists and is not an earlier ftk export; choose another --output "
            "or remove it first."
        )


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
    with timed(f"Converting {source} to TFLite ({quantize})"):
        if quantize == "int8":
            int8 = _int8(task, source, metadata, splits, representative, int8_io)
        else:
            int8 = _Int8(tflite.convert(source, metadata, quantize), [], None)
    flatbuffer = int8.flatbuffer
    described = tflite.describe(flatbuffer, metadata, quantize, int8_io, int8.float_ops)
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
    table = comparison(task, source, target, evaluation, quantize, int8.note)
    write_text_atomic(table_file, table)
    return table


@dataclass(frozen=True)
class _Int8:
    flatbuffer: bytes
    float_ops: list[str]  # op types kept float by choice
    note: str | None  # what decided it, said below the table


def _int8(task: Any, source: Path, metadata: dict[str, Any], splits: Any, count: int,
          int8_io: bool) -> _Int8:
    """The int8 file, the op types it keeps float, and why.

    Full int8 where it keeps the main metric within `WARN_LOSS` of the
    SavedModel's on the validation split (else the test split). Where it
    does not, int8 in the matrix ops alone (`tflite.MATRIX_OPS`), the others
    float, if that loses less: the file keeps most of int8's saving in size.
    `--int8-io` asks for integer ops throughout, so it always gets full int8.
    """
    from ftk import tflite
    from ftk.predictor import LitePredictor, Predictor

    if splits is None:
        raise FtkError(f"--quantize int8 calibrates on the run's training data, which "
                       f"{source} does not lead to. Pass the run directory, with its "
                       "training data where the run read it.")
    calibrated = tflite.calibrate(source, metadata,
                                  _representative(task, splits.train, count, metadata), int8_io)
    full = calibrated.quantize()
    check = splits.validation if splits.validation is not None else splits.test
    if int8_io:
        return _Int8(full, [], None)
    if check is None:
        log.info("The run has no validation or test split to check full int8 on; it is kept.")
        return _Int8(full, [], None)
    base = _scores(Predictor(source, type(task)), check)
    metric = main_metric(task, base)

    def loss_of(flatbuffer: bytes) -> float:
        described = tflite.describe(flatbuffer, metadata, "int8", False)
        candidate = LitePredictor(source / "candidate.tflite", type(task),
                                  content=(flatbuffer, described))
        return _loss(task, metric, base, _scores(candidate, check))

    full_loss = loss_of(full)
    if full_loss <= WARN_LOSS:
        return _Int8(full, [], None)
    float_ops = calibrated.other_ops()
    mixed = calibrated.quantize(float_ops)
    mixed_loss = loss_of(mixed)
    said = (f"Full int8 lost {full_loss:.4f} {metric} on {len(check)} examples of "
            f"{check.source}, int8 in the matrix ops alone {mixed_loss:.4f}")
    if not mixed_loss < full_loss:
        note = f"{said}, so the file is full int8."
        log.info(note)
        return _Int8(full, [], note)
    note = f"{said}, so only those run in int8; these stay float: {', '.join(float_ops)}."
    log.info(note)
    return _Int8(mixed, float_ops, note)


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
               note: str | None = None) -> str:
    """Format, size, latency per example and main metric of the SavedModel
    and the TFLite file on `evaluation`, as a Markdown table (and `note`
    below it)."""
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
    if note:
        lines += ["", note]
    loss = _loss(task, metric, rows[0][3], rows[1][3])
    if not loss <= WARN_LOSS:
        log.warning(f"The TFLite file ({quantize}) loses {loss:.4f} {metric} against the "
                    f"SavedModel on this split ({_number(rows[1][3].get(metric))} against "
                    f"{_number(base)}). Compare --quantize dynamic or float16.")
    return "\n".join(lines) + "\n"


def _scores(predictor: Any, split: Any) -> dict[str, Any]:
    from ftk.evaluation import score

    return score(predictor.task, predictor, split)


def _loss(task: Any, metric: str, base: dict[str, Any], metrics: dict[str, Any]) -> float:
    """How much worse `metrics` are than `base` in `metric` (negative: better);
    infinite when the file's metric is missing or not a number."""
    value, reference = metrics.get(metric), base.get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.inf
    return (reference - value) * (-1 if task.direction(metric) == "min" else 1)


def main_metric(task: Any, metrics: dict[str, Any]) -> str:
    """The task's `main_metric`, else its first metric with a direction, else
    the evaluation's first number."""
    for name in (task.main_metric, *task.metric_directions):
        if name and name in metrics:
            return name
    name = next((name for name, value in metrics.items() if isinstance(value, (int, float))
                 and not isinstance(value, bool) and name != "num_examples"), None)
    if name is None:
        raise FtkError(f"The task's evaluation gave no number to compare the TFLite file "
                       f"by (received {sorted(metrics)}): its evaluation must return at "
                       "least one numeric metric.")
    return name


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

