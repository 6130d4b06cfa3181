"""Checkpoint folders: written whole, with a manifest written last, and
verified before a run resumes from them.

Each of `checkpoints/last` and `checkpoints/best` holds TensorFlow's checkpoint
files, `state.json` (epochs done, phase, monitor, best value) and
`manifest.json`, the size and SHA-256 of every other file. A folder whose
files do not match its manifest (a truncated copy, a disk error, a hand edit)
is damaged; resuming then falls back to `best` when that is sound, or stops
with an error naming the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ftk.errors import FtkError

CHECKPOINT_PREFIX = "ckpt"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
log = logging.getLogger(__name__)


def write_checkpoint(run: Any, name: str, checkpoint: Any, state: dict[str, Any]) -> None:
    """Write `checkpoints/NAME` atomically: the checkpoint, its state, then the manifest."""
    with run.building(f"checkpoints/{name}") as staging:
        checkpoint.write(str(staging / CHECKPOINT_PREFIX))
        (staging / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        manifest = {path.name: {"size": path.stat().st_size, "sha256": _digest(path)}
                    for path in sorted(staging.iterdir()) if path.is_file()}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder, or None when it is sound.

    A folder from before manifests were written is checked for its state only.
    """
    folder = Path(folder)
    state = folder / STATE_FILE
    if not state.is_file():
        return f"{state} is missing"
    try:
        loaded = json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        return f"{state} is not valid JSON ({error})"
    if not isinstance(loaded, dict) or not isinstance(loaded.get("epoch"), int):
        return f"{state} does not record the epochs done"
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        return f"{manifest_path} is not valid JSON ({error})"
    if not isinstance(manifest, dict) or not all(
            isinstance(entry, dict) and {"size", "sha256"} <= set(entry) for entry in manifest.values()):
        return f"{manifest_path} does not list files with their size and sha256"
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != expected["size"] or _digest(path) != expected["sha256"]:
            return f"{path} does not match {MANIFEST_FILE} (truncated or changed)"
    return None


def resume_point(checkpoints: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint folder to resume from, and its state: `last`, or `best`
    when `last` is damaged and `best` is sound.

    Raises:
        FtkError: neither is sound; naming what is damaged and what to do.
    """
    last, best = checkpoints / "last", checkpoints / "best"
    problem = damage(last)
    if problem is None:
        return last, read_state(last)
    if best.is_dir() and damage(best) is None:
        state = read_state(best)
        log.warning(f"Cannot resume from {last}: {problem}. Resuming from {best} "
                    f"(epoch {state['epoch']}) instead.")
        return best, state
    raise FtkError(f"Cannot resume: {problem}, and there is no sound checkpoints/best to fall "
                   "back to. Start a new run (--overwrite, or another --output).")


def read_state(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()
