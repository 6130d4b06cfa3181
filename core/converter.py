"""What a backbone-family plugin registers to turn checkpoints into Hub format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ftk.options import Option, option_problems


@dataclass(frozen=True)
class Converter:
    """A checkpoint converter for `ftk backbones convert`.

    Attributes:
        name: short name, e.g. `bert`.
        description: what it takes, for errors and `--help`.
        claims: `(path) -> bool`, whether the checkpoint is one it converts,
            judged by its content (a config's model type, a state dict's
            layout), not by the file name alone. It must be cheap and must
            not import TensorFlow.
        convert: `(checkpoint, output_dir, **options) -> Path`, writing
            Hub-format SavedModels (`encoder/`, optionally `preprocessor/`)
            into `output_dir`, atomically.
        options: the `ftk.Option`s `convert` takes (e.g. `seq_length`).
    """

    name: str
    description: str
    claims: Callable[[Path], bool]
    convert: Callable[..., Path]
    options: Sequence[Option] = ()


def converter_problems(converter: Any) -> list[str]:
    """Problems with a converter, one readable string each (empty when fine)."""
    if not isinstance(converter, Converter):
        return [f"a converter must be an ftk.Converter. Received: {converter!r}"]
    problems = []
    if not isinstance(converter.name, str) or not converter.name:
        problems.append("name must be a non-empty string")
    for field in ("claims", "convert"):
        if not callable(getattr(converter, field)):
            problems.append(f"{field} must be a function")
    return problems + option_problems(list(converter.options))
