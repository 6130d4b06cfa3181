"""`ftk.load(...)`: a trained model, from a run directory or an export folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ftk.errors import FtkError
from ftk.serving import read_metadata
from ftk.labels import LabelSpace


def find_export(path: str | Path) -> Path:
    """The export folder of a run directory, or the export folder itself."""
    path = Path(path)
    for candidate in (path / "export", path):
        if (candidate / "saved_model.pb").exists() and (candidate / "ftk.json").exists():
            return candidate
    raise FtkError(
        f"{path} is neither a finished ftk run directory nor an export folder "
        "(no export/saved_model.pb with ftk.json). Pass the folder `ftk run` printed."
    )


class Predictor:
    """Predictions from an exported ftk model.

    Example:
        ```python
        model = ftk.load("runs/demo")
        model.predict(["what a great film"])
        # [{"label": "positive", "score": 0.97, "scores": {...}}]
        ```
    """

    def __init__(self, path: str | Path, task: Any):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops exports may use)

        self.path = find_export(path)
        self.metadata = read_metadata(self.path)
        self.task = task
        self.label_space = LabelSpace.from_json(self.metadata["labels"])
        self.config = self.metadata["config"]
        self._module = tf.saved_model.load(str(self.path))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_space.classes

    def predict(self, inputs: Sequence[Any], batch_size: int = 64) -> list[dict[str, Any]]:
        """One JSON-ready prediction per input (labels and scores)."""
        results: list[dict[str, Any]] = []
        for batch in _batches(self._encode(inputs), batch_size):
            outputs = {k: v.numpy() for k, v in self._module.serve(batch).items()}
            for row in range(len(batch)):
                values = {key: value[row] for key, value in outputs.items()}
                results.append(self.task.format_prediction(values, self.label_space))
        return results

    def raw_outputs(self, inputs: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """The model's outputs (logits) for `inputs`, as `ftk evaluate` scores them."""
        chunks = [self._module.raw_outputs(batch)["outputs"].numpy()
                  for batch in _batches(self._encode(inputs), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.label_space.num_classes))

    def _encode(self, inputs: Sequence[Any]) -> list[Any]:
        if isinstance(inputs, (str, bytes)):
            inputs = [inputs]
        return list(inputs)


def _batches(items: list[Any], size: int) -> Any:
    import tensorflow as tf

    for start in range(0, len(items), size):
        yield tf.constant(items[start:start + size])
