"""The `ftk` command line: a thin layer over the Python API in `ftk.api`."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import click  # noqa: E402

from ftk import api  # noqa: E402
from ftk.distribute import KINDS as DISTRIBUTE_KINDS  # noqa: E402
from ftk.errors import FtkError  # noqa: E402

PLUGIN_OPTION = click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                             help="Load a plugin module ad hoc (repeatable).")


class PluginOptionsCommand(click.Command):
    """A command that also takes the options installed plugins declare for it
    (`ftk.Option`s of converters or tasks), read from the registry when the
    command line is parsed."""

    def __init__(self, *args: Any, plugin_options: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.plugin_options = plugin_options

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `--plugin MODULE` must be known before the options it adds are parsed.
        ctx.meta["ftk.plugins"] = tuple(
            [value for flag, value in zip(args, args[1:]) if flag == "--plugin"]
            + [arg.split("=", 1)[1] for arg in args if arg.startswith("--plugin=")])
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        taken = {param.name for param in params}
        extra = [click.Option([option.flag], is_flag=option.type is bool,
                              type=None if option.type is bool else option.type,
                              default=None, help=option.help)
                 for option in self.plugin_options(ctx.meta.get("ftk.plugins", ()))
                 if option.name not in taken]
        return params + extra


def _declared_options(declared: Any) -> Any:
    """`(plugins) -> options`: what `declared(registry)` (one sequence of
    `ftk.Option`s per converter or task) declares, one per name."""
    def collect(plugins: tuple[str, ...]) -> list[Any]:
        from ftk.registry import build_registry

        options = {option.name: option for group in declared(build_registry(plugins))
                   for option in group}
        return list(options.values())

    return collect


class FtkGroup(click.Group):
    """Turns ftk errors into one readable line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted. Completed files in the run directory are intact.", err=True)
            sys.exit(130)
        except Exception as error:  # every failure reaches the user as one message
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            from ftk.atomic import storage_failure

            if isinstance(error, FtkError):
                click.echo(f"Error: {error}", err=True)
            elif reason := storage_failure(error):
                click.echo(f"Error: Out of room: {reason}. Free space (or raise the limit) "
                           "and run the command again.", err=True)
            else:
                click.echo(f"Error: {type(error).__name__}: {error}\n"
                           "Run with --debug for the full traceback.", err=True)
            sys.exit(1)


@click.group(cls=FtkGroup)
@click.option("--debug", is_flag=True,
              help="Show full tracebacks on errors, ftk's debug lines and TensorFlow's start-up log.")
