"""The hooks a ftk plugin can implement.

Every hook is called with keyword arguments, so an implementation may accept
fewer arguments than its spec. Registration is callback-style: ftk passes a
`register` function and the plugin calls it once per object it contributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from ftk.backbone import Backbone
    from ftk.converter import Converter
    from ftk.task import Task

hookspec = pluggy.HookspecMarker("ftk")
hookimpl = pluggy.HookimplMarker("ftk")


@hookspec
def ftk_register_tasks(register: Callable[[type[Task]], None]) -> None:
    """Register fine-tuning tasks.

    Called once when the plugin registry is built, before any command runs.
    Must not build models or import TensorFlow: builders import what they
    need when the engine calls them. Each class is checked when registered
    (`ftk.testing.check_task` lists the same problems); an invalid one stops
    the command with an error naming the plugin and the field.

    Args:
        register: call it with each `ftk.Task` subclass the plugin provides.

    Example:
        ```python
        from ftk.classification import ClassificationTask

        class Sentiment(ClassificationTask):
            name = "sentiment"
            default_backbone = "minilm-l6"
            ...

        @ftk.hookimpl
        def ftk_register_tasks(register):
            register(Sentiment)
        ```
    """


@hookspec
def ftk_register_backbones(register: Callable[[Backbone], None]) -> None:
    """Register named backbone presets.

    Called once when the plugin registry is built, before `ftk_register_tasks`.
    A preset names a TF Hub handle, a local SavedModel, or a `pull` function
    that builds Hub-format SavedModels into ftk's cache (for weights shipped in
    a package). Each preset is checked when registered.

    Args:
        register: call it with one `ftk.Backbone` per preset.

    Example:
        ```python
        @ftk.hookimpl
        def ftk_register_backbones(register):
            register(ftk.Backbone(name="nnlm-en-50", kind="text_embedding",
                                  handle="https://tfhub.dev/google/nnlm-en-dim50/2"))
        ```
    """


@hookspec
def ftk_register_converters(register: Callable[[Converter], None]) -> None:
    """Register checkpoint converters for `ftk backbones convert`.

    Called once when the plugin registry is built. `ftk backbones convert
    CHECKPOINT OUTPUT` asks each converter whether it `claims` the checkpoint
    and runs the one that does; a converter's `options` become options of that
    command. A backbone-family plugin registers its converter here and its
    presets in `ftk_register_backbones`.

    Args:
        register: call it with one `ftk.Converter` per checkpoint format.

    Example:
        ```python
        @ftk.hookimpl
        def ftk_register_converters(register):
            register(ftk.Converter(name="my-family", description="a my-family folder",
                                   claims=lambda path: (path / "my.json").is_file(),
                                   convert=convert_my_family))
        ```
    """


@hookspec
def ftk_register_commands(cli: click.Group) -> None:
    """Add verbs to the `ftk` command line.

    Called when the CLI starts, after the built-in commands exist. Commands
    should call the public `ftk` Python API rather than hold logic of their own.

    Args:
        cli: the top-level click group; decorate functions with `@cli.command()`.

    Example:
        ```python
        @ftk.hookimpl
        def ftk_register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello from my plugin")
        ```
    """
