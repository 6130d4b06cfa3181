"""Export: a SavedModel whose signatures take raw inputs (strings or encoded
image bytes) and run preprocessing, the model and postprocessing inside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import tensorflow as tf

from ftk.labels import LabelSpace
from ftk.rundir import replace_dir_atomic, staging_dir

METADATA_FILE = "ftk.json"


class ServingModule(tf.Module):
    """Raw inputs in; `serving_default` gives predictions, `raw_outputs` the
    model's outputs (logits), which `ftk evaluate` scores.

    Raw inputs are strings: texts, or encoded images. A preprocessor with
    `from_pixels` (image tasks) adds `serving_pixels` and `raw_outputs_pixels`
    over float32 `[B, H, W, 3]` images in [0, 1].
    """

    def __init__(self, model: Any, preprocessor: Any, postprocess: Callable[[Any, Any], dict]):
        super().__init__(name="ftk_serving")
        # Track the backbone's own SavedModel object and the head's variables,
        # not the Keras model: saving a Keras object re-traces every layer's
        # call for Keras's own format, which the export never uses.
        self.backbone = model.backbone.resolved_object
        self.head_variables = list(model.head.variables)
        self.preprocessor = preprocessor
        self._model_call = lambda features: model(features, training=False)
        self._postprocess = postprocess
        spec = [tf.TensorSpec([None], tf.string, name="inputs")]
        self.serve = tf.function(lambda inputs: self._serve(preprocessor(inputs)),
                                 input_signature=spec)
        self.raw_outputs = tf.function(lambda inputs: self._raw_outputs(preprocessor(inputs)),
                                       input_signature=spec)
        if hasattr(preprocessor, "from_pixels"):
            pixels = [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
            self.serve_pixels = tf.function(
                lambda images: self._serve(preprocessor.from_pixels(images)), input_signature=pixels)
            self.raw_outputs_pixels = tf.function(
                lambda images: self._raw_outputs(preprocessor.from_pixels(images)),
                input_signature=pixels)

    def signature_map(self) -> dict[str, Any]:
        """The exported signatures by name."""
        names = {"serving_default": "serve", "raw_outputs": "raw_outputs",
                 "serving_pixels": "serve_pixels", "raw_outputs_pixels": "raw_outputs_pixels"}
        return {name: getattr(self, attr) for name, attr in names.items() if hasattr(self, attr)}

    def _serve(self, features: Any) -> dict[str, tf.Tensor]:
        return self._postprocess(self._model_call(features), features)

    def _raw_outputs(self, features: Any) -> dict[str, tf.Tensor]:
        return {"outputs": self._model_call(features)}


def export_saved_model(model: Any, preprocessor: Any, postprocess: Callable[[Any, Any], dict],
                       target: Path, metadata: Mapping[str, Any], label_space: LabelSpace) -> Path:
    """Write the serving SavedModel plus `ftk.json` and `labels.txt`, atomically."""
    module = ServingModule(model, preprocessor, postprocess)
    staging = staging_dir(target)
    tf.saved_model.save(module, str(staging), signatures=module.signature_map())
    (staging / METADATA_FILE).write_text(json.dumps(dict(metadata), indent=2), encoding="utf-8")
    (staging / "labels.txt").write_text("\n".join(label_space.classes) + "\n", encoding="utf-8")
    replace_dir_atomic(staging, target)
    return Path(target)


def read_metadata(export_dir: Path) -> dict[str, Any]:
    return json.loads((Path(export_dir) / METADATA_FILE).read_text(encoding="utf-8"))
