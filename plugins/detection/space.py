"""The target space of detection: the classes of the boxes.

Each image's raw target is a record of boxes (`{"boxes", "classes",
"ignore"}`). Encoded, it is one float32 array per image, `[M, 6]`: box
corners in pixels, class id (-1 for padding rows) and an ignore flag (crowd or
difficult boxes).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

import ftk
from ftk.classification import ClassSpace


class BoxSpace(ClassSpace):
    """Classes of boxes: those the data declares (COCO categories, in id
    order), else the sorted names seen in the training boxes."""

    kind: ClassVar[str] = "boxes"

    @classmethod
    def from_examples(cls, examples: ftk.Examples) -> "BoxSpace":
        classes = examples.declared or sorted({name for target in examples.targets
                                               for name in target["classes"]})
        if not classes:
            raise ftk.DataError(f"{examples.source} declares no classes and has no boxes. "
                                "Add annotated objects.")
        return cls(tuple(classes))

    def encode(self, targets: Sequence[Any], source: str) -> np.ndarray:
        """Pack each image's boxes into `[M, 6]` rows, padded to the most boxes
        of any image (at least one row, so an all-negative set still has a shape)."""
        index = {name: i for i, name in enumerate(self.classes)}
        rows = max([len(target["boxes"]) for target in targets] + [1])
        packed = np.zeros((len(targets), rows, 6), np.float32)
        packed[:, :, 4] = -1
        for image, target in enumerate(targets):
            for row, (box, name, ignore) in enumerate(zip(target["boxes"], target["classes"],
                                                          target["ignore"])):
                if name not in index:
                    raise ftk.DataError(
                        f"{source}: class {name!r} is not a class of the training data "
                        f"({', '.join(self.classes)}). Fix the annotation or add it to "
                        "the training data's categories.")
                packed[image, row] = [*box, index[name], float(ignore)]
        return packed
