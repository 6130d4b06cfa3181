"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ftk import config as config_lib
from ftk.errors import FtkError
from ftk.paths import ftk_home
from ftk.registry import Registry, build_registry

log = logging.getLogger(__name__)


def run(
    task: str | None = None,
    data: str | None = None,
    val_data: str | None = None,
    test_data: str | None = None,
    backbone: str | None = None,
    config: str | Path | Mapping[str, Any] | Sequence[str | Path] | None = None,
    set: Sequence[str] | Mapping[str, Any] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    distribute: str | None = None,
    plugins: Sequence[str] = (),
) -> Any:
    """Fine-tune, evaluate and export; the same names as `ftk run`'s flags.

    Args:
        task: task name; may come from a config file instead.
        data, val_data, test_data: training/validation/test data paths. With no
            training data, the task's built-in demo data is used (quickstart).
        backbone: preset name, TF Hub handle or SavedModel folder.
        config: YAML file path(s), or a mapping, merged over the defaults.
        set: `KEY=VALUE` strings (YAML values) or a mapping of dotted keys.
        epochs, batch_size: shorthands for `train.epochs`, `train.batch_size`.
        output_dir: the run directory; default `runs/<task>-<timestamp>`.
        resume: continue the run in `output_dir` from its last checkpoint.
        overwrite: replace the earlier run in `output_dir` once the new one has
            finished (only an ftk run directory is replaced).
        distribute: shorthand for `train.distribute` (see `ftk.distribute`).
        plugins: extra plugin modules to load.

    Returns:
        A `RunResult` with `run_dir`, `metrics`, `history` and `config`.

    Example:
        ```python
        result = ftk.run(task="text_classification", data="train.csv", epochs=3)
        result.metrics["accuracy"]
        ```
    """
    from ftk.rundir import RunDirectory

    registry = build_registry(plugins)
    layers = _config_layers(config, set)
    flags = _flag_layer(task, data, val_data, test_data, backbone, epochs, batch_size,
                        output_dir, distribute)
    if resume and output_dir is not None:
        saved = Path(output_dir) / "config.yaml"
        if saved.exists():
            layers.insert(0, (str(saved), config_lib.load_yaml_file(saved)))
    layers.append(("command-line flags", flags))
    task_name = _task_name(layers, registry)
    task_type = registry.task(task_name)
    resolved = config_lib.resolve(task_type.defaults, task_type.config_types, layers,
                                  task_type.config_choices)
    resolved["task"] = task_name
    task = task_type(resolved)
    check_run_config(task)
    from ftk.distribute import distribution, read_cluster, writes_run

    train, cluster = resolved["train"], read_cluster()
    if not resolved["data"]["train"]:
        _use_demo_data(task, resolved)
    if cluster is not None and len(cluster.workers) > 1 and resolved["output_dir"] is None:
        raise FtkError("A multi-worker run needs --output naming its run directory, the same "
                       "folder on every worker (a volume they share, for --resume).")
    if writes_run(train["distribute"], cluster):
        run = RunDirectory.create(resolved["output_dir"], task_name, resume=resume,
                                  overwrite=overwrite)
    else:
        run = RunDirectory.for_worker(resolved["output_dir"], resume=resume)
    resolved["output_dir"] = str(run.final_path)
    from ftk.runner import execute

    placement = None
    try:
        # Before anything else runs TensorFlow: a multi-worker job sets it up at startup.
        placement = distribution(train["distribute"], connect_timeout=train["connect_timeout"])
        placement.check_batch(train["batch_size"])
        result = execute(task, run, registry, placement, resume=resume)
        run.finish()
    except BaseException as error:
        run.abandon()
        _raise_if_out_of_space(error, run)
        _raise_if_worker_lost(error, placement)
        raise
    return result


def _raise_if_worker_lost(error: BaseException, placement: Any) -> None:
    """A multi-worker job whose peer stopped answering ends with what to do."""
    if placement is None or placement.workers < 2:
        return
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError)
    if isinstance(error, lost):
        from ftk.errors import first_line

        raise FtkError(
            f"Worker {placement.cluster.rank} lost contact with the others of this job "
            f"({type(error).__name__}: {first_line(error)}). A worker stopped or became "
            "unreachable; start every worker again with the same command and --resume "
            "to continue from the last saved epoch.") from error


def _raise_if_out_of_space(error: BaseException, run: Any) -> None:
    """A write that found no room becomes an error saying what is left and what to do."""
    from ftk.atomic import storage_failure

    reason = storage_failure(error)
    if reason is None:
        return
    if run.replaces is not None:
        after = (f"The earlier run in {run.final_path} is unchanged. Free space (or raise the "
                 "limit) and run the same command again.")
    elif (run.checkpoints / "last").is_dir():
        after = ("Every checkpoint written before is whole. Free space (or raise the limit) "
                 f"and continue with --resume --output {run.final_path}.")
    else:
        after = ("Free space (or raise the limit) and start again with --overwrite "
                 f"--output {run.final_path}.")
    raise FtkError(f"Cannot write the run in {run.final_path}: {reason}. {after}") from error


