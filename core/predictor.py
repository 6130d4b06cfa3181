"""`ftk.load(...)`: a trained model, from a run directory or an export folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ftk.errors import FtkError
from ftk.images import read_image_bytes
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
        """One JSON-ready prediction per input (labels and scores).

        Inputs are texts for text tasks; for image tasks, image file paths,
        encoded image bytes, or arrays `[H, W, 3]` (uint8 0-255, or floats in
        [0, 1]).
        """
        results: list[dict[str, Any]] = []
        for signature, batch in self._batches(inputs, batch_size):
            outputs = {k: v.numpy() for k, v in getattr(self._module, signature)(batch).items()}
            for row in range(len(batch)):
                values = {key: value[row] for key, value in outputs.items()}
                results.append(self.task.format_prediction(values, self.label_space))
        return results

    def raw_outputs(self, inputs: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """The model's outputs (logits) for `inputs`, as `ftk evaluate` scores them."""
        chunks = [getattr(self._module, signature.replace("serve", "raw_outputs"))(batch)["outputs"].numpy()
                  for signature, batch in self._batches(inputs, batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.label_space.num_classes))

    def prediction_arrays(self, inputs: Sequence[Any], batch_size: int = 64) -> dict[str, np.ndarray]:
        """`serving_default`'s outputs for `inputs`, concatenated over batches."""
        chunks: dict[str, list[np.ndarray]] = {}
        for signature, batch in self._batches(inputs, batch_size):
            for key, value in getattr(self._module, signature)(batch).items():
                chunks.setdefault(key, []).append(value.numpy())
        return {key: np.concatenate(values) for key, values in chunks.items()}

    def _batches(self, inputs: Sequence[Any], size: int) -> Iterator[tuple[str, Any]]:
        """`(signature, batch)` pairs in input order; files are read batch by batch."""
        import tensorflow as tf

        if isinstance(inputs, (str, bytes, Path)):
            inputs = [inputs]
        items = list(inputs)
        images = self.metadata.get("inputs") == "image"
        start = 0
        while start < len(items):
            if images and isinstance(items[start], np.ndarray):
                yield "serve_pixels", tf.constant(pixels(items[start])[None])
                start += 1
                continue
            end = start
            while end < len(items) and end - start < size and not (
                    images and isinstance(items[end], np.ndarray)):
                end += 1
            chunk = items[start:end]
            if images:
                chunk = [item if isinstance(item, bytes) else read_image_bytes(item) for item in chunk]
            yield "serve", tf.constant(chunk)
            start = end


def pixels(array: np.ndarray) -> np.ndarray:
    """An image array as float32 `[H, W, 3]` in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise FtkError(f"An image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]. "
                       f"Received shape {array.shape}.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.integer):
        return (array / 255.0).astype(np.float32)
    return array.astype(np.float32)
