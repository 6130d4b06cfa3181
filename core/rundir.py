"""The run directory and atomic writes: a crash never leaves a half-written file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

from ftk.errors import FtkError


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temp file beside `path`, then rename it into place."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
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


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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


@contextmanager
def building_dir(target: str | Path, marker: str) -> Iterator[Path]:
    """Build a folder beside `target`; it replaces `target` when the block ends
    without error, and vanishes when it raises.

    `target` may only be missing, empty, or an earlier output holding `marker`
    (see `check_replaceable`).

    Example:
        ```python
        with building_dir(output_dir, "backbone.json") as staging:
            write_model(staging / "encoder")
            (staging / "backbone.json").write_text("{}")
        ```
    """
    target = Path(target).resolve()  # so that "." or ".." have a parent and name
    check_replaceable(target, marker)
    staging = staging_dir(target)
    try:
        yield staging
        replace_dir_atomic(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(target: Path, marker: str) -> None:
    """Refuse to replace a folder that is not an earlier output of ours.

    `target` may be missing or empty; otherwise it must hold `marker`, the file
    every output of this kind carries, so a user's unrelated folder is never
    deleted.
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
    """An empty temp folder beside `target`, for `replace_dir_atomic`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes folders private (0700)
    return staging


def prepare_run_dir(output_dir: str | None, task: str, *, resume: bool, overwrite: bool) -> Path:
    """Create the run directory, refusing to mix a new run into an old one.

    Args:
        output_dir: `--output`; None means `runs/<task>-<timestamp>`.
        task: the task name, for the default folder name.
        resume: continue the run already in `output_dir`.
        overwrite: delete what `output_dir` holds and start afresh.
    """
    if output_dir is None:
        if resume:
            raise FtkError("--resume needs --output RUN_DIR naming the run to continue.")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{task}-{stamp}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = Path("runs") / f"{task}-{stamp}-{suffix}"
    else:
        run_dir = Path(output_dir)
    if resume:
        if not (run_dir / "checkpoints" / "last").exists():
            raise FtkError(
                f"Cannot resume: {run_dir} has no checkpoints/last. Start a new run "
                "without --resume, or point --output at an earlier run."
            )
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise FtkError(
                f"Output folder {run_dir} is not empty. Pass --resume to continue that "
                "run, --overwrite to replace it, or choose another --output."
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
