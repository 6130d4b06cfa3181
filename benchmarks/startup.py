"""Wall time of the CLI commands that must not import TensorFlow.

Run (from the repository root, with ftk installed):
    python benchmarks/startup.py [REPEATS]

Each command runs REPEATS times (default 7) in a fresh process; it prints a
Markdown table of the median, fastest and slowest, and whether importing the
CLI loaded TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import timed

COMMANDS = (["--help"], ["tasks"], ["plugins"])


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    ftk = shutil.which("ftk") or sys.exit("ftk is not on PATH: install it first.")
    print("| command | median s | fastest s | slowest s |")
    print("| --- | --- | --- | --- |")
    for arguments in COMMANDS:
        times = [timed([ftk, *arguments], dict(os.environ), Path.cwd())[0] for _ in range(repeats)]
        print(f"| `ftk {' '.join(arguments)}` | {statistics.median(times):.2f} | "
              f"{min(times):.2f} | {max(times):.2f} |")
    loaded = subprocess.run([sys.executable, "-c", "import sys, ftk.cli; "
                             "print('tensorflow' in sys.modules)"],
                            check=True, capture_output=True, text=True).stdout.strip()
    print(f"\nTensorFlow imported by `import ftk.cli`: {loaded}")


if __name__ == "__main__":
    main()
