"""Turn `--backbone` (preset name, TF Hub handle or local path) into a backbone."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import urllib.error
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftk.atomic import building_dir
from ftk.backbone import Backbone
from ftk.errors import FtkError, first_line
from ftk.paths import backbone_cache_dir

METADATA_FILE = "backbone.json"
log = logging.getLogger(__name__)


@dataclass
class LoadedBackbone:
    """A backbone ready to build: where its SavedModels are and what it takes.

    Attributes:
        name: the preset name, or the handle when it is not a preset.
        handle: TF Hub handle or local path of the backbone SavedModel.
        kind: the tf.hub convention it follows (see `ftk.Backbone.kind`).
        preprocessor: handle of a matching text preprocessor SavedModel, if any.
        metadata: preset metadata merged with the folder's `backbone.json`.
    """

    name: str
    handle: str
    kind: str
    preprocessor: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def saved_model(self) -> Any:
        """The backbone loaded with `hub.load` (assets such as a vocab file)."""
        import tensorflow_hub as hub

        with loading(self.handle):
            return hub.load(self.handle)

    def keras_layer(self, trainable: bool) -> Any:
        """A fresh `hub.KerasLayer` over the backbone."""
        import tensorflow_hub as hub

        with loading(self.handle):
            return hub.KerasLayer(self.handle, trainable=trainable, name="backbone")


@contextmanager
def loading(handle: str) -> Iterator[None]:
    """Turn a failure to fetch or load a SavedModel into an error naming the
    handle and saying what to do."""
    if "://" in handle:
        clear_stale_download(handle)
    try:
        yield
    except FtkError:
        raise
    except Exception as error:  # noqa: BLE001 - urllib, OSError, TF's own errors alike
        raise FtkError(f"Cannot load backbone {handle}: {type(error).__name__}: "
                       f"{first_line(error)}. {_advice(handle, error)}") from error


def _advice(handle: str, error: Exception) -> str:
    status = error.code if isinstance(error, urllib.error.HTTPError) else None
    if status == 404:
        return ("The hub has no model at that address: check the handle's spelling and "
                "version, or pick a preset (`ftk backbones list`).")
    if status in (401, 403):
        return ("The hub refused access: the model may need a login or an accepted licence. "
                "Download it where you have access and pass the folder (--backbone PATH).")
    if "://" not in handle:
        return ("Check that the folder holds a complete SavedModel (saved_model.pb and "
                "variables/), or convert the checkpoint again.")
    cached = hub_cache_folder(handle)
    if cached.is_dir():
        return (f"Its cached copy {cached} may be incomplete (an interrupted download or "
                "copy): delete that folder to fetch it again.")
    return ("Without network: download it where there is network and pass the folder "
            "(--backbone PATH), point TFHUB_CACHE_DIR at a cache that holds it, or use an "
            "offline preset (`ftk backbones list`).")


def hub_cache_folder(handle: str) -> Path:
    """Where tensorflow_hub caches `handle`: TFHUB_CACHE_DIR (or its temp
    default) / the handle's SHA-1, as tensorflow_hub lays its cache out."""
    from tensorflow_hub import resolver

    return Path(resolver.tfhub_cache_dir(use_temp=True)) / hashlib.sha1(
        handle.encode("utf8")).hexdigest()


def clear_stale_download(handle: str) -> None:
    """Remove the lock and partial download a killed process left in the hub
    cache; tensorflow_hub would otherwise wait ten minutes for it to move.

    A lock reads HOST.PID.ID; only a lock of this host whose process is gone
    is stale.
    """
    if os.name != "posix":  # os.kill(pid, 0) probes a process on POSIX only
        return
    folder = hub_cache_folder(handle)
    lock = folder.with_name(folder.name + ".lock")
    try:
        contents = lock.read_text(encoding="utf-8")
        host, pid, task = contents.strip().rsplit(".", 2)
        if host != socket.gethostname():
            return
        os.kill(int(pid), 0)
        return  # that process still runs
    except ProcessLookupError:
        pass  # stale
    except (OSError, ValueError):
        return  # no lock, an unreadable one, or a process not ours to judge
    try:
        if lock.read_text(encoding="utf-8") != contents:
            return  # another process cleared it and took a lock of its own
    except OSError:
        return
    shutil.rmtree(folder.with_name(f"{folder.name}.{task}.tmp"), ignore_errors=True)
    lock.unlink(missing_ok=True)
    log.warning(f"Removed the partial download of {handle} that an interrupted process left "
                f"in {folder.parent}; fetching it again.")


def is_pulled(name: str) -> bool:
    """Whether the preset `name` has been built into the cache."""
    return (backbone_cache_dir(name) / "encoder" / "saved_model.pb").exists()


