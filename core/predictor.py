"""`ftk.load(...)`: a trained model, from a run directory or an export folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ftk.errors import FtkError, first_line
from ftk.serving import read_metadata
from ftk.task import input_list


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

    Attributes:
        task: the task object, holding the run's config and target space.
        metadata: the export's `ftk.json`.

    Example:
        ```python
        model = ftk.load("runs/demo")
        model.predict(["what a great film"])
        # [{"label": "positive", "score": 0.97, "scores": {...}}]
        ```
    """

    def __init__(self, path: str | Path, task_type: Any):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops exports may use)

        self.path = find_export(path)
        self.metadata = read_metadata(self.path)
        space = task_type.space_type.from_json(self.metadata["targets"])
        self.task = task_type(self.metadata["config"], space)
        self._module = tf.saved_model.load(str(self.path))

    @property
    def config(self) -> dict[str, Any]:
        return self.task.config

    @property
    def space(self) -> Any:
        return self.task.space

    def predict(self, inputs: Sequence[Any], batch_size: int = 64, *,
                keep_going: bool = False) -> list[dict[str, Any]]:
        """One JSON-ready prediction per input, as the task formats it (labels
        and scores for classification, boxes for detection).

        Inputs are what the task takes: texts for text tasks; for image tasks,
        image file paths, encoded image bytes, or arrays `[H, W, 3]` (uint8
        0-255, or floats in [0, 1]).

        A bad input (a corrupt or missing file, say) raises an error naming
        it. With `keep_going`, its place in the result holds
        `{"input": INDEX, "error": REASON}` instead, and every other input is
        still predicted.
        """
        if not keep_going:
            return self._predict(inputs, batch_size)
        import tensorflow as tf

        failures = (FtkError, tf.errors.OpError)
        items = input_list(inputs)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            try:
                results += self._predict(chunk, batch_size)
                continue
            except failures:
                pass
            for index, item in enumerate(chunk, start):  # find the bad ones, one by one
                try:
                    results += self._predict([item], 1)
                except failures as error:
                    results.append({"input": index, "error": _reason(error)})
        return results

    def _predict(self, inputs: Sequence[Any], batch_size: int) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for outputs in self._run("serve", inputs, batch_size):
            rows = len(next(iter(outputs.values())))
            for row in range(rows):
                values = {key: value[row] for key, value in outputs.items()}
                results.append(self.task.format_prediction(values))
        return results

    def raw_outputs(self, inputs: Sequence[Any], batch_size: int = 64, *,
                    progress: str | None = None) -> np.ndarray:
        """The model's outputs (logits) for `inputs`, as `ftk evaluate` scores
        them; with `progress`, a progress display of that name."""
        chunks = [outputs["outputs"]
                  for outputs in self._run("raw_outputs", inputs, batch_size, progress)]
        return np.concatenate(chunks) if chunks else np.zeros((0,))

    def prediction_arrays(self, inputs: Sequence[Any], batch_size: int = 64, *,
                          progress: str | None = None) -> dict[str, np.ndarray]:
        """`serving_default`'s outputs for `inputs`, concatenated over batches."""
        chunks: dict[str, list[np.ndarray]] = {}
        for outputs in self._run("serve", inputs, batch_size, progress):
            for key, value in outputs.items():
                chunks.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in chunks.items()}

    def signatures(self) -> dict[str, dict[str, dict[str, TensorInfo]]]:
        """Each signature of the model: `{name: {"inputs": {...}, "outputs":
        {...}}}`, every tensor as a `TensorInfo` (batch dimension `None`)."""
        found = {}
        for name, function in self._module.signatures.items():
            found[name] = {
                "inputs": {key: TensorInfo(spec.dtype.as_numpy_dtype, tuple(spec.shape))
                           for key, spec in function.structured_input_signature[1].items()},
                "outputs": {key: TensorInfo(spec.dtype.as_numpy_dtype, tuple(spec.shape))
                            for key, spec in function.structured_outputs.items()},
            }
        return found

    def call_signature(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run signature `name` on arrays keyed by its input names."""
        import tensorflow as tf

        outputs = self._module.signatures[name](**{key: tf.constant(value)
                                                   for key, value in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}

    def _run(self, function: str, inputs: Sequence[Any], batch_size: int,
             progress: str | None = None) -> Any:
        """The outputs of `function` (`serve` or `raw_outputs`) batch by batch,
        in the input forms the task chooses, as numpy arrays."""
        import tensorflow as tf

        from ftk import progress as display

        batches = self.task.prediction_batches(inputs, batch_size)
        if progress is not None:
            batches = display.track(batches, -(-len(inputs) // batch_size), progress)
        # Exports of earlier versions named `predict` functions `serve`.
        attribute = "predict" if function == "serve" and hasattr(self._module, "predict") else function
        for form, batch in batches:
            call = getattr(self._module, f"{attribute}_{form}" if form else attribute)
            yield {key: value.numpy() for key, value in call(tf.constant(batch)).items()}


@dataclass(frozen=True)
class TensorInfo:
    """A signature's input or output: numpy dtype and shape (`None` for a
    dimension of any size)."""

    dtype: Any
    shape: tuple[int | None, ...]


def _reason(error: Exception) -> str:
    """An input's error for the JSON output: ftk's message, or the first line of TF's."""
    if isinstance(error, FtkError):
        return str(error)
    return f"{type(error).__name__}: {first_line(error)}"