@click.version_option(package_name="ftk")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tune TF Hub backbones on text, image and detection tasks."""
    from ftk.log import configure_cli_logging

    ctx.ensure_object(dict)["debug"] = debug
    configure_cli_logging(debug)


@cli.command()
@click.option("--task", help="Task to run (see `ftk tasks`).")
@click.option("--data", help="Training data (file or folder). Omit for the quickstart.")
@click.option("--val-data", help="Validation data; default: a split of --data.")
@click.option("--test-data", help="Test data for the final metrics.")
@click.option("--backbone", help="Preset name, TF Hub handle or SavedModel folder.")
@click.option("--config", "configs", multiple=True, help="YAML config file (repeatable).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override one config key, e.g. train.learning_rate=3e-4 (repeatable).")
@click.option("--epochs", type=int, help="Shorthand for --set train.epochs=N.")
@click.option("--batch-size", type=int, help="Shorthand for --set train.batch_size=N.")
@click.option("--output", help="Run directory (default runs/<task>-<timestamp>).")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output.")
@click.option("--distribute", type=click.Choice(DISTRIBUTE_KINDS),
              help="Shorthand for --set train.distribute=KIND (default auto).")
@PLUGIN_OPTION
def run(task: str | None, data: str | None, val_data: str | None, test_data: str | None,
        backbone: str | None, configs: tuple[str, ...], assignments: tuple[str, ...],
        epochs: int | None, batch_size: int | None, output: str | None, resume: bool,
        overwrite: bool, distribute: str | None, plugins: tuple[str, ...]) -> None:
    """Fine-tune, evaluate and export a model."""
    result = api.run(task=task, data=data, val_data=val_data, test_data=test_data,
                     backbone=backbone, config=list(configs), set=list(assignments),
                     epochs=epochs, batch_size=batch_size, output_dir=output, resume=resume,
                     overwrite=overwrite, distribute=distribute, plugins=plugins)
    click.echo(f"Run directory: {result.run_dir}")
    if result.metrics:
        headline = {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}
        click.echo(f"Metrics ({result.metrics.get('split')}): {json.dumps(headline)}")
        click.echo(f"All metrics: {result.run_dir / 'metrics.json'}")


@cli.command()
@click.argument("path")
@click.option("--data", required=True, help="Labelled data to evaluate on.")
@click.option("--batch-size", type=int)
@PLUGIN_OPTION
def evaluate(path: str, data: str, batch_size: int | None, plugins: tuple[str, ...]) -> None:
    """Metrics of a run, export folder or TFLite file on labelled data (JSON)."""
    click.echo(json.dumps(api.evaluate(path, data, batch_size=batch_size, plugins=plugins), indent=2))


@cli.command(cls=PluginOptionsCommand, plugin_options=_declared_options(
    lambda registry: (task.predict_options for task in registry.tasks.values())))
@click.argument("path")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--keep-going", is_flag=True,
              help='On a bad input, print {"input": INDEX, "error": ...} in its place and '
                   "predict the rest (exit status 1 if any failed).")
@PLUGIN_OPTION
def predict(path: str, inputs: tuple[str, ...], keep_going: bool, plugins: tuple[str, ...],
            **options: Any) -> None:
    """Predict for INPUTS (texts, files or a data file); JSON out. Tasks may
    add options of their own (detection: --draw DIR)."""
    predictions = api.predict(path, list(inputs), plugins=plugins, keep_going=keep_going,
                              **options)
    click.echo(json.dumps(predictions, indent=2))
    failed = sum("error" in prediction for prediction in predictions)
    if failed:
        raise FtkError(f"{failed} of {len(predictions)} inputs could not be predicted; "
                       'their entries hold {"input": INDEX, "error": REASON}.')


@cli.command()
@click.argument("run_dir")
@click.option("--format", "export_format",
              type=click.Choice(["saved_model", "tf_serving", "tflite"]),
              default="saved_model", show_default=True)
@click.option("--output", help="Where to write (default RUN_DIR/export, or RUN_DIR/model.tflite "
                               "and RUN_DIR/model-QUANTIZE.tflite; tf_serving: the model base "
                               "folder, required).")
@click.option("--name", help="tf_serving: the model's name (default: the run's folder name).")
@click.option("--quantize", type=click.Choice(["none", "dynamic", "float16", "int8"]),
              default="none", show_default=True,
              help="TFLite weights (dynamic, float16) or weights and activations (int8).")
@click.option("--representative", type=int, default=300, show_default=True,
              help="Training examples int8 calibrates on.")
@click.option("--int8-io", is_flag=True, help="With --quantize int8: int8 inputs and outputs too.")
@PLUGIN_OPTION
def export(run_dir: str, export_format: str, output: str | None, name: str | None,
           quantize: str, representative: int, int8_io: bool, plugins: tuple[str, ...]) -> None:
    """Export a finished run as a SavedModel, a TF Serving model folder or a
    TFLite file. For TFLite, print a table of size, latency and main metric
    against the SavedModel."""
    if name is not None and export_format != "tf_serving":
        raise FtkError("--name applies to --format tf_serving only.")
    target = api.export(run_dir, export_format, output, quantize=quantize,
                        representative=representative, int8_io=int8_io, name=name,
                        plugins=plugins)
    table = target.with_name(target.name + ".md")
    if export_format == "tflite" and table.is_file():
        click.echo(table.read_text(encoding="utf-8"))
    click.echo(str(target))


@cli.command()
@click.argument("path")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 opens it to the network).")
@click.option("--port", type=int, default=8501, show_default=True,
              help="Port (TF Serving's REST port by default; 0 takes a free one).")
@click.option("--name", help="Model name in /v1/models/NAME (default: the run's folder name).")
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True,
              help="Instances one model call runs, gathered across requests.")
@click.option("--batch-timeout-ms", type=click.FloatRange(0), default=5.0, show_default=True,
              help="How long a batch waits for more requests, from its first "
                   "request's arrival or the end of the model's last call, whichever "
                   "is later.")
@click.option("--max-instances", type=click.IntRange(1), default=256, show_default=True,
              help="Instances one request may hold.")
@click.option("--max-body-mb", type=click.FloatRange(0, min_open=True), default=16.0,
              show_default=True, help="Largest request body.")
@PLUGIN_OPTION
def serve(path: str, host: str, port: int, name: str | None, max_batch: int,
          batch_timeout_ms: float, max_instances: int, max_body_mb: float,
          plugins: tuple[str, ...]) -> None:
    """Serve a run, export folder or TFLite file over HTTP: TF Serving's REST
    API, readable predictions at /predict, and a page to try it at /."""
    from ftk.server import Limits

    api.serve(path, host=host, port=port, name=name, plugins=plugins,
              limits=Limits(max_batch=max_batch, batch_timeout_ms=batch_timeout_ms,
                            max_body_mb=max_body_mb, max_instances=max_instances))


@cli.command(context_settings={"ignore_unknown_options": True,
                               "allow_interspersed_args": False})
@click.option("--workers", type=int, required=True, help="How many worker processes.")
@click.option("--private-network", is_flag=True,
              help="Run the job in a loopback-only network namespace (Linux).")
@click.option("--timeout", type=float, help="Stop every worker after this many seconds.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(workers: int, private_network: bool, timeout: float | None,
           command: tuple[str, ...]) -> None:
    """Run COMMAND as a job of N workers on this machine (127.0.0.1), each
    with its TF_CONFIG; e.g. `ftk launch --workers 2 -- ftk run ...`. Exits
    with the chief's exit code."""
    from ftk.launch import launch as launch_job

    sys.exit(launch_job(list(command), workers, private_network=private_network,
                        timeout=timeout, out=sys.stdout))


