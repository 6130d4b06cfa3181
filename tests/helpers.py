"""What several test modules share: running the CLI in-process as a user
would type it, and builders of small data sets and run inspections.
Test modules import these; they never import one another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (230, 220, 30), "cyan": (30, 210, 220), "magenta": (210, 30, 200)}
# Every format and mode the reader accepts, in one folder: (suffix, PIL mode).
FORMATS = [(".png", "RGB"), (".jpg", "RGB"), (".png", "L"), (".png", "RGBA"), (".bmp", "RGB"),
           (".gif", "P"), (".jpeg", "L")]


def colour_image(colour: Any, rng: Any, size: tuple[int, int] = (40, 32)) -> Image.Image:
    noise = rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))


def write_colour_folder(root: Path, per_class: int, seed: int, classes=COLOURS) -> Path:
    """One subfolder per colour; sizes, formats and modes vary inside each."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            suffix, mode = FORMATS[index % len(FORMATS)]
            size = (int(rng.integers(24, 64)), int(rng.integers(24, 64)))
            image = colour_image(COLOURS.get(name, (128, 0, 128)), rng, size).convert(mode)
            image.save(root / name / f"{name}_{index}{suffix}")
    return root


def backbone_weights(run_dir, checkpoint="last"):
    """Backbone variables in one of the run's checkpoints, by variable name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / checkpoint / "ckpt"))
    prefix = "model/backbone/"
    # keys end in "<variable name>/.ATTRIBUTES/VARIABLE_VALUE", "/" escaped as ".S"
    return {key.split("/")[-3].replace(".S", "/").removesuffix(":0"): reader.get_tensor(key)
            for key in reader.get_variable_to_shape_map()
            if key.startswith(prefix) and "optimizer" not in key}