class LitePredictor(Predictor):
    """Predictions from a TFLite file `ftk export --format tflite` wrote,
    through LiteRT's interpreter; `predict`, `raw_outputs` and
    `prediction_arrays` behave as the SavedModel's.

    The file's inputs are made as its sidecar says (`Task.tflite_batches`),
    int8 inputs and outputs are (de)quantised here, and the task finishes
    what the file leaves (`Task.tflite_outputs`).
    """

    def __init__(self, path: str | Path, task_type: Any, *,
                 content: tuple[bytes, dict[str, Any]] | None = None):
        """`content`: the file's bytes and sidecar, when they are not (yet)
        at `path` (an export weighing a candidate file)."""
        import threading

        from ftk import tflite

        self.path = Path(path)
        flatbuffer, self.metadata = content or tflite.read_sidecar(self.path)
        space = task_type.space_type.from_json(self.metadata["targets"])
        self.task = task_type(self.metadata["config"], space)
        self._interpreter = tflite.interpreter(flatbuffer)
        self._runners = {key: self._interpreter.get_signature_runner(key)
                         for key in tflite.SIGNATURES}
        self._lock = threading.Lock()  # an interpreter runs one call at a time

    def signatures(self) -> dict[str, dict[str, dict[str, TensorInfo]]]:
        def infos(details: dict) -> dict[str, TensorInfo]:
            return {key: TensorInfo(np.dtype(detail["dtype"]).type,
                                    tuple(None if size < 0 else int(size)
                                          for size in detail["shape_signature"]))
                    for key, detail in details.items()}

        return {name: {"inputs": infos(runner.get_input_details()),
                       "outputs": infos(runner.get_output_details())}
                for name, runner in self._runners.items()}

    def call_signature(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runners[name]
        details, outputs_of = runner.get_input_details(), runner.get_output_details()
        with self._lock:
            raw = runner(**{key: _quantised(np.asarray(value), details[key])
                            for key, value in inputs.items()})
        return {key: _dequantised(value, outputs_of[key]) for key, value in raw.items()}

    def _run(self, function: str, inputs: Sequence[Any], batch_size: int,
             progress: str | None = None) -> Any:
        from ftk import progress as display

        runner = self._runners["serving_default" if function == "serve" else function]
        (name, detail), = runner.get_input_details().items()
        outputs_of = runner.get_output_details()
        batches = self.task.tflite_batches(inputs, batch_size, self.metadata["input"])
        if progress is not None:
            batches = display.track(batches, -(-len(inputs) // batch_size), progress)
        for batch, context in batches:
            with self._lock:
                raw = runner(**{name: _quantised(np.asarray(batch), detail)})
            outputs = {key: _dequantised(value, outputs_of[key]) for key, value in raw.items()}
            yield self.task.tflite_outputs(outputs, context) if function == "serve" else outputs


def _quantised(batch: np.ndarray, detail: dict) -> np.ndarray:
    """`batch` in the dtype the file's input takes (int8 inputs are scaled)."""
    dtype = np.dtype(detail["dtype"])
    if batch.dtype.kind in "OSU":  # texts
        return batch.astype(object)
    if dtype == batch.dtype:
        return batch
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        limits = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero_point), limits.min, limits.max).astype(dtype)
    return batch.astype(dtype)


def _dequantised(values: np.ndarray, detail: dict) -> np.ndarray:
    """Quantised float outputs back to floats; other outputs as they are."""
    scale, zero_point = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return (values.astype(np.float32) - zero_point) * scale
    return values
