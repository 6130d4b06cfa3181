"""What a backbone preset is: a name for a Hub-format SavedModel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

BACKBONE_KINDS = ("text_embedding", "text_encoder", "image")


@dataclass(frozen=True)
class Backbone:
    """A named backbone preset.

    Either `handle` points at a TF Hub / Kaggle URL or a local SavedModel, or
    `pull` builds the Hub-format SavedModels into ftk's cache the first time the
    preset is used (for weights shipped inside a package).

    Attributes:
        name: the preset name users pass to `--backbone`.
        kind: `text_embedding` (strings in, vectors out), `text_encoder`
            (BERT-style token ids in, dict out) or `image` ([B, H, W, 3] floats in
            [0, 1]).
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

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(
                f"Backbone kind must be one of {', '.join(BACKBONE_KINDS)}. "
                f"Received: kind={self.kind!r} for backbone {self.name!r}"
            )
        if (self.handle is None) == (self.pull is None):
            raise ValueError(
                f"Backbone {self.name!r} needs exactly one of `handle` or `pull`."
            )