def check_run_config(task: Any) -> None:
    """Every value check of the engine and the task, before data is read or a
    backbone pulled."""
    config_lib.check_values(task.config)
    monitor = task.config["train"]["monitor"]
    if task.direction(monitor) is None:
        known = ", ".join(f"{name} ({direction})"
                          for name, direction in sorted(task.metric_directions.items()))
        raise config_lib.ConfigError(
            f"train.monitor is {monitor!r}, but task {task.name!r} does not say whether "
            f"{monitor.removeprefix('val_')} is better lower or higher, so the best epoch "
            f"cannot be chosen. Monitor loss or a metric with a direction: {known or 'none'}."
        )
    task.check_config()


def evaluate(path: str | Path, data: str | Path, *, batch_size: int | None = None,
             plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics of a run, export folder or TFLite file on a labelled data file.

    Example:
        ```python
        ftk.evaluate("runs/demo", data="test.csv")["accuracy"]
        ```
    """
    from ftk.data import read_examples
    from ftk.evaluation import score

    predictor = load(path, plugins=plugins)
    task = predictor.task
    if batch_size:
        task.config["train"] = {**task.config["train"], "batch_size": batch_size}
    return score(task, predictor, read_examples(task, str(data)))


def load(path: str | Path, *, plugins: Sequence[str] = ()) -> Any:
    """Load a run directory, export folder or TFLite file (with its sidecar
    JSON) for prediction (`.predict(inputs)`)."""
    from ftk.serving import read_metadata
    from ftk.predictor import LitePredictor, Predictor, find_export

    registry = build_registry(plugins)
    if Path(path).suffix == ".tflite":
        from ftk.tflite import read_sidecar

        _, described = read_sidecar(Path(path))
        return LitePredictor(path, registry.task(described["task"]))
    task_name = read_metadata(find_export(path))["task"]
    return Predictor(path, registry.task(task_name))


def predict(path: str | Path, inputs: Sequence[str], *, plugins: Sequence[str] = (),
            keep_going: bool = False, **options: Any) -> list[dict]:
    """Predictions for literal inputs or files, as `ftk predict` prints them.

    With `keep_going`, a bad input gets `{"error": ...}` in its place and the
    others are still predicted (see `Predictor.predict`). Keyword options are
    the task's own `predict_options`; detection's `draw` also writes one image
    per input into that folder, named after the input.
    """
    from ftk.options import check_given

    model = load(path, plugins=plugins)
    given = check_given(options, model.task.predict_options, f"task {model.task.name!r}")
    values = model.task.prediction_inputs([inputs] if isinstance(inputs, str) else list(inputs))
    predictions = model.predict(values, keep_going=keep_going)
    model.task.finish_predictions(values, predictions, **given)
    return predictions


def tasks(*, plugins: Sequence[str] = ()) -> list[dict[str, str]]:
    """Every registered task with its default backbone, head, loss and plugin."""
    registry = build_registry(plugins)
    return [{"task": name, "default_backbone": t.default_backbone, "head": t.head_name,
             "loss": t.loss_name, "plugin": registry.plugin_of("task", name),
             "description": t.description}
            for name, t in sorted(registry.tasks.items())]


def backbones(*, plugins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every backbone preset, and whether it is ready in the cache."""
    from ftk.hub.resolve import is_pulled

    registry = build_registry(plugins)
    return [{"name": name, "kind": b.kind, "source": b.handle or "built from a package",
             "cached": is_pulled(name) if b.pull else None, "license": b.license,
             "plugin": registry.plugin_of("backbone", name), "description": b.description}
            for name, b in sorted(registry.backbones.items())]


def pull_backbone(name: str, *, force: bool = False, plugins: Sequence[str] = ()) -> Path:
    """Build a preset into the cache now (it is otherwise built on first use)."""
    from ftk.hub.resolve import pull

    registry = build_registry(plugins)
    if name not in registry.backbones:
        known = ", ".join(sorted(registry.backbones)) or "none"
        raise FtkError(f"Unknown backbone preset {name!r}. Known presets: {known}.")
    return pull(registry.backbones[name], force=force)


def convert_backbone(checkpoint: str | Path, output_dir: str | Path, *,
                     converter: str | None = None, plugins: Sequence[str] = (),
                     **options: Any) -> Path:
    """Convert a checkpoint into Hub-format SavedModels in `output_dir`.

    The converter is the one registered converter that claims the checkpoint
    (`ftk backbones convert` lists them in its error when none does), or the
    one named by `converter`.

    Args:
        checkpoint: a checkpoint file or folder.
        output_dir: the folder to write (or to replace, if it holds an
            earlier conversion).
        converter: a converter name, to choose one explicitly.
        plugins: extra plugin modules to load.
        **options: the chosen converter's options, e.g. `seq_length=64`.

    Example:
        ```python
        ftk.convert_backbone("all-MiniLM-L6-v2/", "minilm", seq_length=128)
        ```
    """
    from ftk.options import check_given

    registry = build_registry(plugins)
    path = Path(checkpoint)
    if not path.exists():
        raise FtkError(f"Checkpoint {path} does not exist.")
    if converter is not None:
        if converter not in registry.converters:
            known = ", ".join(sorted(registry.converters)) or "none"
            raise FtkError(f"Unknown converter {converter!r}. Known converters: {known}.")
        chosen = [registry.converters[converter]]
    else:
        chosen = [c for c in registry.converters.values() if _claims(c, path, registry)]
    if not chosen:
        takes = "; ".join(f"{c.name} takes {c.description}"
                          for c in sorted(registry.converters.values(), key=lambda c: c.name))
        raise FtkError(f"No converter recognises {path}. {takes or 'No converter is installed'}.")
    if len(chosen) > 1:
        names = ", ".join(c.name for c in chosen)
        raise FtkError(f"Several converters claim {path} ({names}); pass --converter NAME.")
    from ftk import progress

    given = check_given(options, chosen[0].options, f"converter {chosen[0].name!r}")
    with progress.timed(f"Converting {path} with the {chosen[0].name} converter"):
        return Path(chosen[0].convert(path, Path(output_dir), **given))


def _claims(converter: Any, path: Path, registry: Registry) -> bool:
    from ftk.errors import PluginError

    try:
        return bool(converter.claims(path))
    except Exception as error:  # noqa: BLE001 - a plugin's check must not hide the others
        plugin = registry.plugin_of("converter", converter.name)
        raise PluginError(f"Converter {converter.name!r} of plugin {plugin!r} failed while "
                          f"checking {path}: {type(error).__name__}: {error}") from error


def installed_plugins(*, plugins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Loaded plugins: name, module, version and the hooks each implements."""
    registry = build_registry(plugins)
    return [{"name": info.name, "module": info.module, "version": info.version,
             "hooks": info.hooks} for info in registry.plugins.values()]


def export(run_dir: str | Path, format: str = "saved_model",
           output: str | Path | None = None, *, quantize: str = "none",
           representative: int = 300, int8_io: bool = False, name: str | None = None,
           plugins: Sequence[str] = ()) -> Path:
    """Write a finished run's model as a SavedModel folder, a TF Serving
    model folder or a TFLite file.

    The run already holds `export/`; `saved_model` copies it elsewhere.
    `tflite` converts it to a file TFLite's interpreters run (pixels in for
    image tasks, texts for BERT-style text), with a sidecar JSON beside it
    (`NAME.tflite.json`: inputs, outputs, targets, preprocessing) and, for a
    run with an evaluation split, a table comparing size, latency and main
    metric with the SavedModel (`NAME.tflite.md`).

    Args:
        quantize: for `tflite`: `none`, `dynamic` (int8 weights), `float16`
            or `int8` (weights and activations, calibrated on
            `representative` training examples; only the matrix ops where
            full int8 loses more than 0.05 of the main metric).
        int8_io: with `int8`: int8 inputs and outputs, integer ops only.
        name: for `tf_serving`: the model's name (default: the run's folder
            name); the SavedModel goes to `output/NAME/VERSION/`, version 1
            or one past the highest already there, as TF Serving loads it.

    Example:
        ```python
        ftk.export("runs/demo", format="tflite", quantize="int8")  # runs/demo/model-int8.tflite
        ```
    """
    from ftk.deploy import export_run

    return export_run(run_dir, format, output, quantize=quantize, representative=representative,
                      int8_io=int8_io, name=name, plugins=plugins)


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = 8501,
          name: str | None = None, limits: Any = None, plugins: Sequence[str] = ()) -> None:
    """Serve a run directory, export folder or TFLite file over HTTP until
    interrupted (`ftk serve`): TF Serving's REST API at `/v1/models/NAME`,
    readable predictions at `/predict`, a page to try the model at `/`.

    Args:
        host: the address to listen on; the default takes no connection from
            another machine.
        port: 0 takes a free port (the log says which).
        name: the model's name in URLs (default: the run's folder name).
        limits: an `ftk.server.Limits` (batch size and wait, request limits).

    Example:
        ```python
        ftk.serve("runs/demo", port=8501)  # POST http://127.0.0.1:8501/v1/models/demo:predict
        ```
    """
    from ftk import server

    server.serve(path, host=host, port=port, name=name, limits=limits or server.Limits(),
                 plugins=plugins)


def to_tfrecord(task: str, data: str | Path, output: str | Path, *, shards: int = 8,
                config: str | Path | Mapping[str, Any] | Sequence[str | Path] | None = None,
                set: Sequence[str] | Mapping[str, Any] | None = None, seed: int = 42,
                targets_of: str | Path | None = None,
                plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Write a data source as sharded TFRecord files for streaming (`ftk data
    to-tfrecord`): raw inputs (texts, image bytes) with their encoded targets,
    and a manifest. Read with the task's own reader and `data` settings.
    `targets_of` names training records whose target space (classes) the
    targets are encoded in: how a validation or test set is written, even
    one lacking some of the training classes.

    Returns:
        The manifest (also `output/manifest.json`).

    Example:
        ```python
        ftk.to_tfrecord("text_classification", "train.csv", "train-records", shards=4)
        ftk.run(task="text_classification", data="train-records")
        ```
    """
    from ftk.data import read_examples
    from ftk.records import is_records, write_records

    registry = build_registry(plugins)
    task_type = registry.task(task)
    resolved = config_lib.resolve(task_type.defaults, task_type.config_types,
                                  _config_layers(config, set), task_type.config_choices)
    resolved["task"] = task
    task_object = task_type(resolved)
    task_object.check_config()
    if is_records(str(data)):
        raise FtkError(f"{data} already holds TFRecords; give the data files they came from.")
    target = Path(output)
    if target.exists() and not (target / "manifest.json").is_file() and (
            not target.is_dir() or any(target.iterdir())):
        raise FtkError(f"{target} exists and is not earlier TFRecord output; choose another "
                       "--output or remove it first.")
    space = None
    if targets_of is not None:
        from ftk.records import read_records

        training = read_records(str(targets_of))
        if training.manifest.get("task") != task:
            raise FtkError(f"{targets_of} holds {training.manifest.get('task')} records, not "
                           f"{task} records.")
        space = task_type.space_type.from_json(training.manifest["targets"])
    examples = read_examples(task_object, str(data))
    from ftk import progress

    with progress.timed(f"Writing {len(examples)} examples of {data} as {shards} TFRecord file(s)"):
        return write_records(task_object, examples, target, shards=shards, seed=seed,
                             space=space)


