"""Fault tests: a real `ftk run` process is SIGKILLed at points of training,
checkpoint writing and export, then the same command runs again. The run must
finish with the metrics of an uninterrupted run (within tolerance), and leave
no half-written file behind.

The kill points are exact: `tests/faults/pause_at.py` stops the process at a
named point, and the test kills it there. Which epoch, and for the timed kills
how long after it, is drawn from a seeded generator (FTK_FAULT_SEED).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftk.rundir import LEFTOVER
from ftk.training.checkpoints import damage
from helpers import fake_task_plugin, tiny_vector_backbone, write_vector_csv

pytestmark = pytest.mark.e2e
PAUSE_AT = Path(__file__).parents[1] / "faults" / "pause_at.py"
EPOCHS = 4
SEED = int(os.environ.get("FTK_FAULT_SEED", "11"))
# The resumed process draws its later shuffles and dropout afresh, so its
# metrics are close to an uninterrupted run's, not equal (measured: within 2%).
TOLERANCE = 0.06


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("faults")
    plugin = fake_task_plugin(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    command = ["run", "--task", "fake_vectors", "--plugin", plugin,
               "--data", write_vector_csv(folder / "train.csv", 96, seed=0),
               "--test-data", write_vector_csv(folder / "test.csv", 32, seed=1),
               "--backbone", tiny_vector_backbone(folder / "backbone"),
               "--epochs", EPOCHS, "--set", "train.learning_rate=0.05"]
    setting = {"env": env, "command": [str(part) for part in command]}
    setting["reference"] = finish(setting, folder / "reference")
    return setting


def finish(setting: dict, run_dir: Path, *extra: str) -> dict:
    """Run the command to its end; the run's metrics."""
    result = subprocess.run([sys.executable, "-m", "ftk.cli", *setting["command"], "--output",
                             str(run_dir), *extra], env=setting["env"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "metrics.json").read_text())


def kill_at(setting: dict, run_dir: Path, point: str, nth: int, *extra: str,
            after: float = 0.0) -> None:
    """Start the command, SIGKILL it at `point` (or, for "none", `after`
    seconds past the first checkpoint), and reap it."""
    flag = run_dir.with_name(run_dir.name + ".paused")
    process = subprocess.Popen(
        [sys.executable, str(PAUSE_AT), point, str(nth), str(flag), *setting["command"],
         "--output", str(run_dir), *extra],
        env=setting["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        reached = flag if point != "none" else run_dir / "checkpoints" / "last" / "manifest.json"
        deadline = time.monotonic() + 240
        while not reached.exists():
            assert process.poll() is None, f"ended before {point}: {process.stderr.read()}"
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.005)
        time.sleep(after)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the process ended before it was killed"


def leftovers(run_dir: Path) -> list[str]:
    """Half-written names inside the run or beside it."""
    entries = [*run_dir.rglob("*"), *run_dir.parent.iterdir()]
    return [str(path) for path in entries if LEFTOVER.match(path.name)]


def assert_whole(run_dir: Path, reference: dict, metrics: dict) -> None:
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(EPOCHS)]
    for name in ("last", "best"):
        assert damage(run_dir / "checkpoints" / name) is None
    assert leftovers(run_dir) == []
    assert metrics["mae"] == pytest.approx(reference["mae"], rel=TOLERANCE)


# Each point with the epoch (1-based write count) it strikes at, drawn once
# from the seed so that every run of the suite strikes the same places.
_draw = random.Random(SEED)
POINTS = [
    ("none", 1 + _draw.randrange(EPOCHS - 1)),
    # A manifest digests each of a folder's three files; every epoch writes
    # `last` and, when it improves, `best`: so one of epochs 2 to 4.
    ("checkpoint", 4 + _draw.randrange(7)),
    ("swap", 2 + _draw.randrange(3)),
    ("export", 1),
]


@pytest.mark.parametrize("point, nth", POINTS, ids=[point for point, _ in POINTS])
def test_a_run_killed_at_any_point_resumes_to_the_same_result(setting, tmp_path, point, nth):
    run_dir = tmp_path / "run"
    kill_at(setting, run_dir, point, nth, after=_draw.uniform(0, 0.5) if point == "none" else 0)
    metrics = finish(setting, run_dir, "--resume")
    assert_whole(run_dir, setting["reference"], metrics)


def test_an_overwrite_killed_in_its_export_leaves_the_old_run_and_no_staging(setting, tmp_path):
    run_dir = tmp_path / "run"
    finish(setting, run_dir)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    kill_at(setting, run_dir, "export", 1, "--overwrite")
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
    assert leftovers(run_dir), "the killed process's staging folder is there to clean up"
    metrics = finish(setting, run_dir, "--overwrite")
    assert_whole(run_dir, setting["reference"], metrics)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "run.paused"]
