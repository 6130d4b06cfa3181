"""Helpers the benchmark scripts share: timing commands and child processes,
timing a backbone's forward pass, and reporting a child's figures."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def _run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return elapsed, result


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a command and its stdout; exits with its stderr if it fails."""
    elapsed, result = _run(command, env, cwd)
    return elapsed, result.stdout


def child_result(command: list[str], env: dict[str, str], cwd: Path,
                 log: Path | None = None) -> tuple[dict[str, Any], str]:
    """Run a benchmark child process; the JSON object it printed last (see
    `print_result`) and everything it printed, stdout then stderr.

    With `log`, the child's output is also written there.
    """
    _, result = _run(command, env, cwd)
    printed = result.stdout + result.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(printed, encoding="utf-8")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line), printed
    sys.exit(f"{' '.join(command)} printed no JSON result:\n{result.stdout[-2000:]}")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_result(values: dict[str, Any]) -> None:
    """Print a child's figures, plus its peak memory, as one JSON line, last."""
    print(json.dumps({**values, "peak_rss_mb": peak_rss_mb()}), flush=True)


def text_batch() -> tuple[dict, str, str]:
    """32 texts of 20 tokens, as token ids."""
    import numpy as np
    import tensorflow as tf

    ids = tf.constant(np.random.default_rng(0).integers(1000, 2000, size=(32, 20)), tf.int32)
    inputs = {"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)}
    return inputs, "mean_pooled_output", "32 texts x 20 tokens"


def image_batch(size: int, output: str) -> Callable[[], tuple[object, str, str]]:
    """32 images of `size` x `size` pixels, reading the backbone's `output`."""
    def make() -> tuple[object, str, str]:
        import tensorflow as tf

        return (tf.random.stateless_uniform([32, size, size, 3], [0, 0]), output,
                f"32 images {size}x{size}")

    return make


def forward_seconds_per_batch(encoder: Path, make_batch: Callable, batches: int = 20) -> tuple[float, str]:
    """Mean seconds of one frozen forward pass of the SavedModel `encoder`
    through `hub.KerasLayer` in a tf.function, after one warm-up call; and
    what the batch held."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import tensorflow_hub as hub

    backbone = hub.KerasLayer(str(encoder), trainable=False)
    inputs, key, described = make_batch()
    forward = tf.function(lambda x: backbone(x, training=False)[key])
    forward(inputs)  # trace once
    start = time.perf_counter()
    for _ in range(batches):
        forward(inputs)
    return (time.perf_counter() - start) / batches, described
