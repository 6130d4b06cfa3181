"""Config: engine defaults, task defaults, YAML files, `--set`, then flags.

A config is a plain nested dict. Every key a user may set exists in the
defaults, so the defaults are also the schema: the type of a default is the
type a user must give (types of keys defaulting to None are declared).
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ftk.distribute import KINDS as DISTRIBUTE_KINDS
from ftk.errors import ConfigError

ENGINE_DEFAULTS: dict[str, Any] = {
    "task": "",
    "data": {
        "train": None,
        "validation": None,
        "test": None,
        "validation_split": 0.1,
        "format": "auto",
    },
    "backbone": {
        "handle": None,
        "preprocessor": None,
        "trainable": False,
        "trainable_blocks": None,
        "trainable_patterns": [],
        "freeze_batchnorm": True,
    },
    "head": {},
    "loss": {},
    "train": {
        "epochs": 5,
        "batch_size": 32,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "schedule": "cosine",
        "warmup_ratio": 0.1,
        "backbone_lr_multiplier": 0.05,
        "head_epochs": 0,
        "early_stopping_patience": None,
        "monitor": "val_loss",
        "seed": 42,
        "cache_features": "auto",
        "cache_memory_mb": 2048,
        "jit_compile": False,
        "mixed_precision": None,
        "distribute": "auto",
        "connect_timeout": 300.0,
    },
    "output_dir": None,
}

ENGINE_TYPES: dict[str, Any] = {
    "data.train": str,
    "data.validation": str,
    "data.test": str,
    "backbone.handle": str,
    "backbone.preprocessor": str,
    "backbone.trainable_blocks": int,
    "train.early_stopping_patience": int,
    "train.cache_features": (str, bool),
    "train.cache_memory_mb": float,
    "train.mixed_precision": str,
    "train.connect_timeout": float,
    "output_dir": str,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer": ("adamw", "adam", "sgd"),
    "train.schedule": ("cosine", "constant"),
    "train.cache_features": ("auto", True, False),
    "train.mixed_precision": ("mixed_float16", "mixed_bfloat16"),
    "train.distribute": DISTRIBUTE_KINDS,
}


def default_config(task_defaults: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The engine defaults with a task's own keys and defaults merged over them."""
    config = copy.deepcopy(ENGINE_DEFAULTS)
    _merge(config, task_defaults, schema=None, source="task defaults")
    return config


def resolve(
    task_defaults: Mapping[str, Any],
    task_types: Mapping[str, Any],
    layers: Iterable[tuple[str, Mapping[str, Any]]],
    task_choices: Mapping[str, tuple[str, ...]] = {},
) -> dict[str, Any]:
    """Merge user layers over the defaults, validating each against them.

    Args:
        task_defaults: the task's `config`.
        task_types: the task's `config_types`.
        task_choices: the task's `config_choices`.
        layers: `(source, mapping)` pairs in merge order; `source` names the
            file or flag in error messages.

    Returns:
        The resolved config.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    config = default_config(task_defaults)
    schema = _Schema(copy.deepcopy(config), {**ENGINE_TYPES, **task_types},
                     {**CHOICES, **task_choices})
    for source, layer in layers:
        _merge(config, layer, schema=schema, source=source)
    return config


def require(config: Mapping[str, Any], key: str, valid: Any, expected: str) -> None:
    """Refuse the value at dotted `key` unless `valid(value)`.

    Example:
        ```python
        require(config, "head.dropout", lambda v: 0 <= v < 1, "at least 0 and below 1")
        ```

    Raises:
        ConfigError: `KEY must be EXPECTED. Received: VALUE`.
    """
    value = get(config, key)
    if not valid(value):
        raise ConfigError(f"{key} must be {expected}. Received: {value!r}")


def check_values(config: Mapping[str, Any]) -> None:
    """Value checks of the engine's keys (types and choices are checked while
    merging); run before any data is read or a backbone pulled.

    Raises:
        ConfigError: naming the key, what it must be and what it is.
    """
    import math
    import re

    def regex(pattern: Any) -> bool:
        try:
            re.compile(pattern)
        except (re.error, TypeError):
            return False
        return True

    rules = [
        ("train.epochs", lambda v: v >= 1, "at least 1"),
        ("train.batch_size", lambda v: v >= 1, "at least 1"),
        ("train.learning_rate", lambda v: math.isfinite(v) and v > 0, "a finite number above 0"),
        ("train.weight_decay", lambda v: math.isfinite(v) and v >= 0, "0 or more"),
        ("train.warmup_ratio", lambda v: 0 <= v <= 1, "between 0 and 1"),
        ("train.backbone_lr_multiplier", lambda v: math.isfinite(v) and v > 0, "above 0"),
        ("train.head_epochs", lambda v: v >= 0, "0 or more"),
        ("train.early_stopping_patience", lambda v: v is None or v >= 1,
         "at least 1 (or null for no early stopping)"),
        ("train.cache_memory_mb", lambda v: v >= 0, "0 or more"),
        ("train.connect_timeout", lambda v: math.isfinite(v) and v > 0, "a number of seconds above 0"),
        ("data.validation_split", lambda v: 0 <= v < 1, "at least 0 and below 1"),
        ("backbone.trainable_blocks", lambda v: v is None or v >= 1, "at least 1 (or null)"),
        ("backbone.trainable_patterns", lambda v: all(isinstance(p, str) and regex(p) for p in v),
         "a list of valid regular expressions"),
    ]
    for key, valid, expected in rules:
        require(config, key, valid, expected)


# A config is a few kilobytes of settings. Aliases are refused past a handful:
# each may point at a tree of aliases, so a few hundred bytes of nested anchors
# describe billions of strings once expanded (the "billion laughs").
MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 50


class _ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that counts aliases and refuses more than `MAX_ALIASES`."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name); a config needs "
                                     "few or none. Write the values out")
        return super().compose_node(parent, index)


def _safe_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file, with errors naming the file and line."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"Config file {path} is {path.stat().st_size} bytes; a config "
                              f"holds at most {MAX_CONFIG_BYTES} bytes of settings.")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"Config file {path} is not UTF-8 text: {error}") from None
    try:
        data = _safe_yaml(text)
    except yaml.YAMLError as error:
        # Scanner and parser errors carry where and what; others (ours) a message.
        marked = isinstance(error, yaml.MarkedYAMLError)
        mark = error.problem_mark if marked else None
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = (error.problem if marked else None) or str(error)
        raise ConfigError(f"Malformed YAML in {path}{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of sections "
            f"(task, data, backbone, ...). Received: {type(data).__name__}"
        )
    return data


def parse_set(assignment: str) -> dict[str, Any]:
    """Turn `a.b=value` (value parsed as YAML) into `{"a": {"b": value}}`."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set takes KEY=VALUE, e.g. --set train.epochs=3. Received: {assignment!r}"
        )
    try:
        value = _safe_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return nested(key.strip(), value)


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """`nested("a.b", 1) == {"a": {"b": 1}}`."""
    result: dict[str, Any] = {}
    node = result
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result


