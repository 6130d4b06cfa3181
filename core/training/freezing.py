"""Which backbone variables train.

`hub.KerasLayer` is all-or-nothing: once trainable, every variable of the
SavedModel is trainable. Partial freezing therefore selects a subset of its
variables, and the training step only updates that subset.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ftk.errors import ConfigError

BLOCK_PATTERN = re.compile(r"(?:layer|block|stage)[_/.-]?(\d+)", re.IGNORECASE)
# BatchNorm scale and offset as Keras, TF-Slim and ftk's converters name them.
BATCHNORM_PATTERN = re.compile(r"(?:batch_?norm|(?:^|[/_.])bn\d*)[^/]*/(?:gamma|beta)$",
                               re.IGNORECASE)


def select_trainable(variables: Sequence[Any], backbone_config: Mapping[str, Any]) -> list[Any]:
    """The backbone variables to train under the `backbone` config section.

    Args:
        variables: all variables of the backbone layer (made trainable).
        backbone_config: `trainable` (bool), `trainable_blocks` (last N numbered
            blocks, e.g. `layer_4`, `block5`), `trainable_patterns` (regular
            expressions searched in variable names) and `freeze_batchnorm`
            (keep BatchNorm scale and offset fixed).

    Returns:
        The variables to update; empty when the backbone is frozen.

    Raises:
        ConfigError: a policy that selects nothing, with example variable names.
    """
    if not backbone_config["trainable"]:
        return []
    if backbone_config.get("freeze_batchnorm", False):
        variables = [v for v in variables if not is_batchnorm(v)]
    blocks = backbone_config["trainable_blocks"]
    patterns = backbone_config["trainable_patterns"] or []
    if blocks is None and not patterns:
        return list(variables)
    chosen: dict[int, Any] = {}
    if blocks is not None:
        for variable in _last_blocks(variables, blocks):
            chosen[id(variable)] = variable
    for pattern in patterns:
        matched = [v for v in variables if _search(pattern, variable_name(v))]
        if not matched:
            raise ConfigError(
                f"backbone.trainable_patterns: {pattern!r} matches no backbone variable. "
                f"Examples of names: {', '.join(_examples(variables))}"
            )
        for variable in matched:
            chosen[id(variable)] = variable
    return [v for v in variables if id(v) in chosen]


def _last_blocks(variables: Sequence[Any], count: int) -> list[Any]:
    if count < 1:
        raise ConfigError(f"backbone.trainable_blocks must be at least 1. Received: {count}")
    numbered = [(int(match.group(1)), v) for v in variables
                if (match := BLOCK_PATTERN.search(variable_name(v)))]
    if not numbered:
        raise ConfigError(
            "backbone.trainable_blocks needs variable names carrying block numbers "
            "(layer_3, block5, ...); this backbone has none. Use "
            f"backbone.trainable_patterns instead. Examples of names: {', '.join(_examples(variables))}"
        )
    indices = sorted({index for index, _ in numbered})
    keep = set(indices[-count:])
    return [v for index, v in numbered if index in keep]


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error as error:
        raise ConfigError(f"backbone.trainable_patterns: {pattern!r} is not a valid regular "
                          f"expression ({error}).") from None


def _examples(variables: Sequence[Any], count: int = 4) -> list[str]:
    step = max(1, len(variables) // count)
    return [variable_name(v) for v in list(variables)[::step][:count]]


def is_batchnorm(variable: Any) -> bool:
    """Whether a variable is a BatchNorm scale (gamma) or offset (beta)."""
    return BATCHNORM_PATTERN.search(variable_name(variable)) is not None


def variable_name(variable: Any) -> str:
    """The name patterns are matched against: without TensorFlow's `:0` suffix."""
    return re.sub(r":\d+$", "", variable.name)
