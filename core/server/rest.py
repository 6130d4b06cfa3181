"""TF Serving's REST API, in JSON: request bodies to arrays, arrays to bodies.

Clients written for TensorFlow Serving send either the row format
(`{"instances": [...]}`: one entry per example, an object of input names when
the signature has several inputs) or the columnar format (`{"inputs": ...}`: a
value, or an object of input names, batched along the first dimension).
Binary strings travel as `{"b64": "..."}`. Outputs come back in the request's
format: `{"predictions": [...]}` or `{"outputs": ...}`, and output names
ending in `_bytes` as `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping

import numpy as np

from ftk.predictor import TensorInfo


class RequestError(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise RequestError("The body nests too deeply.") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"The body is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise RequestError("The body must be a JSON object, such as "
                           '{"instances": [...]} or {"inputs": ...}.')
    if not isinstance(value.get("signature_name", ""), str):
        raise RequestError('"signature_name" must be a string.')
    return value


def instances_of(request: Mapping[str, Any], max_instances: int) -> list[Any]:
    """The request's `instances` list, within the server's limit."""
    unknown = sorted(set(request) - {"instances", "signature_name"})
    if unknown:
        raise RequestError(f"Unknown field {unknown[0]!r}: this route takes "
                           '{"instances": [...]}.')
    instances = request.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError('The body needs "instances": a non-empty list.')
    _check_count(len(instances), max_instances)
    return instances


def request_inputs(request: Mapping[str, Any], inputs: Mapping[str, TensorInfo],
                   max_instances: int) -> tuple[dict[str, np.ndarray], bool]:
    """The request's tensors by input name, and whether it used the row format."""
    unknown = sorted(set(request) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(f"Unknown field {unknown[0]!r}: a predict request has "
                           '"instances" or "inputs", and may have "signature_name".')
    if ("instances" in request) == ("inputs" in request):
        raise RequestError('A predict request has exactly one of "instances" (row format) '
                           'or "inputs" (columnar format).')
    names = list(inputs)
    if "instances" in request:
        rows = request["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError('"instances" must be a non-empty list.')
        _check_count(len(rows), max_instances)
        columns: dict[str, list] = {name: [] for name in names}
        for index, row in enumerate(rows):
            named = _named(row, names, f"instances[{index}]")
            for name in names:  # b64 errors name the instance
                columns[name].append(decode_value(named[name], f"instances[{index}]")
                                     if _is_string(inputs[name]) else named[name])
        tensors = {name: _array(columns[name], inputs[name], f"instances ({name})")
                   for name in names}
        return tensors, True
    named = _named(request["inputs"], names, "inputs")
    tensors = {name: _array(named[name], inputs[name], f"inputs ({name})") for name in names}
    for name, tensor in tensors.items():
        if tensor.ndim == 0:
            raise RequestError(f"inputs ({name}) must be batched: a list with one entry per "
                               "example.")
        _check_count(len(tensor), max_instances)
    if len({len(tensor) for tensor in tensors.values()}) > 1:
        raise RequestError("inputs: every input needs the same number of examples (its first "
                           "dimension).")
    return tensors, False


def decode_value(value: Any, where: str) -> Any:
    """A JSON value with `{"b64": ...}` replaced by its bytes."""
    if isinstance(value, list):
        return [decode_value(item, where) for item in value]
    if is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError(f"{where}: the b64 value is not valid base64.") from None
    if isinstance(value, dict):
        raise RequestError(f"{where}: objects are not values here (only {{\"b64\": ...}} is).")
    return value


def response_body(outputs: Mapping[str, np.ndarray], rows: bool) -> dict[str, Any]:
    """Outputs in the format the request used."""
    values = {name: _json(name, value) for name, value in outputs.items()}
    if not rows:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    count = len(next(iter(values.values())))
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: value[row] for name, value in values.items()}
                            for row in range(count)]}


