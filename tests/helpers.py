"""Running the CLI in-process, as a user would type it."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from ftk.cli import cli


def ftk_cli(*args: Any) -> Any:
    """Invoke `ftk ARGS...`; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def json_out(result: Any) -> Any:
    return json.loads(result.stdout)


def interrupt_after_epoch(monkeypatch: Any, epochs: int) -> None:
    """Make training raise KeyboardInterrupt once `epochs` epochs are checkpointed."""
    from ftk.training.callbacks import RunCheckpointer

    write = RunCheckpointer.on_epoch_end

    def crash(self: Any, epoch: int, logs: Any = None) -> None:
        write(self, epoch, logs)
        if epoch + 1 == epochs:
            monkeypatch.setattr(RunCheckpointer, "on_epoch_end", write)
            raise KeyboardInterrupt

    monkeypatch.setattr(RunCheckpointer, "on_epoch_end", crash)


def optimizer_steps(run_dir: Any, name: str = "optimizer") -> int:
    """Steps taken by an optimiser, read from the run's last checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints/last/ckpt"))
    return int(reader.get_tensor(f"{name}/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
