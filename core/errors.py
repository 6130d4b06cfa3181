"""The one exception type ftk raises for problems a user can fix."""

from __future__ import annotations

import re


class FtkError(Exception):
    """A problem with the user's input, config, data or environment.

    The CLI prints the message alone (no traceback unless `--debug`) and exits
    non-zero, so the message must say what is wrong, where, and what to do.
    """


class ConfigError(FtkError):
    """An unknown key, a wrong type or malformed YAML in a config."""


class DataError(FtkError):
    """A data file that is missing, empty or malformed."""


class PluginError(FtkError):
    """A plugin that failed to import or to register, or a duplicate name."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, without the function and op
    names TensorFlow wraps around the reason ("{{function_node ...}}",
    "[Op:DecodeImage]"), for quoting in an ftk error."""
    line = (str(error).strip().splitlines() or [""])[0]
    line = re.sub(r"\{\{.*?\}\}|\[Op:\w+\](\s*name:\s*\S*)?", "", line).strip()
    return line or type(error).__name__
