"""Command-line options that plugins add to ftk's commands.

A backbone converter declares the options of `ftk backbones convert` it
takes (the BERT converter's `--seq-length`); a task declares options of
`ftk predict` (detection's `--draw`). The CLI collects them from the
registry; the Python API takes them as keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Option:
    """One option a plugin adds to a command.

    Attributes:
        name: the Python name (`seq_length`); the flag is `--seq-length`.
        type: `str`, `int`, `float` or `bool` (a flag).
        help: one line for `--help`.
    """

    name: str
    type: type = str
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def option_problems(options: Any) -> list[str]:
    """Problems with a plugin's declared options (empty when fine)."""
    problems = []
    for option in options if isinstance(options, (list, tuple)) else [options]:
        if not isinstance(option, Option):
            problems.append(f"options must be ftk.Option objects. Received: {option!r}")
        elif not option.name.isidentifier() or option.type not in (str, int, float, bool):
            problems.append(f"option {option.name!r} needs an identifier name and a type of "
                            "str, int, float or bool")
    return problems


def check_given(given: dict[str, Any], allowed: Iterable[Option], owner: str) -> dict[str, Any]:
    """The options given a value, refusing those `owner` does not take.

    Raises:
        FtkError: naming the option and the options `owner` takes.
    """
    from ftk.errors import FtkError

    names = {option.name for option in allowed}
    # `0` is a value; only an option left out (None) or an unset flag (False) is not.
    chosen = {key: value for key, value in given.items()
              if value is not None and value is not False}
    for key in chosen:
        if key not in names:
            flags = ", ".join(sorted(f"--{n.replace('_', '-')}" for n in names)) or "none"
            raise FtkError(f"--{key.replace('_', '-')} does not apply to {owner} "
                           f"(its options: {flags}).")
    return chosen
