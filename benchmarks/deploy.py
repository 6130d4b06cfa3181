"""What each TFLite quantisation mode costs and loses, on the quickstart runs.

Run (from the repository root, with ftk installed):
    python benchmarks/deploy.py                        # every built-in task, every mode
    python benchmarks/deploy.py text_classification --modes none,int8

For each task it runs the quickstart (`ftk run --task TASK`, the default
backbone on the built-in demo data) in a temp folder with its own FTK_HOME,
then `ftk export RUN --format tflite --quantize MODE` for each mode, and prints
the tables `ftk export` wrote beside each file (format, size, latency per
example, the task's main metric and its change from the SavedModel on the
run's test split), one section per task, for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("text_classification", "image_classification", "detection")
MODES = ("none", "dynamic", "float16", "int8")


def ftk(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "ftk.cli", *args], env=env, cwd=cwd,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ftk {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def benchmark(task: str, modes: list[str], workdir: Path) -> None:
    env = {**os.environ, "FTK_HOME": str(workdir / "home")}
    start = time.perf_counter()
    printed = ftk("run", "--task", task, env=env, cwd=workdir)
    run_dir = workdir / printed.split("Run directory: ")[1].splitlines()[0]
    print(f"### {task}\n\nQuickstart run: {time.perf_counter() - start:.0f} s.\n")
    rows: list[str] = []
    notes: list[str] = []
    for mode in modes:
        ftk("export", str(run_dir), "--format", "tflite", "--quantize", mode, env=env, cwd=workdir)
        name = "model.tflite" if mode == "none" else f"model-{mode}.tflite"
        table = (run_dir / f"{name}.md").read_text().splitlines()
        if not rows:
            print(table[0] + "\n")
            rows = table[2:5]  # header, rule, SavedModel row
        row = next(index for index, line in enumerate(table) if line.startswith("| TFLite"))
        rows.append(table[row])
        # What the table says below its rows (which ops an int8 file keeps float).
        notes += [f"{mode}: {line}" for line in table[row + 1:] if line.strip()]
    print("\n".join(rows) + "\n", flush=True)
    if notes:
        print("\n".join(notes) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", metavar="TASK",
                        help=f"tasks to run (default: all of {', '.join(TASKS)})")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    args = parser.parse_args()
    tasks = args.tasks or list(TASKS)
    if sorted(set(tasks) - set(TASKS)):
        parser.error(f"Tasks are {', '.join(TASKS)}. Received: {', '.join(tasks)}")
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes takes {', '.join(MODES)}. Received: {', '.join(unknown)}")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}\n")
    for task in tasks:
        with tempfile.TemporaryDirectory() as scratch:
            benchmark(task, modes, Path(scratch))


if __name__ == "__main__":
    main()
