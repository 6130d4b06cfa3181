"""Class names and their encoding, shared by every classification-style task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ftk.errors import DataError


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a run, in the order of the model's outputs.

    Attributes:
        classes: class names, sorted, as written to `labels.txt`.
        multi_label: whether an example may carry several classes.
    """

    classes: tuple[str, ...]
    multi_label: bool = False

    @classmethod
    def from_labels(cls, labels: Sequence[Any], *, source: str = "") -> "LabelSpace":
        """Collect the classes seen in training labels."""
        multi_label = bool(labels) and isinstance(labels[0], (list, tuple))
        names = {name for label in labels for name in (label if multi_label else [label])}
        if len(names) < 2:
            raise DataError(
                f"{source or 'The training data'} has {len(names)} class "
                f"({', '.join(sorted(names)) or 'none'}); classification needs at least two. "
                "Add examples of other classes."
            )
        return cls(tuple(sorted(names)), multi_label)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode(self, labels: Sequence[Any], *, source: str = "") -> np.ndarray:
        """Class indices (int32), or multi-hot rows (float32) for multi-label."""
        index = {name: i for i, name in enumerate(self.classes)}

        def lookup(name: str) -> int:
            if name not in index:
                raise DataError(
                    f"{source}: label {name!r} does not occur in the training data "
                    f"(classes: {', '.join(self.classes)}). Fix the label or add "
                    "training examples of it."
                )
            return index[name]

        if not self.multi_label:
            return np.asarray([lookup(label) for label in labels], dtype=np.int32)
        encoded = np.zeros((len(labels), self.num_classes), dtype=np.float32)
        for row, names in enumerate(labels):
            for name in names:
                encoded[row, lookup(name)] = 1.0
        return encoded

    def to_json(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "multi_label": self.multi_label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LabelSpace":
        return cls(tuple(data["classes"]), bool(data.get("multi_label", False)))
