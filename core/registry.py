"""Finding plugins and collecting what they register.

Built-in task plugins are loaded by the same function as third-party ones: from
the `ftk` entry-point group, from `FTK_PLUGINS=mod1,mod2`, or from `--plugin`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pluggy

from ftk import hookspecs
from ftk.backbone import Backbone, backbone_problems
from ftk.converter import Converter, converter_problems
from ftk.errors import FtkError, PluginError
from ftk.task import Task, task_problems

ENTRY_POINT_GROUP = "ftk"
# Loaded even with FTK_DISABLE_PLUGIN_AUTOLOAD=1, which only turns off
# discovery of third-party packages; they are also declared as entry points.
BUILTIN_PLUGINS = {
    "text_classification": "ftk.plugins.text_classification",
    "image_classification": "ftk.plugins.image_classification",
    "detection": "ftk.plugins.detection",
    "bert": "ftk.plugins.bert",
    "efficientnet_lite": "ftk.plugins.efficientnet_lite",
}


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    hooks: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Tasks, backbones and plugins known to one plugin manager."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    tasks: dict[str, type[Task]] = field(default_factory=dict)
    backbones: dict[str, Backbone] = field(default_factory=dict)
    converters: dict[str, Converter] = field(default_factory=dict)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    def task(self, name: str) -> type[Task]:
        """The task class called `name`, or an error listing the known ones."""
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise FtkError(
                f"Unknown task {name!r}. Known tasks: {known}. If it comes from a "
                "plugin, make sure the plugin is installed or pass --plugin MODULE."
            )
        return self.tasks[name]

    def plugin_of(self, kind: str, name: str) -> str:
        return self.owner[(kind, name)]


def build_registry(extra_plugins: Sequence[str] = ()) -> Registry:
    """Build a fresh registry: built-ins, entry points, FTK_PLUGINS, extras.

    Args:
        extra_plugins: module names to load ad hoc (the `--plugin` option).

    Returns:
        A `Registry` holding every registered task and backbone.

    Raises:
        PluginError: a plugin failed to import or to register, or two plugins
            registered the same name.
    """
    manager = pluggy.PluginManager("ftk")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    version = _ftk_version()
    for name, module in BUILTIN_PLUGINS.items():
        _load(registry, name, module, lambda: importlib.import_module(module), version)
    if not _env_flag("FTK_DISABLE_PLUGIN_AUTOLOAD"):
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.value in BUILTIN_PLUGINS.values():
                continue
            dist_version = entry_point.dist.version if entry_point.dist else None
            _load(registry, entry_point.name, entry_point.value, entry_point.load, dist_version)
    env_plugins = [m.strip() for m in os.environ.get("FTK_PLUGINS", "").split(",")]
    for module in [m for m in env_plugins if m] + list(extra_plugins):
        if module not in {info.module for info in registry.plugins.values()}:
            _load(registry, module, module, lambda m=module: importlib.import_module(m), None)
    _check_hook_names(registry)
    _collect(registry, "ftk_register_backbones", "backbone", registry.backbones, backbone_problems)
    _collect(registry, "ftk_register_converters", "converter", registry.converters,
             converter_problems)
    _collect(registry, "ftk_register_tasks", "task", registry.tasks, task_problems)
    return registry


def _load(
    registry: Registry,
    name: str,
    module: str,
    importer: Callable[[], Any],
    version: str | None,
) -> None:
    try:
        plugin = importer()
    except Exception as error:
        raise PluginError(
            f"Plugin {name!r} ({module}) failed to import: "
            f"{type(error).__name__}: {error}. Fix or uninstall the plugin, or set "
            "FTK_DISABLE_PLUGIN_AUTOLOAD=1 to skip installed plugins."
        ) from error
    if name in registry.plugins:
        raise PluginError(
            f"Two plugins are named {name!r}: {registry.plugins[name].module} and "
            f"{module}. Uninstall one of them."
        )
    try:
        registry.manager.register(plugin, name=name)
    except Exception as error:  # pluggy validates hook names and signatures
        raise PluginError(f"Plugin {name!r} ({module}) is invalid: {error}") from error
    if version is None and isinstance(plugin, types.ModuleType):
        version = getattr(plugin, "__version__", None)
    hooks = [impl.name for impl in _hookimpls_of(registry.manager, plugin)]
    registry.plugins[name] = PluginInfo(name, module, version, sorted(hooks))


def _hookimpls_of(manager: pluggy.PluginManager, plugin: Any) -> Iterable[Any]:
    for caller in manager.get_hookcallers(plugin) or []:
        yield caller


def _check_hook_names(registry: Registry) -> None:
    """A hook implementation matching no spec (a misspelt hook) is an error,
    not a function ftk silently never calls."""
    try:
        registry.manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = registry.manager.get_name(error.plugin) or str(error.plugin)
        unknown = sorted(caller.name for caller in _pending(registry, error.plugin))
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("ftk_")))
        raise PluginError(
            f"Plugin {name!r} implements {', '.join(unknown) or 'a hook'}, which is not an ftk "
            f"hook. Known hooks: {known}. Check the spelling."
        ) from None


def _pending(registry: Registry, plugin: Any) -> list[Any]:
    """The plugin's hook implementations that no spec claims."""
    return [caller for caller in registry.manager.get_hookcallers(plugin) or []
            if not caller.has_spec()]


def _collect(registry: Registry, hook_name: str, kind: str, target: dict,
             problems_of: Callable[[Any], list[str]]) -> None:
    """Call one register-hook plugin by plugin, so every name has an owner,
    validating each object as it is registered."""
    for impl in getattr(registry.manager.hook, hook_name).get_hookimpls():
        plugin_name = impl.plugin_name

        def register(obj: Any, _plugin: str = plugin_name) -> None:
            problems = problems_of(obj)
            if problems:
                shown = repr(obj.name) if isinstance(obj, (Backbone, Converter)) or (
                    isinstance(obj, type) and issubclass(obj, Task)) else repr(obj)
                raise PluginError(
                    f"Plugin {_plugin!r} registered an invalid {kind} {shown}: "
                    f"{'; '.join(problems)}."
                )
            name = obj.name
            if name in target:
                other = registry.owner[(kind, name)]
                raise PluginError(
                    f"Duplicate {kind} {name!r}: registered by plugin {other!r} and "
                    f"by plugin {_plugin!r}. Uninstall one of them or rename the {kind}."
                )
            target[name] = obj
            registry.owner[(kind, name)] = _plugin

        arguments = {"register": register}
        try:
            impl.function(**{arg: arguments[arg] for arg in impl.argnames})
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(
                f"Plugin {plugin_name!r} raised in {hook_name}: "
                f"{type(error).__name__}: {error}"
            ) from error


def register_commands(registry: Registry, cli: Any) -> None:
    """Let every plugin add CLI verbs, naming the plugin if one fails."""
    for impl in registry.manager.hook.ftk_register_commands.get_hookimpls():
        arguments = {"cli": cli}
        try:
            impl.function(**{arg: arguments[arg] for arg in impl.argnames})
        except Exception as error:
            raise PluginError(
                f"Plugin {impl.plugin_name!r} raised in ftk_register_commands: "
                f"{type(error).__name__}: {error}"
            ) from error


def _ftk_version() -> str | None:
    try:
        return importlib.metadata.version("ftk")
    except importlib.metadata.PackageNotFoundError:
        return None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")