def default_config(task: str, *, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """The full default config of `task` (what `ftk config TASK` prints)."""
    task_type = build_registry(plugins).task(task)
    resolved = config_lib.default_config(task_type.defaults)
    resolved["task"] = task
    return resolved


def _config_layers(config: Any, assignments: Any) -> list[tuple[str, Mapping[str, Any]]]:
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(config, Mapping):
        layers.append(("config argument", config))
    elif config is not None:
        paths = [config] if isinstance(config, (str, Path)) else list(config)
        layers += [(str(path), config_lib.load_yaml_file(path)) for path in paths]
    if isinstance(assignments, Mapping):
        for key, value in assignments.items():
            layers.append((f"set {key}", config_lib.nested(key, value)))
    else:
        for assignment in assignments or []:
            layers.append((f"--set {assignment}", config_lib.parse_set(assignment)))
    return layers


def _flag_layer(task: Any, data: Any, val_data: Any, test_data: Any, backbone: Any,
                epochs: Any, batch_size: Any, output_dir: Any, distribute: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    pairs = [("task", task), ("data.train", data), ("data.validation", val_data),
             ("data.test", test_data), ("backbone.handle", backbone), ("train.epochs", epochs),
             ("train.batch_size", batch_size), ("output_dir", output_dir),
             ("train.distribute", distribute)]
    given = [config_lib.nested(key, str(value) if isinstance(value, Path) else value)
             for key, value in pairs if value is not None]
    return config_lib.merged(flags, *given)


def _task_name(layers: Iterable[tuple[str, Mapping[str, Any]]], registry: Registry) -> str:
    name = None
    for _, layer in layers:
        if isinstance(layer, Mapping) and layer.get("task"):
            name = layer["task"]
    if not name:
        known = ", ".join(sorted(registry.tasks)) or "none"
        raise FtkError(f"No task given. Pass --task TASK (known tasks: {known}).")
    return name


def _use_demo_data(task: Any, resolved: dict[str, Any]) -> None:
    paths = task.demo_data(ftk_home() / "demo" / task.name)
    if paths is None:
        raise FtkError(f"Task {task.name!r} has no demo data: pass --data PATH.")
    for split, path in paths.items():
        if not resolved["data"].get(split):
            resolved["data"][split] = str(path)
    log.info(f"No --data given: running the {task.name} quickstart on its built-in demo data "
             f"({resolved['data']['train']}).")
