"""The plugin system: discovery, ad hoc loading, errors, and the listing commands."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import uuid

import click
import click.testing
import pytest

import ftk
from ftk.registry import build_registry
from helpers import ftk_cli, json_out

SENTIMENT_PLUGIN = '''
import ftk
from ftk.plugins.text_classification import TextClassification

class Sentiment(TextClassification):
    name = "{task}"
    description = "reviews"

@ftk.hookimpl
def ftk_register_tasks(register):
    register(Sentiment)
'''

HELLO_PLUGIN = '''
import click
import ftk

@ftk.hookimpl
def ftk_register_commands(cli):
    @cli.command()
    def hello():
        """Say hello."""
        click.echo("hello from a plugin")
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write a plugin module under a unique name and make it importable."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str, name: str | None = None) -> str:
        # unique names: Python caches imported modules for the whole session
        name = name or f"ftk_test_plugin_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


def fake_entry_points(monkeypatch, *pairs: tuple[str, str]) -> None:
    points = [importlib.metadata.EntryPoint(name, value, "ftk") for name, value in pairs]
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        return points if kwargs.get("group") == "ftk" else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_builtin_plugin_is_registered_like_a_third_party_one():
    registry = build_registry()
    declared = {ep.value for ep in importlib.metadata.entry_points(group="ftk")}
    for task in ("text_classification", "image_classification", "detection"):
        assert registry.plugin_of("task", task) == task
        assert registry.plugins[task].module == f"ftk.plugins.{task}"
        assert f"ftk.plugins.{task}" in declared
    for family in ("bert", "efficientnet_lite"):
        assert registry.plugins[family].module == f"ftk.plugins.{family}"
        assert f"ftk.plugins.{family}" in declared
    assert registry.plugin_of("backbone", "efficientnet-lite0") == "efficientnet_lite"
    assert registry.plugin_of("backbone", "minilm-l6") == "bert"
    assert registry.plugin_of("converter", "bert") == "bert"


def test_ftk_register_tasks(plugin_module, monkeypatch):
    name = plugin_module(SENTIMENT_PLUGIN.format(task="sentiment"))
    fake_entry_points(monkeypatch, ("sentiment_plugin", name))
    registry = build_registry()
    assert registry.plugin_of("task", "sentiment") == "sentiment_plugin"
    assert "sentiment" in [t["task"] for t in ftk.tasks()]


def test_ftk_register_backbones(plugin_module):
    name = plugin_module('''
        import ftk

        @ftk.hookimpl
        def ftk_register_backbones(register):
            register(ftk.Backbone(name="nnlm-en-50", kind="text_embedding",
                                  handle="https://tfhub.dev/google/nnlm-en-dim50/2"))
    ''')
    listed = {b["name"]: b for b in ftk.backbones(plugins=[name])}
    assert listed["nnlm-en-50"]["plugin"] == name
    assert listed["nnlm-en-50"]["source"] == "https://tfhub.dev/google/nnlm-en-dim50/2"


def test_ftk_register_converters(plugin_module, tmp_path):
    name = plugin_module('''
        import json
        from pathlib import Path

        import ftk

        def convert(checkpoint, output_dir, *, width=2):
            output_dir.mkdir(parents=True)
            (output_dir / "made.json").write_text(json.dumps({"width": width}))
            return output_dir

        @ftk.hookimpl
        def ftk_register_converters(register):
            register(ftk.Converter(
                name="toy", description="a folder holding toy.json",
                claims=lambda path: (Path(path) / "toy.json").is_file(), convert=convert,
                options=(ftk.Option("width", int, "Toy width."),)))
    ''')
    source = tmp_path / "source"
    source.mkdir()
    (source / "toy.json").write_text("{}")
    result = ftk_cli("backbones", "convert", source, tmp_path / "out", "--width", 5,
                     "--plugin", name)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "made.json").read_text() == '{"width": 5}'
    # An option of another converter does not apply to this checkpoint.
    other = ftk_cli("backbones", "convert", source, tmp_path / "o2", "--seq-length", 8,
                    "--plugin", name)
    assert other.exit_code == 1
    assert "--seq-length does not apply to converter 'toy' (its options: --width)." in other.stderr
    # A checkpoint nobody recognises lists what each converter takes.
    (tmp_path / "empty").mkdir()
    unknown = ftk_cli("backbones", "convert", tmp_path / "empty", tmp_path / "o3", "--plugin", name)
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
    assert f"No converter recognises {tmp_path / 'empty'}." in unknown.stderr
    assert "bert takes a Hugging Face BERT-family folder" in unknown.stderr
    assert "toy takes a folder holding toy.json" in unknown.stderr


def test_ftk_register_commands(plugin_module):
    name = plugin_module(HELLO_PLUGIN)
    from ftk.registry import register_commands

    group = click.Group()
    register_commands(build_registry([name]), group)
    result = click.testing.CliRunner().invoke(group, ["hello"])
    assert result.output == "hello from a plugin\n"


def test_plugin_commands_reach_the_ftk_executable(plugin_module, tmp_path):
    name = plugin_module(HELLO_PLUGIN)
    env = {**_env(), "FTK_PLUGINS": name, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "ftk.cli", "hello"], capture_output=True,
                            text=True, env=env)
    assert result.stdout == "hello from a plugin\n", result.stderr


def test_ftk_plugins_env_and_plugin_option_load_modules(plugin_module, monkeypatch):
    first = plugin_module(SENTIMENT_PLUGIN.format(task="from_env"))
    second = plugin_module(SENTIMENT_PLUGIN.format(task="from_flag"))
    monkeypatch.setenv("FTK_PLUGINS", first)
    result = ftk_cli("tasks", "--plugin", second)
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    assert rows["from_env"] == first and rows["from_flag"] == second


def test_disable_autoload_skips_entry_points_but_keeps_builtins(plugin_module, monkeypatch):
    name = plugin_module(SENTIMENT_PLUGIN.format(task="sentiment"))
    fake_entry_points(monkeypatch, ("sentiment_plugin", name))
    monkeypatch.setenv("FTK_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert set(build_registry().tasks) == {"text_classification", "image_classification", "detection"}


def test_autoload_flag_set_to_zero_keeps_autoload(plugin_module, monkeypatch):
    name = plugin_module(SENTIMENT_PLUGIN.format(task="sentiment"))
    fake_entry_points(monkeypatch, ("sentiment_plugin", name))
    monkeypatch.setenv("FTK_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert "sentiment" in build_registry().tasks


def test_duplicate_task_names_both_plugins(plugin_module, monkeypatch):
    name = plugin_module(SENTIMENT_PLUGIN.format(task="text_classification"))
    fake_entry_points(monkeypatch, ("copycat", name))
    result = ftk_cli("tasks")
    assert result.exit_code == 1
    assert "Duplicate task 'text_classification'" in result.stderr
    assert "'text_classification'" in result.stderr and "'copycat'" in result.stderr
    assert "Traceback" not in result.output


def test_plugin_that_fails_to_import_is_named(plugin_module, monkeypatch):
    name = plugin_module("import a_module_that_does_not_exist\n")
    fake_entry_points(monkeypatch, ("broken", name))
    result = ftk_cli("plugins")
    assert result.exit_code == 1
    assert f"Plugin 'broken' ({name}) failed to import: ModuleNotFoundError" in result.stderr


def test_plugin_that_raises_while_registering_is_named(plugin_module):
    name = plugin_module('''
        import ftk

        @ftk.hookimpl
        def ftk_register_tasks(register):
            raise RuntimeError("no GPU found")
    ''')
    result = ftk_cli("tasks", "--plugin", name)
    assert result.exit_code == 1
    assert f"Plugin {name!r} raised in ftk_register_tasks: RuntimeError: no GPU found" in result.stderr


def test_unknown_task_lists_known_ones(topics):
    result = ftk_cli("run", "--task", "sentimnet", "--data", topics["train"])
    assert result.exit_code == 1
    assert "Unknown task 'sentimnet'. Known tasks: detection, image_classification, text_classification" in result.stderr


def test_ftk_plugins_prints_json():
    result = ftk_cli("plugins")
    entry = next(p for p in json_out(result) if p["name"] == "text_classification")
    assert entry["hooks"] == ["ftk_register_tasks"]
    family = next(p for p in json_out(result) if p["name"] == "bert")
    assert family["hooks"] == ["ftk_register_backbones", "ftk_register_converters"]
    assert entry["version"] == importlib.metadata.version("ftk")


def test_ftk_tasks_prints_a_table():
    lines = ftk_cli("tasks").stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK", "DEFAULT", "BACKBONE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "minilm-l6" in rows["text_classification"]
    assert "efficientnet-lite0" in rows["image_classification"]
    assert "FCOS" in rows["detection"]


@pytest.mark.parametrize("command", [["--help"], ["tasks"], ["plugins"]])
def test_listing_commands_do_not_import_tensorflow(command):
    code = ("import sys; from ftk.cli import main; sys.argv = ['ftk', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True,
                            text=True, env=_env())
    assert result.returncode == 0, result.stderr


def test_check_task_accepts_the_builtin_task_and_names_problems():
    from ftk import testing

    task = build_registry().task("text_classification")
    assert testing.check_task(task) == []

    class Broken(ftk.Task):
        name = "my task"
        defaults = {"extras": {}}
        metric_directions = {"mae": "lower"}

    assert testing.check_task(Broken) == [
        "name must be an identifier (letters, digits, _). Received: 'my task'",
        "default_backbone must name a preset, handle or path",
        "read_data is required and not defined",
        "build_preprocessor is required and not defined",
        "build_head is required and not defined",
        "build_loss is required and not defined",
        "defaults has sections the engine does not know: extras (sections: task, data, "
        "backbone, head, loss, train, output_dir)",
        "metric_directions['mae'] must be 'min' or 'max'. Received: 'lower'"]
    assert testing.check_task(object())[0].startswith("a task must be a subclass of ftk.Task")


def test_an_invalid_task_is_refused_naming_plugin_and_field(plugin_module):
    name = plugin_module('''
        import ftk

        class Half(ftk.Task):
            name = "half"
            default_backbone = "minilm-l6"

            def read_data(self, path):
                return ftk.Examples([], [])

        @ftk.hookimpl
        def ftk_register_tasks(register):
            register(Half)
    ''')
    result = ftk_cli("tasks", "--plugin", name)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (f"Plugin {name!r} registered an invalid task 'half': build_preprocessor is required "
            "and not defined; build_head is required") in result.stderr


def test_an_invalid_backbone_is_refused_naming_plugin_and_field(plugin_module):
    name = plugin_module('''
        import ftk

        @ftk.hookimpl
        def ftk_register_backbones(register):
            register(ftk.Backbone(name="nowhere", kind="image"))
    ''')
    result = ftk_cli("backbones", "list", "--plugin", name)
    assert result.exit_code == 1
    assert (f"Plugin {name!r} registered an invalid backbone 'nowhere': exactly one of handle "
            "and pull must be set.") in result.stderr


def test_a_misspelt_hook_is_an_error_naming_the_plugin(plugin_module):
    name = plugin_module('''
        import ftk

        @ftk.hookimpl
        def ftk_register_task(register):
            pass
    ''')
    result = ftk_cli("tasks", "--plugin", name)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Plugin {name!r} implements ftk_register_task, which is not an ftk hook." in result.stderr
    assert ("Known hooks: ftk_register_backbones, ftk_register_commands, "
            "ftk_register_converters, ftk_register_tasks") \
        in result.stderr


def test_smoke_run_drives_a_plugin_task_end_to_end(plugin_module, embedding, topics, tmp_path):
    from ftk import testing

    name = plugin_module(SENTIMENT_PLUGIN.format(task="smoke_sentiment"))
    result = testing.smoke_run("smoke_sentiment", data=topics["train"], backbone=embedding,
                               output_dir=tmp_path / "run", plugins=[name], head__dropout=0.0)
    assert result.config["task"] == "smoke_sentiment" and result.config["head"]["dropout"] == 0.0
    assert "accuracy" in result.metrics


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "FTK_PLUGINS"}


def test_plugin_options_take_zero_as_a_value():
    from ftk.options import Option, check_given

    assert check_given({"seq_length": 0, "draw": None}, [Option("seq_length", int)], "x") == {
        "seq_length": 0}


def test_a_converter_whose_check_fails_is_named(plugin_module, tmp_path):
    name = plugin_module('''
        import ftk

        def claims(path):
            raise KeyError("config")

        @ftk.hookimpl
        def ftk_register_converters(register):
            register(ftk.Converter(name="fragile", description="x", claims=claims,
                                   convert=lambda checkpoint, output_dir: output_dir))
    ''')
    result = ftk_cli("backbones", "convert", tmp_path, tmp_path / "out", "--plugin", name)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Converter 'fragile' of plugin {name!r} failed while checking {tmp_path}" in result.stderr
