"""benchmarks/compare.py end to end, on tiny backbones and tiny data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

ROOT = Path(__file__).resolve().parents[2]
# Two of the four cases cover both tasks, the feature cache and a trainable
# backbone; the other two differ only in the settings these two already pass.
CASES = ("text, trainable", "image, frozen")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def vocabulary() -> list[str]:
    """Every word the benchmark's sentences draw from, for a tiny BERT's vocab."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_data
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    lists = [*bench_data.TOPICS.values(), bench_data.NEUTRAL]
    return sorted({word for kinds in lists for words in kinds.values() for word in words})


def table_rows(printed: str, title: str) -> list[list[str]]:
    """The body rows of the Markdown table under `title`, as cells."""
    section = printed.split(f"\n{title}\n", 1)[1].strip().split("\n\n")[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()[2:]]


@pytest.mark.slow  # seven fresh TensorFlow processes: about 3 minutes on 2 cores
def test_compare_prints_every_case_for_both_tools(tmp_path, isolated_home):
    from ftk import testing

    bert = testing.tiny_bert(tmp_path / "bert", words=vocabulary())
    image = testing.tiny_image_backbone(tmp_path / "image", feature_maps=True)
    result = subprocess.run(
        [sys.executable, "benchmarks/compare.py", "--scale", "0.02", "--text-backbone", bert,
         "--text-preprocessor", str(Path(bert) / "preprocessor"), "--image-backbone", image,
         "--cases", "text_trainable,image_frozen,image_ceiling,image_memory"],
        cwd=ROOT, env={**os.environ, "FTK_HOME": str(isolated_home)},
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout

    runs = table_rows(printed, "Runs")
    for case in CASES:
        for tool in ("ftk", "baseline"):
            row = next(r for r in runs if r[0].startswith(case) and r[1] == tool)
            # total, epoch 1, later epochs, examples/s, peak RSS, accuracy
            assert all(NUMBER.match(value) for value in [row[2], *row[4:]]), row
            if tool == "ftk" and "frozen" in case:
                assert NUMBER.match(row[3]), row  # seconds spent caching backbone features

    verdicts = table_rows(printed, "ftk against the baseline")
    assert [next(c for c in CASES if row[0].startswith(c)) for row in verdicts] == list(CASES)
    assert all(NUMBER.match(row[1]) and row[-1] in ("yes", "**no**") for row in verdicts)

    ceiling = table_rows(printed, "Forward-pass ceiling, frozen image case")
    assert re.match(r"[\d.]+ images/s", ceiling[0][1]) and NUMBER.match(ceiling[-1][1])
    memory = table_rows(printed, "Peak memory when streaming a larger training set")
    assert memory[0][1].endswith(" MB") and NUMBER.match(memory[-1][1])
    assert "Whole comparison:" in printed