def get(config: Mapping[str, Any], dotted: str) -> Any:
    """`get(config, "train.epochs")`."""
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def dump(config: Mapping[str, Any]) -> str:
    """The config as YAML, sections in their natural order."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


class _Schema:
    def __init__(self, defaults: dict[str, Any], types: Mapping[str, Any],
                 choices: Mapping[str, tuple[str, ...]]):
        self.defaults = defaults
        self.types = types
        self.choices = choices
        self.paths = sorted(_dotted_paths(defaults))

    def coerce(self, dotted: str, value: Any) -> Any:
        """YAML 1.1 reads `3e-4` (no dot) as a string; accept it where a number goes."""
        if isinstance(value, str) and dotted in self.paths:
            expected = self.types.get(dotted, type(get(self.defaults, dotted)))
            if float in (expected if isinstance(expected, tuple) else (expected,)):
                try:
                    return float(value)
                except ValueError:
                    pass
        return value

    def check(self, dotted: str, value: Any, source: str) -> None:
        if dotted not in self.paths and not self._is_section(dotted):
            nearest = difflib.get_close_matches(dotted, self.paths, n=1, cutoff=0.5)
            hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
            raise ConfigError(
                f"Unknown config key {dotted!r} in {source}.{hint} "
                "Run `ftk config TASK` to see every key."
            )
        default = get(self.defaults, dotted)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"Config key {dotted!r} in {source} is a section and takes a "
                    f"mapping. Received: {value!r}"
                )
            return
        expected = self.types.get(dotted, type(default))
        if value is None and default is not None:
            raise ConfigError(
                f"Config key {dotted!r} in {source} must be {_type_name(expected)}. "
                "Received: null"
            )
        if value is not None and not _is_instance(value, expected):
            raise ConfigError(
                f"Config key {dotted!r} in {source} must be {_type_name(expected)}. "
                f"Received: {value!r} ({type(value).__name__})"
            )
        choices = self.choices.get(dotted)
        if choices and value is not None and value not in choices:
            raise ConfigError(
                f"Config key {dotted!r} in {source} must be one of "
                f"{', '.join(map(_show, choices))}. Received: {value!r}"
            )

    def _is_section(self, dotted: str) -> bool:
        try:
            return isinstance(get(self.defaults, dotted), dict)
        except (KeyError, TypeError):
            return False


def _merge(target: dict, layer: Mapping, schema: _Schema | None, source: str, prefix: str = "") -> None:
    if not isinstance(layer, Mapping):
        raise ConfigError(f"Config in {source} must be a mapping. Received: {layer!r}")
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if schema is not None:
            value = schema.coerce(dotted, value)
            schema.check(dotted, value, source)
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, schema, source, prefix=f"{dotted}.")
        else:
            target[key] = copy.deepcopy(value)


def _dotted_paths(tree: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        yield dotted
        if isinstance(value, dict):
            yield from _dotted_paths(value, f"{dotted}.")


def _is_instance(value: Any, expected: Any) -> bool:
    options = expected if isinstance(expected, tuple) else (expected,)
    for option in options:
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is int and isinstance(value, bool):
            continue
        if isinstance(value, option):
            return True
    return False


def _show(choice: Any) -> str:
    """A choice as it is written in YAML (`true`, not `True`)."""
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


def _type_name(expected: Any) -> str:
    options = expected if isinstance(expected, tuple) else (expected,)
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(option, option.__name__) for option in options)


def merged(*trees: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge config trees, later ones winning (for building task defaults)."""
    result: dict[str, Any] = {}
    for tree in trees:
        _merge(result, tree, schema=None, source="defaults")
    return result