def status_body() -> dict[str, Any]:
    """`GET /v1/models/NAME`: one version, loaded and available."""
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata_body(name: str, signatures: Mapping[str, Mapping[str, Mapping[str, TensorInfo]]]
                  ) -> dict[str, Any]:
    """`GET /v1/models/NAME/metadata`: every signature's inputs and outputs."""
    def tensor(key: str, info: TensorInfo) -> dict[str, Any]:
        return {"dtype": _dtype_name(info.dtype), "name": key,
                "tensor_shape": {"dim": [{"size": str(-1 if size is None else size), "name": ""}
                                         for size in info.shape], "unknown_rank": False}}

    signature_def = {
        key: {"inputs": {k: tensor(k, v) for k, v in parts["inputs"].items()},
              "outputs": {k: tensor(k, v) for k, v in parts["outputs"].items()},
              "method_name": "tensorflow/serving/predict"}
        for key, parts in signatures.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signature_def": signature_def}}}


def _check_count(count: int, max_instances: int) -> None:
    if count > max_instances:
        raise RequestError(f"Too many instances: {count}, over this server's limit of "
                           f"{max_instances} (ftk serve --max-instances). Send them in "
                           "several requests.", status=413)


def is_b64(value: Any) -> bool:
    """Whether a JSON value is TF Serving's binary form, `{"b64": ...}`."""
    return isinstance(value, dict) and set(value) == {"b64"}


def _named(value: Any, names: list[str], where: str) -> dict[str, Any]:
    """`value` as `{input name: value}`: an object of names, or, for a
    signature of one input, the value itself."""
    if isinstance(value, dict) and not is_b64(value):
        missing = [name for name in names if name not in value]
        extra = sorted(set(value) - set(names))
        if missing or extra:
            wrong = f"has no input {extra[0]!r}" if extra else f"needs input {missing[0]!r}"
            raise RequestError(f"{where}: the signature {wrong} (its inputs: "
                               f"{', '.join(names)}).")
        return value
    if len(names) != 1:
        raise RequestError(f"{where}: the signature has several inputs ({', '.join(names)}); "
                           "give an object of them.")
    return {names[0]: value}


def _array(value: Any, info: TensorInfo, where: str) -> np.ndarray:
    """A JSON value as an array the input takes, or an error naming the mismatch."""
    if _is_string(info):
        decoded = decode_value(value, where)
        array = np.array(_utf8(decoded), dtype=object)
    else:
        if _holds_b64(value):
            raise RequestError(f"{where}: b64 values are for string inputs; this one takes "
                               f"{_dtype_name(info.dtype)}.")
        try:
            array = np.asarray(value, dtype=info.dtype)
        except (TypeError, ValueError, OverflowError):
            raise RequestError(f"{where}: expected numbers of one shape for "
                               f"{_dtype_name(info.dtype)}.") from None
    expected = "[" + ", ".join("-1" if s is None else str(s) for s in info.shape) + "]"
    if array.ndim != len(info.shape) or any(
            want is not None and got != want for got, want in zip(array.shape[1:], info.shape[1:])):
        raise RequestError(f"{where}: shape {list(array.shape)} does not fit the signature's "
                           f"{expected}.")
    return array


def _is_string(info: TensorInfo) -> bool:
    return np.dtype(info.dtype).kind in "OSU"


def _holds_b64(value: Any) -> bool:
    if isinstance(value, list):
        return any(_holds_b64(item) for item in value)
    return isinstance(value, dict)


def _utf8(value: Any) -> Any:
    if isinstance(value, list):
        return [_utf8(item) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _json(name: str, value: np.ndarray) -> Any:
    array = np.asarray(value)
    if array.dtype.kind in "OS":
        binary = name.endswith("_bytes")
        return _strings(array.tolist(), binary)
    return array.tolist()


def _strings(value: Any, binary: bool) -> Any:
    if isinstance(value, list):
        return [_strings(item, binary) for item in value]
    if isinstance(value, bytes):
        if not binary:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _dtype_name(dtype: Any) -> str:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)
