"""Run `ftk ARGS...`, stopping for good at one point of the run so that a test
can SIGKILL the process exactly there.

    python pause_at.py POINT NTH FLAG_FILE ARGS...

POINT is where to stop, on its NTH time (counting from 1); FLAG_FILE is
written when the process reaches it. Points:
    none        never (the test kills at a time of its choosing)
    checkpoint  inside a checkpoint write: TF's files staged, manifest not yet
    swap        between the two renames that swap a checkpoint folder in
    run-swap    between the two renames that swap an --overwrite run in
    export      inside the export: the SavedModel staged, ftk.json not yet
"""

from __future__ import annotations

import pathlib
import sys
import time

point, nth, flag = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
calls = 0


def reached() -> bool:
    global calls
    calls += 1
    return calls == nth


def pause() -> None:
    flag.write_text("paused")
    while True:
        time.sleep(1)


def pausing_after(original):
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if reached():
            pause()
        return result
    return wrapper


if point == "checkpoint":
    from ftk.training import checkpoints

    checkpoints._digest = pausing_after(checkpoints._digest)
elif point in ("swap", "run-swap"):
    original_rename = pathlib.Path.rename
    checkpoints = (".last.old", ".best.old")

    def rename(self, target):
        moved = original_rename(self, target)
        name = pathlib.Path(target).name
        if name.endswith(".old") and (name in checkpoints) == (point == "swap") and reached():
            pause()
        return moved

    pathlib.Path.rename = rename
elif point == "export":
    import tensorflow as tf

    tf.saved_model.save = pausing_after(tf.saved_model.save)
elif point != "none":
    raise SystemExit(f"unknown point {point}")

from ftk.cli import main  # noqa: E402

sys.argv = ["ftk", *sys.argv[4:]]
main()
