"""Export: a SavedModel whose signatures take raw inputs (a 1-D string tensor:
texts or encoded files) and run preprocessing, the model and postprocessing
inside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import tensorflow as tf

METADATA_FILE = "ftk.json"


class ServingModule(tf.Module):
    """Raw inputs in; `serving_default` gives predictions, `raw_outputs` the
    model's outputs (logits), which `ftk evaluate` scores.

    Each of the preprocessor's `extra_inputs` (image tasks: `pixels`, float32
    `[B, H, W, 3]` in [0, 1]) adds `serving_NAME` and `raw_outputs_NAME`.
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
        self._signatures = {}
        forms = {"": (tf.TensorSpec([None], tf.string, name="inputs"), preprocessor)}
        forms.update(preprocessor.extra_inputs())
        for form, (spec, to_features) in forms.items():
            suffix = f"_{form}" if form else ""
            serve = tf.function(self._through(to_features, self._serve), input_signature=[spec])
            raw = tf.function(self._through(to_features, self._raw_outputs), input_signature=[spec])
            # Attributes, so that the loaded module has them as functions too.
            # Not `serve`: TFLite's converter takes a module with a `serve`
            # attribute for a Keras export and keeps one signature of it.
            setattr(self, f"predict{suffix}", serve)
            setattr(self, f"raw_outputs{suffix}", raw)
            self._signatures[f"serving_{form}" if form else "serving_default"] = serve
            self._signatures[f"raw_outputs{suffix}"] = raw

    def signature_map(self) -> dict[str, Any]:
        """The exported signatures by name."""
        return dict(self._signatures)

    @staticmethod
    def _through(to_features: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable:
        return lambda inputs: then(to_features(inputs))

    def _serve(self, features: Any) -> dict[str, tf.Tensor]:
        return self._postprocess(self._model_call(features), features)

    def _raw_outputs(self, features: Any) -> dict[str, tf.Tensor]:
        return {"outputs": self._model_call(features)}


def write_export(folder: Path, model: Any, preprocessor: Any,
                 postprocess: Callable[[Any, Any], dict], metadata: Mapping[str, Any],
                 files: Mapping[str, str]) -> None:
    """Write the serving SavedModel, `ftk.json` and the target space's files
    (`labels.txt`) into `folder` (a staging folder the caller moves into place)."""
    module = ServingModule(model, preprocessor, postprocess)
    tf.saved_model.save(module, str(folder), signatures=module.signature_map())
    form, facts = preprocessor.tflite_input()
    # `ftk export --format tflite` converts this form's signatures.
    spec = preprocessor.extra_inputs()[form][0] if form else tf.TensorSpec([None], tf.string,
                                                                            name="inputs")
    metadata = {**metadata, "tflite": {"form": form, "input_name": spec.name, "input": facts}}
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def read_metadata(export_dir: Path) -> dict[str, Any]:
    """The export's `ftk.json`, or an error naming it when it is damaged."""
    from ftk.errors import FtkError

    path = Path(export_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FtkError(f"{path} is damaged: not valid JSON ({error}). Restore it from a copy "
                       "of the export, or train the run again.") from None
    if not isinstance(metadata, dict) or not {"task", "targets", "config"} <= set(metadata):
        raise FtkError(f"{path} is not an ftk export description of this version (it needs "
                       "task, targets and config; exports of earlier versions record labels "
                       "instead). Train the run again with this version.")
    return metadata
