"""Fault tests: a real `ftk run` process is SIGKILLed at points of training,
checkpoint writing and export, or runs out of room to write, then the same
command runs again. The run must finish with the metrics of an uninterrupted
run (within tolerance), and leave no half-written file behind.

A full disk is simulated with a file-size limit (RLIMIT_FSIZE, `ulimit -f`):
a write past it fails with EFBIG as one past a full disk fails with ENOSPC,
and it needs no mount, so it runs wherever the suite does.

The kill points are exact: `tests/faults/pause_at.py` stops the process at a
named point, and the test kills it there. Which epoch, and for the timed kills
how long after it, is drawn from a seeded generator (FTK_FAULT_SEED).
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ftk.rundir import LEFTOVER
from ftk.training.checkpoints import damage
from helpers import fake_task_plugin, tiny_vector_backbone, write_vector_csv

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.name != "posix", reason="SIGKILL and RLIMIT_FSIZE are POSIX")]
PAUSE_AT = Path(__file__).parents[1] / "faults" / "pause_at.py"
EPOCHS = 4
SEED = int(os.environ.get("FTK_FAULT_SEED", "11"))
# The resumed process replays the uninterrupted run's shuffles and restores
# its optimiser, so it ends on the same weights (measured: equal to 1e-5);
# the tiny model has no dropout, whose draws a resumed process makes afresh.
TOLERANCE = 1e-4


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
    result = ftk(setting, run_dir, *extra)
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "metrics.json").read_text())


def ftk(setting: dict, run_dir: Path, *extra: str, file_size_limit: int | None = None,
        command: list[str] | None = None) -> Any:
    """Run the command (by default the setting's `ftk run` into `run_dir`) in a
    process whose files cannot grow past `file_size_limit` bytes."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    command = command or [*setting["command"], "--output", str(run_dir)]
    return subprocess.run([sys.executable, "-m", "ftk.cli", *command, *extra],
                          env=setting["env"], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if file_size_limit is not None else None)


def files_of(run_dir: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}


def kill_at(setting: dict, run_dir: Path, point: str, nth: int, *extra: str,
            after: float = 0.0) -> None:
    """Start the command, SIGKILL it at the NTH time it reaches `point` (for
    "none": `after` seconds past its NTH epoch in history.csv), and reap it."""
    flag = run_dir.with_name(run_dir.name + ".paused")
    process = subprocess.Popen(
        [sys.executable, str(PAUSE_AT), point, str(nth), str(flag), *setting["command"],
         "--output", str(run_dir), *extra],
        env=setting["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        history = run_dir / "history.csv"

        def reached() -> bool:
            if point != "none":
                return flag.exists()
            return history.exists() and len(history.read_text().splitlines()) > nth

        deadline = time.monotonic() + 240
        while not reached():
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
# The timed kill lands within a few epochs of the tiny model (each takes tens
# of milliseconds), so always before the run ends.
DELAY = _draw.uniform(0, 0.03)
POINTS = [
    ("none", 1 + _draw.randrange(EPOCHS - 2)),
    # A manifest digests each of a folder's three files; every epoch writes
    # `last` and, when it improves, `best`: so one of epochs 2 to 4.
    ("checkpoint", 4 + _draw.randrange(7)),
    ("swap", 2 + _draw.randrange(3)),
    ("export", 1),
]


@pytest.mark.parametrize("point, nth", POINTS, ids=[point for point, _ in POINTS])
def test_a_run_killed_at_any_point_resumes_to_the_same_result(setting, tmp_path, point, nth):
    run_dir = tmp_path / "run"
    kill_at(setting, run_dir, point, nth, after=DELAY if point == "none" else 0)
    metrics = finish(setting, run_dir, "--resume")
    assert_whole(run_dir, setting["reference"], metrics)


def test_an_overwrite_killed_in_its_export_leaves_the_old_run_and_no_staging(setting, tmp_path):
    run_dir = tmp_path / "run"
    finish(setting, run_dir)
    before = files_of(run_dir)
    kill_at(setting, run_dir, "export", 1, "--overwrite")
    assert files_of(run_dir) == before
    assert leftovers(run_dir), "the killed process's staging folder is there to clean up"
    metrics = finish(setting, run_dir, "--overwrite")
    assert_whole(run_dir, setting["reference"], metrics)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "run.paused"]


def test_an_overwrite_killed_while_swapping_runs_gets_the_old_run_back(setting, tmp_path):
    run_dir = tmp_path / "run"
    old_metrics = finish(setting, run_dir, "--set", "train.seed=5")
    kill_at(setting, run_dir, "run-swap", 1, "--overwrite")
    assert not run_dir.exists() and (tmp_path / ".run.old").is_dir()
    # The next command puts the old run back and drops the unswapped new one.
    metrics = finish(setting, run_dir, "--resume", "--set", "train.seed=5")
    assert metrics == old_metrics
    assert leftovers(run_dir) == []


# Checkpoints of the tiny model are under 3 kB; its export's variables are not.
EXPORT_DOES_NOT_FIT = 3000


def test_a_run_out_of_room_in_its_export_says_so_and_resumes(setting, tmp_path):
    run_dir = tmp_path / "run"
    result = ftk(setting, run_dir, file_size_limit=EXPORT_DOES_NOT_FIT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Cannot write the run in {run_dir}: a file grew past the file-size limit" \
        in result.stderr
    assert f"continue with --resume --output {run_dir}" in result.stderr
    assert leftovers(run_dir) == [] and not (run_dir / "export").exists()
    metrics = finish(setting, run_dir, "--resume")
    assert_whole(run_dir, setting["reference"], metrics)


def test_an_overwrite_out_of_room_leaves_the_old_run_as_it_was(setting, tmp_path):
    run_dir = tmp_path / "run"
    finish(setting, run_dir)
    before = files_of(run_dir)
    result = ftk(setting, run_dir, "--overwrite", "--set", "train.seed=2",
                 file_size_limit=EXPORT_DOES_NOT_FIT)
    assert result.returncode == 1 and "The earlier run in" in result.stderr
    assert files_of(run_dir) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("limit, message", [
    # No room at all: TensorFlow's import cannot even write its probe file.
    (0, "no room for a temporary file in any temporary folder"),
    # Room for that probe, not for the run's config.yaml.
    (100, "a file grew past the file-size limit"),
])
def test_a_resume_without_room_leaves_the_run_byte_identical(setting, tmp_path, limit, message):
    run_dir = tmp_path / "run"
    finish(setting, run_dir)
    before = files_of(run_dir)
    result = ftk(setting, run_dir, "--resume", "--epochs", str(EPOCHS + 2), file_size_limit=limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr and f"--resume --output {run_dir}" in result.stderr
    assert files_of(run_dir) == before and leftovers(run_dir) == []


def test_an_export_out_of_room_keeps_the_earlier_export(setting, tmp_path):
    run_dir, copy = tmp_path / "run", tmp_path / "copy"
    finish(setting, run_dir)
    export = ["export", str(run_dir), "--output", str(copy)]
    assert ftk(setting, run_dir, command=export).returncode == 0
    before = files_of(copy)
    result = ftk(setting, run_dir, file_size_limit=EXPORT_DOES_NOT_FIT, command=export)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: Out of room: a file grew past the file-size limit writing" in result.stderr
    assert files_of(copy) == before and leftovers(copy) == []
