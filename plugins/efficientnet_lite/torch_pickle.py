"""Reads PyTorch `state_dict` checkpoints into numpy arrays, without PyTorch.

A `.pth` file is a pickle, and unpickling can run any code the file names.
The unpickler here resolves only the handful of globals a state dict needs
(`collections.OrderedDict`, tensor rebuild functions and typed storages),
mapped to harmless stand-ins; any other global stops the read before it is
called. Both layouts `torch.save` has used are read:

* zip (PyTorch >= 1.6): `<root>/data.pkl` plus one entry per storage,
  `<root>/data/<key>`;
* legacy: a stream of pickles (magic number, protocol, system info, the
  state dict, the storage keys), then each storage's raw bytes, preceded by
  its element count as an 8-byte little-endian integer.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from ftk.errors import FtkError

# Written as the first pickle of every legacy-format checkpoint.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# The typed storages `torch.save` pickles by name, as numpy element types.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    # numpy has no bfloat16: read the raw halves, widen to float32 later.
    "BFloat16Storage": np.dtype("<u2"),
}

# What a corrupt file makes `pickle`, `zipfile` and numpy raise.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError,
              IndexError, KeyError, AttributeError, OverflowError,
              struct.error, zipfile.BadZipFile, UnicodeDecodeError)


@dataclass(frozen=True)
class _StorageType:
    """Stands in for a `torch.<X>Storage` class named by the pickle."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id; its bytes are read afterwards."""

    key: str
    storage_type: _StorageType
    numel: int
    # Legacy checkpoints may point into part of another storage.
    root_key: str | None = None
    root_offset: int = 0


