"""Atomic outputs: a folder or file appears whole or not at all, and what a
killed process left half-written is cleaned up by the next write, while a
live writer's staging is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ftk.atomic import (building_dir, remove_stale_staging, replace_dir_atomic,
                        write_bytes_atomic)

HOLD_STAGING = """
import sys, time
from pathlib import Path
from ftk.atomic import staging_dir
print(staging_dir(Path(sys.argv[1])), flush=True)
time.sleep(120)
"""


def test_replace_dir_atomic_swaps_whole_folder_or_restores_it(tmp_path, monkeypatch):
    old, new = tmp_path / "out", tmp_path / "staging"
    for folder, name in ((old, "old.txt"), (new, "new.txt")):
        folder.mkdir()
        (folder / name).write_text(name)
    replace_dir_atomic(new, old)
    assert [p.name for p in old.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # A failed move-in puts the previous folder back.
    missing = tmp_path / "never-written"
    with pytest.raises(OSError):
        replace_dir_atomic(missing, old)
    assert [p.name for p in old.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]



@pytest.mark.skipif(os.name != "posix", reason="staging locks are flock, POSIX only")
def test_a_killed_writers_staging_is_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "export"
    writer = subprocess.Popen([sys.executable, "-c", HOLD_STAGING, str(target)],
                              stdout=subprocess.PIPE, text=True)
    try:
        live = tmp_path / os.path.basename(writer.stdout.readline().strip())
        assert live.name.startswith(".export.tmp-") and live.is_dir()
        with building_dir(target) as staging:
            (staging / "model.txt").write_text("whole")
        assert live.is_dir(), "a staging folder a live process holds was removed"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        assert remove_stale_staging(target) == [live]
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert (target / "model.txt").read_text() == "whole"


@pytest.mark.skipif(os.name != "posix", reason="staging locks are flock, POSIX only")
def test_a_stale_temp_file_goes_with_the_next_write_of_its_target(tmp_path):
    stale = tmp_path / ".metrics.json.tmp-k3j2h1"
    stale.write_text('{"half')
    unrelated = tmp_path / ".metrics.json.backup"
    unrelated.write_text("mine")
    write_bytes_atomic(tmp_path / "metrics.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.json.backup", "metrics.json"]


def test_a_folder_stepped_aside_by_a_killed_swap_comes_back(tmp_path):
    target = tmp_path / "export"
    aside = tmp_path / ".export.old"
    aside.mkdir()
    (aside / "model.txt").write_text("previous")
    with pytest.raises(RuntimeError), building_dir(target):
        raise RuntimeError("the new export failed")
    assert (target / "model.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
