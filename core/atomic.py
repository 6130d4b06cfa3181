"""Atomic writes: a file or folder appears whole or not at all.

Files are written to a temporary name beside their target and renamed into
place. Folders are built in a temporary folder beside their target
(`building_dir`), which replaces the target only once the block finishes. This
is the one staging idiom of ftk: run directories, exports, checkpoints,
converted backbones and unpacked wheels all go through it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ftk.errors import FtkError


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes files private (0600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` as UTF-8, atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def building_dir(target: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Build a folder beside `target`; it replaces `target` when the block ends
    without error, and vanishes when it raises.

    Args:
        target: the folder to create or replace.
        marker: for folders a user names (`--output`), the file every earlier
            output of this kind holds; a non-empty `target` without it is
            refused, so an unrelated folder is never replaced. None for
            folders ftk owns (inside a run directory or its cache).

    Example:
        ```python
        with building_dir(output_dir, "backbone.json") as staging:
            write_model(staging / "encoder")
            (staging / "backbone.json").write_text("{}")
        ```
    """
    target = Path(target).resolve()  # so that "." or ".." have a parent and name
    if marker is not None:
        check_replaceable(target, marker)
    staging = staging_dir(target)
    try:
        yield staging
        replace_dir_atomic(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Move a fully written folder into place, keeping the old one until then.

    A folder rename cannot overwrite a non-empty folder, so the old one steps
    aside first, and comes back if the new one cannot be moved in.
    """
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    try:
        Path(staging).rename(target)
    except OSError:
        if old.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(target: Path, marker: str) -> None:
    """Refuse to replace a folder that is not an earlier output of ours.

    `target` may be missing or empty; otherwise it must hold `marker`.
    """
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise FtkError(f"{target} exists and is not a folder; choose another output folder.")
    if any(target.iterdir()) and not (target / marker).is_file():
        raise FtkError(f"{target} is a non-empty folder without {marker}, so it is not an "
                       "earlier output of this command; choose an empty or new folder.")


def staging_dir(target: Path) -> Path:
    """A new empty folder beside `target`, hidden, for building its replacement."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes folders private (0700)
    return staging


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