@dataclass(frozen=True)
class _TensorRef:
    """What `torch._utils._rebuild_tensor_v2` was asked to build."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                    *unused: Any) -> _TensorRef:
    # `unused`: requires_grad, backward hooks and (newer files) metadata.
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor refers to something else than "
                                     "a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(n) for n in size),
                      tuple(int(n) for n in stride))


def _rebuild_parameter(data: Any, *unused: Any) -> Any:
    # An nn.Parameter is its tensor plus requires_grad and hooks; keep data.
    return data


_ALLOWED_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    # State dicts carry a `_metadata` attribute, which needs an instance
    # __dict__; a plain dict has none.
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only state-dict globals; refuses every other one unloaded."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        super().__init__(stream)
        self.path = path
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_FUNCTIONS:
            return _ALLOWED_FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise FtkError(
            f"refusing to load {self.path}: its pickle references "
            f"{module}.{name}, which could run code; ftk only reads tensors "
            "from checkpoints. Use a plain state_dict checkpoint from a "
            "source you trust.")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6)
                and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        view = pid[5] if len(pid) == 6 else None
        if key not in self.storages:
            self.storages[key] = _StorageRef(key, storage_type, numel)
        if view is None:
            return self.storages[key]
        view_key, offset, view_numel = view
        ref = _StorageRef(str(view_key), storage_type, int(view_numel),
                          root_key=key, root_offset=int(offset))
        self.storages[ref.key] = ref
        return ref


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch `state_dict` checkpoint without importing PyTorch.

    Args:
        path: A file written by `torch.save(model.state_dict(), path)`, in
            the zip or the legacy layout.

    Returns:
        The tensors by name, as numpy arrays in the checkpoint's dtypes
        (bfloat16 widened to float32), in the checkpoint's order.

    Raises:
        FtkError: The file is missing, truncated or no PyTorch checkpoint;
            its pickle references a global other than the few a state dict
            needs; or it holds something other than named tensors.

    Example:

    ```python
    weights = read_torch_state_dict("resnet18.pth")
    weights["conv1.weight"].shape  # (64, 3, 7, 7)
    ```
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            state, storages = _read_zip(path)
        else:
            state, storages = _read_legacy(path)
        return _materialise(state, storages, path)
    except FtkError:
        raise
    except OSError as e:
        raise FtkError(f"cannot read {path}: {e}") from e
    except _MALFORMED as e:
        raise FtkError(f"{path} is not a readable PyTorch checkpoint "
                       f"(truncated or corrupt?): {type(e).__name__}: {e}"
                       ) from e


def _read_zip(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        # The root folder is "archive" for recent files, the file stem for
        # older ones; data.pkl sits directly below it.
        pickles = [n for n in names if n.endswith("/data.pkl")
                   and n.count("/") == 1]
        if len(pickles) != 1:
            raise FtkError(f"{path} is a zip file but not a PyTorch checkpoint "
                           "(expected exactly one <root>/data.pkl).")
        root = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if f"{root}byteorder" in names:
            byteorder = archive.read(f"{root}byteorder").decode("ascii").strip()
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])),
                                         path)
        state = unpickler.load()
        storages = {}
        for key, ref in unpickler.storages.items():
            if ref.root_key is None:
                raw = archive.read(f"{root}data/{key}")
                storages[key] = _storage_array(raw, ref, byteorder, path)
    return state, storages


def _read_legacy(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    with open(path, "rb") as stream:
        def load() -> Any:
            return _RestrictedUnpickler(stream, path).load()

        try:
            magic = load()
        except _MALFORMED:
            magic = None
        if magic != _LEGACY_MAGIC:
            raise FtkError(f"{path} is not a PyTorch checkpoint: neither a zip "
                           "archive nor a legacy torch.save file.")
        if load() != _LEGACY_PROTOCOL:
            raise FtkError(f"{path}: unsupported legacy checkpoint protocol.")
        info = load()
        byteorder = "little" if info.get("little_endian", True) else "big"
        unpickler = _RestrictedUnpickler(stream, path)
        state = unpickler.load()
        keys = load()
        storages = {}
        for key in keys:
            ref = unpickler.storages.get(str(key))
            if ref is None or ref.root_key is not None:
                raise pickle.UnpicklingError(f"unexpected storage {key!r}")
            # The count is in elements, written in the file's byte order.
            header = stream.read(8)
            numel = int.from_bytes(header, byteorder) if len(header) == 8 else -1
            if numel != ref.numel:
                raise EOFError(f"storage {key} header says {numel} elements, "
                               f"the pickle {ref.numel}")
            raw = stream.read(numel * ref.storage_type.dtype.itemsize)
            storages[ref.key] = _storage_array(raw, ref, byteorder, path)
    return state, storages


def _storage_array(raw: bytes, ref: _StorageRef, byteorder: str,
                   path: Path) -> np.ndarray:
    dtype = ref.storage_type.dtype
    if len(raw) != ref.numel * dtype.itemsize:
        raise EOFError(f"storage {ref.key} holds {len(raw)} bytes, expected "
                       f"{ref.numel * dtype.itemsize}")
    if byteorder == "big":
        dtype = dtype.newbyteorder(">")
    return np.frombuffer(raw, dtype=dtype)


def _materialise(state: Any, storages: dict[str, np.ndarray],
                 path: Path) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise FtkError(f"{path} holds a {type(state).__name__}, not a "
                       "state_dict of named tensors.")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise FtkError(f"{path}: entry {name!r} is a "
                           f"{type(value).__name__}, not a tensor; only plain "
                           "state_dict checkpoints are supported.")
        tensors[str(name)] = _tensor_array(value, storages)
    return tensors


def _tensor_array(tensor: _TensorRef, storages: dict[str, np.ndarray]
                  ) -> np.ndarray:
    ref = tensor.storage
    if ref.root_key is None:
        flat = storages[ref.key]
    else:
        flat = storages[ref.root_key][ref.root_offset:ref.root_offset + ref.numel]
    if len(tensor.size) != len(tensor.stride) or min(
            tensor.size + tensor.stride + (tensor.offset,), default=0) < 0:
        raise ValueError(f"bad size {tensor.size} or stride {tensor.stride}")
    native = flat.dtype.newbyteorder("=")
    if 0 in tensor.size:
        array = np.zeros(tensor.size, dtype=native)
    else:
        # Bounds are checked here: as_strided itself would read past the end.
        last = tensor.offset + sum((n - 1) * s for n, s in
                                   zip(tensor.size, tensor.stride))
        if last >= flat.size:
            raise ValueError(f"a tensor reads element {last} of a storage of "
                             f"{flat.size}")
        array = np.lib.stride_tricks.as_strided(
            flat[tensor.offset:], shape=tensor.size,
            strides=[s * flat.itemsize for s in tensor.stride])
        # A copy: own, writable, contiguous memory in native byte order.
        array = np.array(array, dtype=native)
    if ref.storage_type.name == "BFloat16Storage":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array
