"""Atomic writes: a file or folder appears whole or not at all.

Files are written to a temporary name beside their target and renamed into
place. Folders are built in a temporary folder beside their target
(`building_dir`), which replaces the target only once the block finishes. This
is the one staging idiom of ftk: run directories, exports, checkpoints,
converted backbones and unpacked wheels all go through it.

A process holds an advisory lock (`flock`) on each of its staging files and
folders until it moves or removes them; the kernel drops the lock when the
process dies. So a staging name nobody holds was left by a killed process,
and the next write of the same target removes it, while a concurrent
writer's staging is never touched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterator

from ftk.errors import FtkError, first_line

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows: no flock, so stale staging names are left alone
    fcntl = None

# Staged paths this process holds, and the descriptor holding each one's lock.
_HELD: dict[Path, int] = {}


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.new-")
    temp = Path(temp)
    try:
        with os.fdopen(handle, "wb") as stream:
            temp = _claim(temp, lambda: os.dup(stream.fileno()), path)
            stream.write(data)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes files private (0600)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        release(temp)


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
    restore_stepped_aside(target)
    staging = staging_dir(target)
    try:
        yield staging
        replace_dir_atomic(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        release(staging)


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Move a fully written folder into place, keeping the old one until then.

    A folder rename cannot overwrite a non-empty folder, so the old one steps
    aside first, and comes back if the new one cannot be moved in.
    """
    target = Path(target)
    old = _stepped_aside(target)
    with _swapping(target.parent):
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


def restore_stepped_aside(target: Path) -> bool:
    """Put back the folder `replace_dir_atomic` stepped aside, when its process
    was killed between its two renames and left no `target`. True if it did."""
    target, old = Path(target), _stepped_aside(Path(target))
    if target.exists() or not old.is_dir():
        return False
    with _swapping(target.parent):
        if target.exists() or not old.is_dir():  # another process's swap, now done
            return False
        old.rename(target)
    log.warning(f"Restored {target} from {old.name}, left by an interrupted write.")
    return True


def staging_dir(target: Path) -> Path:
    """A new empty folder beside `target`, hidden, for building its replacement.

    It stays locked by this process until `release`d; stale staging folders of
    `target` from killed processes are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes folders private (0700)
        return _claim(staging, lambda: os.open(staging, os.O_RDONLY), target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging files and folders of `target` that no live process
    holds: what a killed process left half-written. Returns what was removed."""
    target = Path(target)
    if fcntl is None or not target.parent.is_dir():
        return []
    removed = []
    for entry in target.parent.glob(f".{glob_escape(target.name)}.tmp-*"):
        if entry.resolve() not in _HELD and not _held_elsewhere(entry):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                missing_ok=True)
            removed.append(entry)
    if removed:
        log.info(f"Removed {len(removed)} half-written leftover(s) of {target} from an "
                 "interrupted process.")
    return removed


def release(path: Path) -> None:
    """Drop this process's lock on a staged path (after it was moved or removed)."""
    handle = _HELD.pop(Path(path).resolve(), None)
    if handle is not None:
        os.close(handle)


# How a full disk, a quota or a file-size limit (ulimit -f) reads in Python's
# errors and in TensorFlow's, which carry no errno.
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EFBIG: "a file grew past the file-size limit"}
_STORAGE_MESSAGES = {os.strerror(number): reason for number, reason in _STORAGE_ERRNOS.items()}


def storage_failure(error: BaseException) -> str | None:
    """What ran out when `error` is a write that found no room (a full disk,
    a quota, a file-size limit), with the file it was writing; else None."""
    if isinstance(error, FtkError):
        return None
    number = error.errno if isinstance(error, OSError) else None
    if isinstance(error, OSError) and "No usable temporary directory" in str(error):
        # Python's own probe (TensorFlow's import makes one) could write nowhere.
        return "no room for a temporary file in any temporary folder"
    if isinstance(error, OSError) and number in _STORAGE_ERRNOS:
        where = f" writing {error.filename}" if error.filename else ""
        return f"{_STORAGE_ERRNOS[number]}{where}"
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list):
        # copytree gathers (source, destination, reason) for every file it could not copy.
        for _, destination, why in error.args[0]:
            for message, reason in _STORAGE_MESSAGES.items():
                if message in str(why):
                    return f"{reason} writing {destination}"
    # TensorFlow's errors carry the OS message in their text only.
    native = type(error).__module__.startswith("tensorflow") or (
        isinstance(error, OSError) and number is None)
    for message, reason in _STORAGE_MESSAGES.items():
        if native and message in str(error):
            return f"{reason} ({first_line(error)})"
    return None


def _claim(path: Path, open_handle: Any, target: Path) -> Path:
    """Lock the new staged `path` through a descriptor from `open_handle`,
    then give it the staging name that `remove_stale_staging` looks for: a
    `.tmp-` name is locked from its first moment, so no cleanup can take a
    live one for a leftover. Where locks are unavailable (Windows, or a file
    system without flock) the path keeps its `.new-` name, which no cleanup
    touches."""
    if fcntl is None:
        return path
    handle = open_handle()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(handle)
        log.debug(f"No lock on {path} ({error}); it is not cleaned up if this process dies.")
        return path
    named = path.with_name(path.name.replace(f".{target.name}.new-", f".{target.name}.tmp-", 1))
    try:
        path.rename(named)
    except BaseException:
        os.close(handle)
        raise
    _HELD[named.resolve()] = handle
    return named


@contextmanager
def _swapping(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock while one process swaps a folder in it, so that no
    other process restores or removes a stepped-aside `.NAME.old` mid-swap."""
    handle = None
    # A folder this process stages is locked already, and only it writes there.
    if fcntl is not None and Path(folder).resolve() not in _HELD:
        try:
            handle = os.open(folder, os.O_RDONLY)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            if handle is not None:
                os.close(handle)
            handle = None  # no lock here: swaps are not serialised
    try:
        yield
    finally:
        if handle is not None:
            os.close(handle)


def _held_elsewhere(path: Path) -> bool:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # unreadable: not ours to judge
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)  # closing drops the lock just taken
    return False


def _stepped_aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
