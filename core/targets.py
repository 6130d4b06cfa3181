"""Target spaces: what a task's targets are, learnt from its training data.

A task reads raw targets (a class name, a number, a list of boxes) and its
target space turns them into arrays for training and evaluation. The space is
built once from the training examples, so it also carries what the training
data teaches about targets: the classes, or the mean and spread of numbers. It
is recorded in the export (`ftk.json`) and rebuilt from there for prediction.

The engine asks a space only for what every task has: encoded arrays, the
files that describe the model's outputs, a JSON record and a short summary.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from ftk.errors import DataError


class TargetSpace:
    """Base class of target spaces.

    Subclasses set `kind` and override what differs; `ftk.classification`
    defines the space of classes.
    """

    kind: ClassVar[str] = ""

    @classmethod
    def from_examples(cls, examples: Any) -> "TargetSpace":
        """The space of the training `examples` (an `ftk.Examples`)."""
        raise NotImplementedError(f"{cls.__name__} does not define from_examples")

    def encode(self, targets: Sequence[Any], source: str) -> Any:
        """An array (or dict of arrays) with one row per raw target.

        Raises:
            ftk.DataError: naming `source` for a target outside the space.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define encode")

    def files(self) -> dict[str, str]:
        """Files describing the model's outputs, by name, written into the run
        directory and the export (`labels.txt` for classes); none by default."""
        return {}

    def summary(self) -> str:
        """A few words for the log, e.g. `4 classes`."""
        return ""

    def to_json(self) -> dict[str, Any]:
        """What `ftk.json` records; `from_json` must rebuild the space from it."""
        raise NotImplementedError(f"{type(self).__name__} does not define to_json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TargetSpace":
        raise NotImplementedError(f"{cls.__name__} does not define from_json")


class RealSpace(TargetSpace):
    """Real numbers, or fixed-length vectors of them (the default space).

    Built from the training targets, it keeps their mean and standard
    deviation per column, which a head may use to standardise its outputs.

    Attributes:
        mean, std: per-column statistics of the training targets.
    """

    kind: ClassVar[str] = "real"

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @property
    def width(self) -> int:
        """Numbers per target (1 for a scalar)."""
        return int(self.mean.size)

    @classmethod
    def from_examples(cls, examples: Any) -> "RealSpace":
        values = _real_rows(examples.targets, examples.source)
        spread = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(spread > 0, spread, 1.0))

    def encode(self, targets: Sequence[Any], source: str) -> np.ndarray:
        values = _real_rows(targets, source)
        if values.shape[1] != self.width:
            raise DataError(f"{source}: targets have {values.shape[1]} numbers each; the "
                            f"training targets have {self.width}.")
        return values.astype(np.float32)

    def summary(self) -> str:
        if self.width == 1:
            return f"targets mean {self.mean[0]:.4g}, std {self.std[0]:.4g}"
        return f"targets of {self.width} numbers"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RealSpace":
        return cls(data["mean"], data["std"])


def _real_rows(targets: Sequence[Any], source: str) -> np.ndarray:
    """Targets as a float64 `[N, width]` array, or an error naming `source`."""
    try:
        values = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: targets must be numbers, or lists of numbers of one "
                        "length.") from None
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or not np.isfinite(values).all():
        raise DataError(f"{source}: targets must be finite numbers, or lists of numbers of "
                        "one length.")
    return values
