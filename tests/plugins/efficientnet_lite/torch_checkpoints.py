"""A minimal torch.save writer, so tests build .pth checkpoints without PyTorch:
the legacy format and the zip format, with shared and offset storages."""

from __future__ import annotations

import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPE_STORAGES = {"float32": "FloatStorage", "float64": "DoubleStorage",
                   "float16": "HalfStorage", "int64": "LongStorage",
                   # numpy has no bfloat16: tests give its raw bits as uint16.
                   "bool": "BoolStorage", "uint16": "BFloat16Storage"}


@dataclass
class Global:
    """A `module.name` reference, pickled with the GLOBAL opcode."""

    module: str
    name: str


@dataclass
class Call:
    """`function(*args)`, pickled with REDUCE: what unpickling runs."""

    function: Global
    args: tuple


@dataclass
class Storage:
    """A persistent-id reference to a flat storage, as torch.save writes."""

    key: str
    data: np.ndarray  # 1-D


@dataclass
class View:
    """A tensor over `storage`: element offset, size and stride."""

    storage: Storage
    offset: int
    size: tuple
    stride: tuple


def pickle_ops(value: Any) -> bytes:
    """Protocol-2 opcodes for the few value types a state dict uses."""
    if value is None:
        return pickle.NONE
    if isinstance(value, bool):
        return pickle.NEWTRUE if value else pickle.NEWFALSE
    if isinstance(value, int):
        return pickle.INT + b"%d\n" % value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
    if isinstance(value, tuple):
        return pickle.MARK + b"".join(pickle_ops(v) for v in value) + pickle.TUPLE
    if isinstance(value, list):
        return (pickle.EMPTY_LIST + pickle.MARK + b"".join(pickle_ops(v) for v in value)
                + pickle.APPENDS)
    if isinstance(value, Global):
        return pickle.GLOBAL + f"{value.module}\n{value.name}\n".encode()
    if isinstance(value, Call):
        return pickle_ops(value.function) + pickle_ops(value.args) + pickle.REDUCE
    if isinstance(value, Storage):
        kind = Global("torch", _DTYPE_STORAGES[value.data.dtype.name])
        pid = ("storage", kind, value.key, "cpu", value.data.size)
        return pickle_ops(pid) + pickle.BINPERSID
    if isinstance(value, View):
        hooks = Call(Global("collections", "OrderedDict"), ())
        return pickle_ops(Call(Global("torch._utils", "_rebuild_tensor_v2"),
                         (value.storage, value.offset, value.size, value.stride,
                          False, hooks)))
    raise TypeError(type(value))


def state_pickle(entries: dict[str, Any]) -> bytes:
    body = pickle_ops(Call(Global("collections", "OrderedDict"),
                     (list(entries.items()),)))
    return pickle.PROTO + b"\x02" + body + pickle.STOP


def _as_views(tensors: dict[str, Any]) -> dict[str, Any]:
    """Arrays become contiguous tensors, each over a storage of its own."""
    views = {}
    for index, (name, value) in enumerate(tensors.items()):
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            strides = tuple(s // max(array.itemsize, 1) for s in array.strides)
            value = View(Storage(str(index), array.reshape(-1)), 0, array.shape,
                         strides)
        views[name] = value
    return views


def _storages(entries: dict[str, Any]) -> dict[str, Storage]:
    found = {}
    for value in entries.values():
        if isinstance(value, View):
            found[value.storage.key] = value.storage
    return found


def write_legacy(path: Path, tensors: dict[str, Any]) -> Path:
    """Writes `tensors` (arrays, Views or raw Calls) as pre-1.6 torch.save."""
    entries = _as_views(tensors)
    storages = _storages(entries)
    parts = [pickle.dumps(LEGACY_MAGIC, protocol=2),
             pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}},
                          protocol=2),
             state_pickle(entries), pickle.dumps(list(storages), protocol=2)]
    for storage in storages.values():
        parts.append(struct.pack("<q", storage.data.size) + storage.data.tobytes())
    path.write_bytes(b"".join(parts))
    return path


def write_zip(path: Path, tensors: dict[str, Any]) -> Path:
    """Writes `tensors` in the zip layout of torch.save since PyTorch 1.6."""
    entries = _as_views(tensors)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", state_pickle(entries))
        archive.writestr("archive/byteorder", "little")
        for key, storage in _storages(entries).items():
            archive.writestr(f"archive/data/{key}", storage.data.tobytes())
        archive.writestr("archive/version", "3\n")
    return path


WRITERS = {"legacy": write_legacy, "zip": write_zip}