def pull(preset: Backbone, *, force: bool = False) -> Path:
    """Build a preset's Hub-format SavedModels into the cache, atomically."""
    target = backbone_cache_dir(preset.name)
    if preset.pull is None:
        raise FtkError(
            f"Backbone {preset.name!r} is a TF Hub handle ({preset.handle}); "
            "tensorflow_hub downloads and caches it on first use (TFHUB_CACHE_DIR)."
        )
    if is_pulled(preset.name) and not force:
        return target
    from ftk import progress

    description = f"Preparing backbone {preset.name!r} in {target} (first use only)"
    with progress.timed(description), building_dir(target) as staging:
        preset.pull(staging)
        if not (staging / "encoder" / "saved_model.pb").exists():
            raise FtkError(f"Pulling backbone {preset.name!r} wrote no encoder SavedModel.")
    return target


def resolve_backbone(
    spec: str,
    presets: Mapping[str, Backbone],
    *,
    preprocessor: str | None = None,
) -> LoadedBackbone:
    """Find the backbone named by a preset name, a local path or a handle.

    Args:
        spec: `--backbone` as the user gave it.
        presets: the registered presets by name.
        preprocessor: `backbone.preprocessor` from the config, overriding the
            preset's.

    Returns:
        A `LoadedBackbone` (its SavedModel is loaded lazily).

    Raises:
        FtkError: the spec is none of the three, or the folder is no SavedModel.
    """
    if spec in presets:
        preset = presets[spec]
        if preset.pull is not None:
            folder = pull(preset)
            return _from_folder(folder, spec, preset.metadata, preprocessor, preset.kind)
        return LoadedBackbone(spec, preset.handle or "", preset.kind,
                              preprocessor or preset.preprocessor, dict(preset.metadata))
    path = Path(spec).expanduser()
    if path.exists():
        return _from_folder(path, spec, {}, preprocessor, None)
    if "://" in spec or spec.startswith(("gs://", "kaggle")):
        backbone = LoadedBackbone(spec, spec, "", preprocessor)
        backbone.kind = infer_kind(backbone.saved_model, spec)
        return backbone
    known = ", ".join(sorted(presets)) or "none"
    raise FtkError(
        f"Unknown backbone {spec!r}: not a preset (known: {known}), not an existing "
        "folder and not a TF Hub URL. Run `ftk backbones list` for presets."
    )


def _from_folder(
    folder: Path, name: str, metadata: Mapping[str, Any], preprocessor: str | None, kind: str | None
) -> LoadedBackbone:
    """A folder is either a SavedModel or ftk's layout (encoder/, preprocessor/)."""
    encoder = folder / "encoder" if (folder / "encoder").is_dir() else folder
    if not (encoder / "saved_model.pb").exists():
        raise FtkError(
            f"Backbone folder {folder} holds no saved_model.pb. Pass a SavedModel "
            "folder, a TF Hub handle or a preset name."
        )
    info = dict(metadata)
    for candidate in (folder / METADATA_FILE, encoder / METADATA_FILE):
        if candidate.exists():
            try:
                info.update(json.loads(candidate.read_text(encoding="utf-8")))
            except (ValueError, UnicodeDecodeError) as error:
                raise FtkError(f"{candidate} is not valid JSON ({error}). Fix it or remove it; "
                               "it only adds hints about the backbone.") from None
    if preprocessor is None and (folder / "preprocessor" / "saved_model.pb").exists():
        preprocessor = str(folder / "preprocessor")
    backbone = LoadedBackbone(name, str(encoder), kind or info.get("kind", ""), preprocessor, info)
    if not backbone.kind:
        backbone.kind = infer_kind(backbone.saved_model, str(folder))
    return backbone


UNKNOWN_KIND = "unknown"


def call_functions(saved_model: Any) -> list[Any]:
    """The traced functions of a SavedModel's `__call__`; none when it was saved
    with signatures only."""
    try:
        return list(saved_model.__call__.concrete_functions)
    except AttributeError:  # saved with signatures only, or a call that was not traced
        return []


def infer_kind(saved_model: Any, where: str) -> str:
    """Tell the tf.hub convention a SavedModel follows from its call signature:
    `text_encoder`, `text_embedding`, `image`, or `unknown` for any other
    (a task that takes such a backbone does not check its kind; one that
    needs a known kind refuses it with its own message). A folder may also
    name its kind in `backbone.json`."""
    import tensorflow as tf

    for function in call_functions(saved_model):
        args, _ = function.structured_input_signature
        specs = tf.nest.flatten(args[0] if args else None)
        first = args[0] if args else None
        if isinstance(first, dict) and "input_word_ids" in first:
            return "text_encoder"
        if specs and specs[0].dtype == tf.string:
            return "text_embedding"
        if specs and specs[0].dtype.is_floating and specs[0].shape.rank == 4:
            return "image"
    return UNKNOWN_KIND
