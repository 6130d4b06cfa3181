"""What a backbone preset is: a name for a Hub-format SavedModel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Backbone:
    """A named backbone preset.

    Either `handle` points at a TF Hub / Kaggle URL or a local SavedModel, or
    `pull` builds the Hub-format SavedModels into ftk's cache the first time the
    preset is used (for weights shipped inside a package).

    Attributes:
        name: the preset name users pass to `--backbone`.
        kind: the tf.hub convention the SavedModel follows, an open string that
            tasks check: `text_embedding` (strings in, vectors out),
            `text_encoder` (BERT-style token ids in, dict out) and `image`
            ([B, H, W, 3] floats in [0, 1]) are the ones ftk's tasks take.
        handle: TF Hub handle, URL or local SavedModel path.
        preprocessor: handle of the matching text preprocessor SavedModel, if any.
        pull: `(folder) -> None`; writes `folder/encoder` (and optionally
            `folder/preprocessor`) as Hub-format SavedModels.
        metadata: hints for tasks, e.g. `image_size` or `max_seq_length`.
        description, license: shown by `ftk backbones list`.
    """

    name: str
    kind: str
    handle: str | None = None
    preprocessor: str | None = None
    pull: Callable[[Path], None] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    license: str = ""


def backbone_problems(backbone: Any) -> list[str]:
    """Problems with a preset, one readable string each (empty when fine)."""
    if not isinstance(backbone, Backbone):
        return [f"a preset must be an ftk.Backbone. Received: {backbone!r}"]
    problems = []
    if not isinstance(backbone.name, str) or not backbone.name:
        problems.append("name must be a non-empty string")
    if not isinstance(backbone.kind, str) or not backbone.kind:
        problems.append("kind must be a non-empty string such as text_encoder or image")
    if (backbone.handle is None) == (backbone.pull is None):
        problems.append("exactly one of handle and pull must be set")
    if backbone.pull is not None and not callable(backbone.pull):
        problems.append("pull must be a function of the folder to write")
    if not isinstance(backbone.metadata, Mapping):
        problems.append("metadata must be a mapping")
    return problems