@cli.group()
def data() -> None:
    """Prepare data: TFRecords for streaming."""


@data.command("to-tfrecord")
@click.argument("task")
@click.option("--data", "source", required=True, help="The data file or folder to convert.")
@click.option("--output", required=True, help="The folder to write (replaced whole).")
@click.option("--shards", type=int, default=8, show_default=True,
              help="How many files (at least the number of workers that will read them).")
@click.option("--targets-of", metavar="RECORDS",
              help="Encode targets in the classes of these training records (for a "
                   "validation or test set).")
@click.option("--config", "configs", multiple=True, help="YAML config file (its data settings).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override one config key, e.g. data.text_column=review (repeatable).")
@PLUGIN_OPTION
def to_tfrecord(task: str, source: str, output: str, shards: int, targets_of: str | None,
                configs: tuple[str, ...], assignments: tuple[str, ...],
                plugins: tuple[str, ...]) -> None:
    """Write TASK's data as sharded TFRecord files and a manifest (JSON out);
    `ftk run --data OUTPUT` then streams them."""
    manifest = api.to_tfrecord(task, source, output, shards=shards, config=list(configs),
                               set=list(assignments), targets_of=targets_of, plugins=plugins)
    click.echo(json.dumps({key: manifest[key] for key in ("task", "source", "examples", "files")},
                          indent=2))


@cli.command()
@PLUGIN_OPTION
def tasks(plugins: tuple[str, ...]) -> None:
    """List the registered tasks."""
    rows = [(t["task"], t["default_backbone"], t["head"], t["loss"], t["plugin"])
            for t in api.tasks(plugins=plugins)]
    _table(("TASK", "DEFAULT BACKBONE", "HEAD", "LOSS", "PLUGIN"), rows)


@cli.command()
@PLUGIN_OPTION
def plugins(plugins: tuple[str, ...]) -> None:
    """List the loaded plugins as JSON."""
    click.echo(json.dumps(api.installed_plugins(plugins=plugins), indent=2))


@cli.command("config")
@click.argument("task")
@PLUGIN_OPTION
def config_command(task: str, plugins: tuple[str, ...]) -> None:
    """Print TASK's full default config as YAML."""
    from ftk.config import dump

    click.echo(dump(api.default_config(task, plugins=plugins)), nl=False)


@cli.group()
def backbones() -> None:
    """List, pull and convert backbones."""


@backbones.command("list")
@PLUGIN_OPTION
def backbones_list(plugins: tuple[str, ...]) -> None:
    """Show presets and whether each is cached."""
    rows = [(b["name"], b["kind"], {True: "yes", False: "no", None: "tfhub"}[b["cached"]],
             b["source"], b["plugin"]) for b in api.backbones(plugins=plugins)]
    _table(("NAME", "KIND", "CACHED", "SOURCE", "PLUGIN"), rows)


@backbones.command("pull")
@click.argument("name")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
@PLUGIN_OPTION
def backbones_pull(name: str, force: bool, plugins: tuple[str, ...]) -> None:
    """Build preset NAME into the cache now."""
    click.echo(str(api.pull_backbone(name, force=force, plugins=plugins)))


@backbones.command("convert", cls=PluginOptionsCommand, plugin_options=_declared_options(
    lambda registry: (converter.options for converter in registry.converters.values())))
@click.argument("checkpoint")
@click.argument("output_dir")
@click.option("--converter", default=None, metavar="NAME",
              help="The converter to use (default: the one that recognises CHECKPOINT).")
@PLUGIN_OPTION
def backbones_convert(checkpoint: str, output_dir: str, converter: str | None,
                      plugins: tuple[str, ...], **options: Any) -> None:
    """Convert CHECKPOINT to Hub format with the converter that recognises it
    (built in: a BERT-family folder with config.json, model.safetensors and
    vocab.txt, or an EfficientNet-Lite0 .pth file). Converters add options of
    their own (BERT: --seq-length)."""
    click.echo(str(api.convert_backbone(checkpoint, output_dir, converter=converter,
                                        plugins=plugins, **options)))


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def main() -> None:
    """Console-script entry point: add plugin commands, then run."""
    # The launcher only relays its workers' lines; and a process with a second
    # thread cannot enter a new user namespace (`launch --private-network`).
    if "--debug" not in sys.argv and "launch" not in sys.argv[1:3]:
        from ftk.log import filter_native_noise

        filter_native_noise()
    try:
        from ftk.registry import build_registry, register_commands

        register_commands(build_registry(), cli)
    except FtkError as error:
        if "--debug" in sys.argv:
            traceback.print_exc()
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    cli(prog_name="ftk")


if __name__ == "__main__":
    main()
