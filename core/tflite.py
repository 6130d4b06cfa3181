"""TFLite files of an export: conversion (with quantisation), the check that
the file runs in Python, and the sidecar JSON beside it.

The file holds two signatures, as the SavedModel does: `serving_default`
(predictions) and `raw_outputs` (what `ftk evaluate` scores). Both take the
input form the task's preprocessor names for TFLite (`tflite_input`): pixels
for image tasks, strings through a TFLite-ready tokenizer for BERT text.

Only TFLite builtin ops and tensorflow-text's custom ops (which have
registrars) are allowed. TensorFlow ("Flex") ops are refused: neither
TensorFlow's nor LiteRT's Python interpreter runs them.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ftk.errors import FtkError

log = logging.getLogger(__name__)

QUANTIZE = ("none", "dynamic", "float16", "int8")
FORMAT = "ftk-tflite"
SIGNATURES = ("serving_default", "raw_outputs")
# Matrix products, convolutions and lookups: where a model's weights (hence
# int8's saving in size) and most of its arithmetic are. When full int8 loses
# too much, only these run in int8 (`Calibrated.other_ops`).
MATRIX_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
                        "BATCH_MATMUL", "GATHER", "EMBEDDING_LOOKUP"})
# TensorFlow's error when a graph op has no TFLite kernel, e.g.
# "'tf.CombinedNonMaxSuppression' op is neither a custom op nor a flex op".
_MISSING_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def sidecar_path(path: str | Path) -> Path:
    """`model.tflite` -> `model.tflite.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def op_registerers() -> list[Callable]:
    """Registrars of the custom ops a TFLite file may hold: tensorflow-text's
    (its TFLite-ready tokenizers)."""
    from tensorflow_text import tflite_registrar

    return list(tflite_registrar.SELECT_TFTEXT_OPS)


def op_names(flatbuffer: bytes, *, custom_only: bool = False) -> collections.Counter:
    """How often each op (builtin name, or custom op name) appears in a TFLite
    flatbuffer, control-flow bodies included; with `custom_only`, the custom
    ops alone."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items()
               if not name.startswith("_")}
    counts: collections.Counter = collections.Counter()
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            number = max(code.builtinCode, code.deprecatedBuiltinCode)
            if number == schema.BuiltinOperator.CUSTOM:
                counts[code.customCode.decode()] += 1
            elif not custom_only:
                counts[builtin[number]] += 1
    return counts


def convert(export_dir: Path, metadata: Mapping[str, Any], quantize: str = "none") -> bytes:
    """The export's TFLite-form signatures as a TFLite flatbuffer, in a mode
    that needs no calibration.

    Args:
        export_dir: the export folder.
        metadata: its `ftk.json`.
        quantize: `none` (float32), `dynamic` (int8 weights, float compute)
            or `float16` (float16 weights). `int8` goes through `calibrate`.
    """
    import tensorflow as tf

    check_modes(quantize, False)
    if quantize == "int8":
        raise FtkError("--quantize int8 calibrates first: use tflite.calibrate.")
    converter, names = _converter(export_dir, metadata)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return _finished(_converted(converter, export_dir), names, export_dir)


def calibrate(export_dir: Path, metadata: Mapping[str, Any],
              representative: Callable[[], Iterable[Any]], int8_io: bool = False) -> Calibrated:
    """The export's TFLite-form signatures with the range of every tensor
    recorded on `representative` (a function giving input batches of the
    TFLite form, one example each), ready to quantise to int8."""
    import tensorflow as tf

    converter, names = _converter(export_dir, metadata)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    inputs = {key: metadata["tflite"]["input_name"] for key in names}

    def calibration() -> Iterable[Any]:
        # Every signature is calibrated, each on the same examples.
        for batch in representative():
            for key, name in inputs.items():
                yield key, {name: batch}

    converter.representative_dataset = calibration
    # Calibration runs the model, custom ops included. TensorFlow has no public
    # setting for their registrars.
    converter.target_spec._experimental_custom_op_registerers = op_registerers()
    if int8_io:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Stop after calibration, so that the model can be quantised more than
    # one way without running it again (TensorFlow's quantisation debugger
    # does the same).
    converter._experimental_calibrate_only = True
    with warnings.catch_warnings():
        # TensorFlow's calibrator runs its own deprecated interpreter and says so.
        warnings.filterwarnings("ignore", r"(?s).*tf\.lite\.Interpreter is deprecated",
                                UserWarning)
        calibrated = _converted(converter, export_dir)
    return Calibrated(calibrated, names, int8_io, export_dir)


class Calibrated:
    """A float TFLite model whose tensors' ranges were recorded: what int8
    quantisation starts from."""

    def __init__(self, flatbuffer: bytes, names: Mapping[str, str], int8_io: bool, source: Any):
        self._flatbuffer, loops = _without_loop_ranges(flatbuffer)
        if int8_io and loops:
            raise FtkError(f"--int8-io asks for integer ops throughout, but the TFLite file of "
                           f"{source} runs loops ({', '.join(loops)}), which stay float: "
                           "TFLite cannot calibrate them. Leave --int8-io out for this model.")
        self._names = dict(names)
        self.int8_io = int8_io
        self._source = source

    def quantize(self, float_ops: Iterable[str] = ()) -> bytes:
        """The int8 file: weights and activations in int8, except in the ops
        named in `float_ops` (TFLite builtin names), which stay float."""
        import tensorflow as tf
        from tensorflow.lite.python import convert as lite_convert

        io_type = tf.int8 if self.int8_io else tf.float32
        flatbuffer = lite_convert.mlir_quantize(
            self._flatbuffer, input_data_type=io_type, output_data_type=io_type,
            denylisted_ops=sorted(float_ops) or None)
        flatbuffer = _finished(flatbuffer, self._names, self._source)
        if self.int8_io:
            _check_int8_inputs(flatbuffer, self._source)
        return flatbuffer

    def other_ops(self) -> list[str]:
        """The model's builtin ops outside `MATRIX_OPS`: what stays float when
        only the matrix ops run in int8."""
        custom = op_names(self._flatbuffer, custom_only=True)
        return sorted(set(op_names(self._flatbuffer)) - MATRIX_OPS - set(custom))


def _converter(export_dir: Path, metadata: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
    """A converter of the export's TFLite-form signatures, and the name each
    signature gets in the file."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's other signatures may use its ops)

    form = _form(export_dir, metadata)
    suffix = f"_{form}" if form else ""
    names = {f"serving{suffix}" if form else "serving_default": "serving_default",
             f"raw_outputs{suffix}": "raw_outputs"}
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export_dir), signature_keys=list(names))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = True
    return converter, names


def _converted(converter: Any, export_dir: Path) -> bytes:
    try:
        return converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds
        raise _conversion_error(export_dir, error) from None


def _finished(flatbuffer: bytes, names: Mapping[str, str], source: Any) -> bytes:
    """The file under the plain signature names, checked to run."""
    flatbuffer = _renamed_signatures(flatbuffer, names)
    check_runs(flatbuffer, source)
    return flatbuffer


def check_modes(quantize: str, int8_io: bool) -> None:
    if quantize not in QUANTIZE:
        raise FtkError(f"--quantize must be one of {', '.join(QUANTIZE)}. Received: {quantize!r}")
    if int8_io and quantize != "int8":
        raise FtkError("--int8-io needs --quantize int8 (it makes inputs and outputs int8 too).")


def _check_int8_inputs(flatbuffer: bytes, source: Any) -> None:
    """With --int8-io, a file whose inputs stayed non-integer (strings) is refused."""
    import numpy as np

    runner = interpreter(flatbuffer)
    for key in SIGNATURES:
        for name, detail in runner.get_signature_runner(key).get_input_details().items():
            if np.dtype(detail["dtype"]) != np.int8:
                raise FtkError(f"--int8-io makes float inputs int8, but the TFLite file of "
                               f"{source} takes {np.dtype(detail['dtype']).name} {name!r}. "
                               "Leave --int8-io out for this model.")


def _renamed_signatures(flatbuffer: bytes, names: Mapping[str, str]) -> bytes:
    """The flatbuffer with its signatures renamed (`serving_tflite` ->
    `serving_default`), so every file has the same two names."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    for signature in model.signatureDefs or []:
        key = signature.signatureKey.decode()
        signature.signatureKey = names.get(key, key).encode()
    return _packed(model, len(flatbuffer))


def _without_loop_ranges(flatbuffer: bytes) -> tuple[bytes, list[str]]:
    """A calibrated flatbuffer without the ranges recorded in control-flow
    bodies (a `tf.map_fn`'s loop), so that their ops stay float; and the
    names of those bodies (none: the flatbuffer as it was).

    TFLite's calibrator records a loop body's tensors as it first enters
    them: a list the loop fills still reads as zeros there, and int8 then
    squeezes every value written to it into a range of about 1e-6 (a
    detector's boxes and scores all came out as 0.000255 and 1e-6).
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    # The subgraphs no signature enters: bodies and conditions of loops and branches.
    entries = {signature.subgraphIndex for signature in model.signatureDefs or []}
    bodies = [subgraph for index, subgraph in enumerate(model.subgraphs or [])
              if index not in entries]
    if not bodies:
        return flatbuffer, []
    for subgraph in bodies:
        for tensor in subgraph.tensors or []:
            tensor.quantization = None
    return _packed(model, len(flatbuffer)), [(body.name or b"?").decode() for body in bodies]


def _packed(model: Any, size: int) -> bytes:
    """An unpacked model (`schema.ModelT`) of about `size` bytes as a flatbuffer."""
    import flatbuffers

    builder = flatbuffers.Builder(size + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _form(export_dir: Path, metadata: Mapping[str, Any]) -> str:
    if "tflite" not in metadata:
        raise FtkError(f"{export_dir} was exported by an earlier ftk version, which did not "
                       "record the input its TFLite file takes. Train the run again.")
    return metadata["tflite"]["form"]


def _needs_tensorflow(source: Any, ops: Iterable[str]) -> FtkError:
    return FtkError(
        f"{source} cannot become a TFLite file that runs: it needs TensorFlow ops TFLite "
        f"has no kernels for: {', '.join(sorted(set(ops)))}. They would need the Flex "
        "delegate, which TFLite's Python interpreters do not run. Use the SavedModel "
        "instead, or a backbone whose preprocessing TFLite can run.")


def _conversion_error(export_dir: Path, error: Exception) -> FtkError:
    missing = _MISSING_OP.findall(str(error))
    if missing:
        return _needs_tensorflow(export_dir, missing)
    lines = [line for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return FtkError(f"TFLite conversion of {export_dir} failed: {reason.strip()}")


def check_runs(flatbuffer: bytes, source: Any) -> None:
    """Refuse a file no Python TFLite interpreter can run: Flex ops, or custom
    ops without a registrar."""
    import tensorflow as tf

    names = op_names(flatbuffer)
    # TensorFlow ops TFLite lacks come out as Flex ops, or as custom ops of
    # the same name (allow_custom_ops); tensorflow-text's are not in tf.raw_ops.
    tensorflow_ops = [name[len("Flex"):] if name.startswith("Flex") else name
                      for name in op_names(flatbuffer, custom_only=True)
                      if name.startswith("Flex") or hasattr(tf.raw_ops, name)]
    if tensorflow_ops:
        raise _needs_tensorflow(source, tensorflow_ops)
    try:
        interpreter(flatbuffer).allocate_tensors()
    except (RuntimeError, ValueError) as error:
        raise FtkError(f"The TFLite file of {source} does not run: {str(error).strip()}. "
                       f"Its ops: {', '.join(sorted(names))}.") from None


def interpreter(flatbuffer: bytes) -> Any:
    """A LiteRT interpreter of `flatbuffer` with the custom ops registered."""
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    return InterpreterWithCustomOps(custom_op_registerers=op_registerers(),
                                    model_content=flatbuffer)


def describe(flatbuffer: bytes, metadata: Mapping[str, Any], quantize: str,
             int8_io: bool, float_ops: Iterable[str] = ()) -> dict[str, Any]:
    """The sidecar: what a user of the file needs besides the file
    (`float_ops`: the op types an int8 file was made to keep float)."""
    runner = interpreter(flatbuffer)
    signatures = {}
    for key in SIGNATURES:
        signature = runner.get_signature_runner(key)
        signatures[key] = {
            "inputs": {name: _tensor(detail) for name, detail in signature.get_input_details().items()},
            "outputs": {name: _tensor(detail) for name, detail in signature.get_output_details().items()}}
    custom = sorted(op_names(flatbuffer, custom_only=True))
    return {"format": FORMAT, "version": 1, "task": metadata["task"],
            "backbone": metadata.get("backbone"), "quantize": quantize, "int8_io": int8_io,
            **({"int8_float_ops": sorted(float_ops)} if quantize == "int8" else {}),
            "sha256": hashlib.sha256(flatbuffer).hexdigest(),
            "input": {"form": metadata["tflite"]["form"] or "raw", **metadata["tflite"]["input"]},
            "signatures": signatures,
            "custom_ops": {"ops": custom, "registrar": "tensorflow_text.tflite_registrar"
                           ".SELECT_TFTEXT_OPS"} if custom else None,
            "targets": metadata["targets"], "config": metadata["config"]}


def _tensor(detail: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    scale, zero_point = detail.get("quantization", (0.0, 0))
    described = {"dtype": np.dtype(detail["dtype"]).name,
                 "shape": [int(size) for size in detail["shape_signature"]]}
    if scale:
        described["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return described


def read_sidecar(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A TFLite file and its sidecar, refusing a missing, damaged or
    mismatched sidecar."""
    sidecar = sidecar_path(path)
    if not path.is_file():
        raise FtkError(f"{path} does not exist. Pass a .tflite file `ftk export` wrote.")
    if not sidecar.is_file():
        raise FtkError(f"{path} has no {sidecar.name} beside it, which says what the file "
                       "takes and gives. Write both with `ftk export --format tflite`.")
    flatbuffer = path.read_bytes()
    try:
        described = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FtkError(f"{sidecar} is damaged: not valid JSON ({error}). "
                       "Export the file again.") from None
    if not isinstance(described, dict) or described.get("format") != FORMAT:
        raise FtkError(f"{sidecar} is not an ftk TFLite description. Export the file again.")
    if described.get("sha256") != hashlib.sha256(flatbuffer).hexdigest():
        raise FtkError(f"{sidecar} describes another file than {path.name} (their digests "
                       "differ). Export the file again.")
    return flatbuffer, described
