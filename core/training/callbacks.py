"""Callbacks: stop on a non-finite loss, and keep last/best checkpoints."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

from ftk.rundir import HISTORY_FILE, RunDirectory
from ftk.training.checkpoints import write_checkpoint



class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf loss and remembers where."""

    def __init__(self) -> None:
        super().__init__()
        self.where: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class RunCheckpointer(keras.callbacks.Callback):
    """Writes `checkpoints/last` after every epoch and `checkpoints/best` on
    improvement of the monitored value; each atomically, with a `state.json`
    holding the epoch count and best value that `--resume` reads back.

    It also writes `history.csv`, just before `last`, so the history never
    holds an epoch that resuming would train again. Its `epoch_seconds` is the
    wall time from the end of the previous epoch (or the start of the phase) to
    the end of this one: validation and the previous checkpoint writes included.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, run: RunDirectory, monitor: str,
                 lower_is_better: bool, phase: int, guard: NonFiniteLossGuard,
                 done: int = 0, best: float | None = None):
        super().__init__()
        self.checkpoint = checkpoint
        self.run = run
        self.monitor = monitor
        self.phase = phase
        self.guard = guard
        self.best = best
        self.lower_is_better = lower_is_better
        self.rows = [row for row in read_history_rows(run.file(HISTORY_FILE))
                     if int(row["epoch"]) < done]
        self._since: float | None = None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        # Timed from the previous epoch's end, so its checkpoint writes count too.
        seconds, self._since = now - (self._since or now), now
        if self.guard.where is not None:
            return  # never checkpoint weights that produced a non-finite loss
        value = (logs or {}).get(self.monitor)
        improved = value is not None and (
            self.best is None or (value < self.best if self.lower_is_better else value > self.best))
        if improved:
            self.best = float(value)
        state = {"epoch": epoch + 1, "phase": self.phase, "monitor": self.monitor, "best": self.best}
        self.rows.append({"epoch": str(epoch), **{k: repr(float(v)) for k, v in (logs or {}).items()},
                          "epoch_seconds": f"{seconds:.3f}"})
        self.run.write_text(HISTORY_FILE, _csv_text(self.rows))
        self._write("last", state)
        if improved:
            self._write("best", state)

    def _write(self, name: str, state: dict[str, Any]) -> None:
        write_checkpoint(self.run, name, self.checkpoint, state)


def read_history_rows(path: Path) -> list[dict[str, str]]:
    """The rows of history.csv, as strings."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _csv_text(rows: list[dict[str, str]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
