"""Turn `--backbone` (preset name, TF Hub handle or local path) into a backbone."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftk.atomic import building_dir
from ftk.backbone import Backbone
from ftk.errors import FtkError
from ftk.paths import backbone_cache_dir

METADATA_FILE = "backbone.json"


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
    try:
        yield
    except FtkError:
        raise
    except Exception as error:  # noqa: BLE001 - urllib, OSError, TF's own errors alike
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if "://" in handle:
            advice = ("Without network: download it where there is network and pass the "
                      "folder (--backbone PATH), point TFHUB_CACHE_DIR at a cache that holds "
                      "it, or use an offline preset (`ftk backbones list`). A half-downloaded "
                      "cache folder can be deleted from TFHUB_CACHE_DIR to fetch it again.")
        else:
            advice = ("Check that the folder holds a complete SavedModel (saved_model.pb and "
                      "variables/), or convert the checkpoint again.")
        raise FtkError(f"Cannot load backbone {handle}: {type(error).__name__}: {reason}. "
                       f"{advice}") from error


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
