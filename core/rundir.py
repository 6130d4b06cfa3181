"""The run directory: one object owns every path of a run and every write into it.

Everything a run leaves on disk goes through `RunDirectory`: the config, the
task's target files (`labels.txt`), checkpoints, history, TensorBoard logs,
the export, metrics, plots and a task's reports. Each write is atomic (see
`ftk.atomic`). A run directory built with `writes=False` writes nothing, and
its staged folders vanish after use: the switch that lets only one process of
a multi-process job write the run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ftk.atomic import (building_dir, release, remove_stale_staging, replace_dir_atomic,
                        restore_stepped_aside, staging_dir, write_bytes_atomic)
from ftk.errors import FtkError

log = logging.getLogger(__name__)

# Every run directory holds this file from its first moment: `--overwrite`
# replaces only folders that carry it.
RUN_MARKER = ".ftk-run"
CONFIG_FILE = "config.yaml"
# What `ftk.atomic` leaves behind only when its process is killed mid-write.
LEFTOVER = re.compile(r"^\..+\.(?:(?:tmp|new)-\w+|old|[a-z0-9_]{8})$")
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"


class RunDirectory:
    """The folder of one run and the only writer into it.

    Args:
        path: the folder (it exists, or is created on the first write).
        writes: False for a process that must leave the folder alone.

    Example:
        ```python
        run.write_text("confusion_matrix.csv", table)
        run.write_bytes("plots/confusion_matrix.png", png)
        with run.building("export") as staging:
            tf.saved_model.save(module, str(staging))
        ```
    """

    def __init__(self, path: str | Path, *, writes: bool = True, replaces: Path | None = None):
        self.path = Path(path)
        self.writes = writes
        # An --overwrite run is built beside the run it replaces (see `finish`).
        self.replaces = replaces
        # For --resume: the checkpoint folder to continue from and its state.
        self.resume_from: tuple[Path, dict[str, Any]] | None = None

    @property
    def final_path(self) -> Path:
        """Where the run lives once finished."""
        return self.replaces or self.path

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    @classmethod
    def create(cls, output_dir: str | Path | None, task: str, *, resume: bool,
               overwrite: bool) -> "RunDirectory":
        """The run directory for `ftk run`, refusing to mix a new run into an old one.

        Args:
            output_dir: `--output`; None means `runs/<task>-<timestamp>`.
            task: the task name, for the default folder name.
            resume: continue the run already in `output_dir`.
            overwrite: replace the earlier run in `output_dir`. The new run is
                built in a hidden folder beside it and takes its place only when
                it has finished (`finish`); until then, and if it fails, the
                earlier run stays as it was. Only a folder holding
                `RUN_MARKER` is replaced.
        """
        if output_dir is None:
            if resume:
                raise FtkError("--resume needs --output RUN_DIR naming the run to continue.")
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / f"{task}-{stamp}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = Path("runs") / f"{task}-{stamp}-{suffix}"
        else:
            path = Path(output_dir)
            # An --overwrite killed between the two renames of its final swap
            # left the earlier run stepped aside and the new one staged: the
            # earlier run comes back, and the unswapped new one goes.
            restore_stepped_aside(path.resolve())
            remove_stale_staging(path.resolve())
        run = cls(path)
        if resume:
            from ftk.training.checkpoints import resume_point

            if not run.checkpoints.is_dir():
                raise FtkError(
                    f"Cannot resume: {path} has no checkpoints. Start a new run "
                    "without --resume, or point --output at an earlier run."
                )
            run.restore_stepped_aside()
            # Verified before anything is read or written, so a damaged run stays as it is.
            run.resume_from = resume_point(run.checkpoints)
            run.remove_leftovers()
            return run
        if path.exists() and not path.is_dir():
            raise FtkError(f"--output {path} is a file; choose a folder for the run.")
        # A run that stopped before writing anything left only its marker: a
        # rerun with the same --output may use the folder without --overwrite.
        if path.exists() and any(p.name != RUN_MARKER for p in path.iterdir()):
            if not overwrite:
                raise FtkError(
                    f"Output folder {path} is not empty. Pass --resume to continue that "
                    "run, --overwrite to replace it, or choose another --output."
                )
            if not (path / RUN_MARKER).is_file():
                raise FtkError(
                    f"Output folder {path} is not an ftk run directory (it has no "
                    f"{RUN_MARKER}), so --overwrite will not replace it. Choose another "
                    "--output, or empty the folder yourself."
                )
            run = cls(staging_dir(path.resolve()), replaces=path)
        else:
            path.mkdir(parents=True, exist_ok=True)
        run.write_json(RUN_MARKER, {"task": task})
        return run

    @classmethod
    def for_worker(cls, output_dir: str | Path, *, resume: bool) -> "RunDirectory":
        """The run as a worker other than the chief sees it: the chief's folder,
        read to resume from, never written."""
        run = cls(output_dir, writes=False)
        if resume:
            from ftk.training.checkpoints import resume_point

            if not run.checkpoints.is_dir():
                raise FtkError(
                    f"Cannot resume: this worker sees no checkpoints in {run.path}. Every "
                    "worker must see the chief's run directory (a volume they share).")
            run.resume_from = resume_point(run.checkpoints)
        return run

    def restore_stepped_aside(self) -> None:
        """A process killed while swapping in a checkpoint folder may have left
        the previous one stepped aside (`.last.old`) and none in its place:
        put it back, so resuming continues from it."""
        for name in ("last", "best"):
            restore_stepped_aside(self.checkpoints / name)

    def remove_leftovers(self) -> list[Path]:
        """Delete what a killed process left half-written in the run: staging
        folders (`.NAME.tmp-*`), folders stepped aside (`.NAME.old`) and temp
        files (`.NAME.xxxxxxxx`). Only one process writes a run, so none of
        them can still be in use when it starts again."""
        removed = []
        for folder in (self.path, self.checkpoints):
            for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
                if LEFTOVER.match(entry.name):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed.append(entry)
        if removed:
            log.info(f"Removed {len(removed)} half-written leftover(s) of an interrupted run "
                     f"in {self.path}.")
        return removed

    def finish(self) -> None:
        """Move an --overwrite run into the place of the run it replaces."""
        if self.replaces is not None and self.writes:
            replace_dir_atomic(self.path, self.replaces.resolve())
            release(self.path)
            self.path, self.replaces = self.replaces, None

    def abandon(self) -> None:
        """Drop an unfinished --overwrite run; the run it would replace stays."""
        if self.replaces is not None and self.writes:
            shutil.rmtree(self.path, ignore_errors=True)
            release(self.path)

    # Paths. Folders other writers fill (TensorBoard, tf.data snapshots) are
    # handed out as paths; files are written through the methods below.
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def cache(self) -> Path:
        """Scratch space for this run's feature cache; removed after training.
        A process that does not write the run keeps its own outside it."""
        if not self.writes:
            return Path(tempfile.gettempdir()) / f"ftk-cache-{os.getpid()}"
        return self.path / "cache"

    def file(self, relative: str) -> Path:
        """The path of `relative` inside the run (for reading)."""
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ValueError(f"A run file is a relative path inside the run. Received: {relative!r}")
        return self.path.joinpath(*parts)

    def read_json(self, relative: str) -> Any:
        return json.loads(self.file(relative).read_text(encoding="utf-8"))

    # Writes.
    def write_bytes(self, relative: str, data: bytes) -> Path:
        target = self.file(relative)
        if self.writes:
            write_bytes_atomic(target, data)
        return target

    def write_text(self, relative: str, text: str) -> Path:
        return self.write_bytes(relative, text.encode("utf-8"))

    def write_json(self, relative: str, data: Any) -> Path:
        return self.write_text(relative, json.dumps(data, indent=2) + "\n")

    @contextmanager
    def building(self, relative: str) -> Iterator[Path]:
        """A staging folder that replaces the run's folder `relative` when the
        block ends without error (a process that does not write gets a
        temporary folder, removed after)."""
        if not self.writes:
            with tempfile.TemporaryDirectory(prefix="ftk-unwritten-") as scratch:
                yield Path(scratch)
            return
        with building_dir(self.file(relative)) as staging:
            yield staging
