"""Runs on tf.distribute: mirrored replicas in one process, and multi-worker
jobs started by `ftk launch` in a loopback-only network namespace.

TensorFlow's gRPC servers listen on every interface, so every job here runs
under `ftk launch --private-network`, where only 127.0.0.1 exists; the tests
skip (saying why) where this machine cannot make a network namespace.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_topic_csv

# Dropout draws different masks per replica; without it a job computes what one device does.
SETTINGS = ["--set", "head.dropout=0", "--set", "backbone.trainable=true",
            "--set", "train.seed=3", "--batch-size", "8"]
LOSS_TOLERANCE = 1e-5


def _can_make_network_namespace() -> str | None:
    probe = subprocess.run([sys.executable, "-c",
                            "from ftk.launch import enter_private_network as e; e()"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1]


NO_NAMESPACE = _can_make_network_namespace() if sys.platform.startswith("linux") else "not Linux"
needs_namespace = pytest.mark.skipif(NO_NAMESPACE is not None,
                                     reason=f"no private network namespace: {NO_NAMESPACE}")


@pytest.fixture(scope="module")
def topics(tmp_path_factory) -> Path:
    return write_topic_csv(tmp_path_factory.mktemp("distribute") / "topics.csv", count=20)


def _history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def _launch(workers: int, command: list[str], tmp: Path, *, timeout: float = 150,
            kill: tuple[int, str] | None = None) -> tuple[int, str]:
    """`ftk launch --private-network` in a process of its own: the exit code
    and the output. `kill=(worker, line)` SIGKILLs that worker once a line of
    the job's output starts with `line`."""
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp)}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "ftk.cli", "launch", "--workers", str(workers), "--private-network",
         "--timeout", str(timeout), "--", *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, pids = [], {}
    try:
        for line in launcher.stdout:
            lines.append(line)
            if found := re.match(r"\[launch\] worker (\d+): pid (\d+)", line):
                pids[int(found[1])] = int(found[2])
            if kill and line.startswith(kill[1]):
                os.kill(pids[kill[0]], signal.SIGKILL)
                kill = None
        code = launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    for pid in pids.values():  # the launcher stops its workers, whatever happened
        assert not _alive(pid), f"worker pid {pid} outlived the launcher"
    return code, "".join(lines)


def _alive(pid: int) -> bool:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def _run_command(data: Path, embedding: str, output: Path, *extra: str) -> list[str]:
    return ["ftk", "run", "--task", "text_classification", "--data", str(data),
            "--backbone", embedding, "--output", str(output), *SETTINGS, *extra]


@pytest.fixture(scope="module")
def one_device(topics, embedding, tmp_path_factory) -> Path:
    from helpers import ftk_cli

    output = tmp_path_factory.mktemp("one_device") / "run"
    result = ftk_cli(*_run_command(topics, embedding, output, "--epochs", "3",
                                   "--distribute", "none")[1:])
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="module")
def records(topics, tmp_path_factory) -> Path:
    """The topics as four TFRecord files: workers stream them."""
    import ftk

    folder = tmp_path_factory.mktemp("records") / "topics"
    ftk.to_tfrecord("text_classification", topics, folder, shards=4)
    return folder


@pytest.mark.e2e
def test_mirrored_replicas_on_two_cpus_compute_what_one_device_does(topics, embedding, tmp_path):
    """Two logical CPU devices in one process: the mirrored run's losses and
    metrics equal the single-device run's on the same global batch."""
    script = f"""
import json, logging, sys
logging.basicConfig(level=logging.INFO)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import ftk
results = {{}}
for kind in ("none", "mirrored"):
    result = ftk.run(task="text_classification", data={str(topics)!r}, backbone={embedding!r},
                     epochs=2, batch_size=8, output_dir={str(tmp_path)!r} + "/" + kind,
                     distribute=kind, set={{"head.dropout": 0.0, "backbone.trainable": True}})
    results[kind] = {{"loss": result.history["loss"], "val_loss": result.history["val_loss"],
                     "accuracy": result.metrics["accuracy"]}}
print(json.dumps(results))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mirrored strategy, 2 replica(s) in sync" in done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("loss", "val_loss"):
        assert results["mirrored"][key] == pytest.approx(results["none"][key], abs=LOSS_TOLERANCE)
    assert results["mirrored"]["accuracy"] == results["none"]["accuracy"]


@pytest.fixture(scope="module")
def two_workers(topics, embedding, tmp_path_factory) -> tuple[Path, str, Path]:
    root = tmp_path_factory.mktemp("two_workers")
    code, output = _launch(2, _run_command(topics, embedding, root / "run", "--epochs", "3"),
                           root / "tmp")
    assert code == 0, output[-4000:]
    return root / "run", output, root / "tmp"


@pytest.mark.e2e
@needs_namespace
def test_two_workers_train_as_one_device_and_only_the_chief_writes(two_workers, one_device):
    run, output, scratch = two_workers
    assert "[worker 1] Distribution: multi_worker strategy, worker 1 of 2" in output
    assert "[worker 0] Metrics (validation)" in output
    losses = [row["loss"] for row in _history(run)]
    assert losses == pytest.approx([row["loss"] for row in _history(one_device)], abs=LOSS_TOLERANCE)
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (one_device / "metrics.json").read_text())
    written = sorted(p.name for p in run.iterdir())
    assert written == sorted(p.name for p in one_device.iterdir())
    # The other worker's checkpoints and export went to its own temporary folders, now gone.
    assert list(scratch.iterdir()) == []


@pytest.fixture(scope="module")
def two_workers_streaming(records, embedding, tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("two_workers_streaming")
    code, output = _launch(2, _run_command(records, embedding, root / "run", "--epochs", "3"),
                           root / "tmp")
    assert code == 0, output[-4000:]
    return root / "run", output


@pytest.mark.e2e
@needs_namespace
def test_two_workers_stream_records_split_by_file(two_workers_streaming):
    run, output = two_workers_streaming
    assert "[worker 0] Worker 0 streams 2 of the 4 training files" in output
    assert "[worker 1] Worker 1 streams 2 of the 4 training files" in output
    assert [row["epoch"] for row in _history(run)] == [0, 1, 2]
    assert json.loads((run / "metrics.json").read_text())["num_examples"] == 4


@pytest.mark.e2e
@needs_namespace
def test_a_killed_worker_is_survived_by_resuming(topics, embedding, two_workers, tmp_path):
    """SIGKILL worker 1 after epoch 2, then start the same job with --resume:
    every worker continues from the last checkpoint and the run finishes with
    the uninterrupted run's result."""
    command = _run_command(topics, embedding, tmp_path / "run", "--epochs", "3")
    # Once the chief has logged epoch 2, it has checkpointed it.
    code, output = _launch(2, command, tmp_path / "tmp", kill=(1, "[worker 0] Epoch 2/3"))
    assert code != 0
    assert "[launch] worker 1 exited with -9; stopping the others." in output
    code, output = _launch(2, [*command, "--resume"], tmp_path / "tmp")
    assert code == 0, output[-4000:]
    assert "[worker 1] Resuming from epoch 2 of 3." in output
    assert "[worker 0] Resuming from epoch 2 of 3." in output
    resumed, whole = _history(tmp_path / "run"), _history(two_workers[0])
    assert [row["epoch"] for row in resumed] == [0, 1, 2]
    assert [row["loss"] for row in resumed[:2]] == pytest.approx(
        [row["loss"] for row in whole[:2]], abs=LOSS_TOLERANCE)
    # Resuming restarts the data pipeline, so the last epoch's batches differ a little.
    assert resumed[-1]["loss"] == pytest.approx(whole[-1]["loss"], abs=0.02)
    assert resumed[-1]["val_accuracy"] == pytest.approx(whole[-1]["val_accuracy"], abs=0.1)


@pytest.mark.e2e
@needs_namespace
def test_workers_that_disagree_stop_with_an_error_naming_the_difference(topics, embedding,
                                                                         tmp_path):
    """Worker 1 asks for other epochs than the chief: both stop, neither hangs."""
    command = _run_command(topics, embedding, tmp_path / "run", "--distribute", "multi_worker")
    script = ("import json, os, sys; from ftk.cli import main; "
              "index = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
              f"sys.argv = {command!r} + ['--epochs', str(2 + index)]; main()")
    code, output = _launch(2, [sys.executable, "-c", script], tmp_path / "tmp", timeout=90)
    assert code == 1
    assert ("The workers of this job disagree with the chief (worker 0) on: worker 1: "
            "config section train.") in output
    assert not (tmp_path / "run" / "history.csv").exists()


@pytest.mark.e2e
@needs_namespace
def test_a_worker_whose_peer_never_starts_times_out_naming_tf_config(topics, embedding, tmp_path):
    command = _run_command(topics, embedding, tmp_path / "run", "--epochs", "1",
                           "--set", "train.connect_timeout=3")
    script = ("import json, os, sys; from ftk.cli import main; from ftk.launch import free_ports; "
              "peer = free_ports(1)[0]; "
              "os.environ['TF_CONFIG'] = json.dumps({'cluster': {'worker': "
              "[json.loads(os.environ['TF_CONFIG'])['cluster']['worker'][0], f'127.0.0.1:{peer}']}, "
              "'task': {'type': 'worker', 'index': 0}}); "
              f"sys.argv = {command!r}; main()")
    started = time.monotonic()
    code, output = _launch(1, [sys.executable, "-c", script], tmp_path / "tmp", timeout=90)
    # The job's leader waits inside TensorFlow; it is killed after saying why.
    assert code == 128 + signal.SIGKILL, output[-3000:]
    assert time.monotonic() - started < 60
    assert re.search(r"Worker 0 \(127\.0\.0\.1:\d+\) could not reach the other workers of "
                     r"TF_CONFIG \(127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+\) within 3 s", output)


def test_launch_stops_every_worker_when_one_fails(tmp_path):
    """No TensorFlow: worker 1 fails at once, the chief is stopped, and the
    launcher exits with the failing worker's code."""
    from helpers import ftk_cli

    script = ("import json, os, sys, time; "
              "index = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
              "print('hello from', index, flush=True); "
              "time.sleep(60) if index == 0 else sys.exit(3)")
    started = time.monotonic()
    result = ftk_cli("launch", "--workers", "2", "--", sys.executable, "-c", script)
    assert result.exit_code == 3
    assert time.monotonic() - started < 30
    assert "[worker 0] hello from 0" in result.output
    assert "[worker 1] hello from 1" in result.output
    assert "[launch] worker 1 exited with 3; stopping the others." in result.output
    pids = [int(p) for p in re.findall(r"pid (\d+)", result.output)]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


def test_launch_gives_each_worker_its_place_in_tf_config():
    from ftk.launch import tf_config

    configs = [json.loads(tf_config(["127.0.0.1:1", "127.0.0.1:2"], i)) for i in range(2)]
    assert configs[1] == {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                          "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("raw, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 4}}',
     "must name a job of its cluster (worker) and an index within it"),
    ('{"cluster": {"worker": "a:1"}}', '"cluster" must map job names to lists'),
])
def test_a_bad_tf_config_is_named(raw, message):
    from ftk.distribute import read_cluster
    from ftk.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        read_cluster({"TF_CONFIG": raw})


def test_the_chief_is_the_chief_task_else_worker_0():
    from ftk.distribute import read_cluster

    spec = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    chief = read_cluster({"TF_CONFIG": json.dumps({"cluster": spec, "task": {"type": "chief"}})})
    worker = read_cluster({"TF_CONFIG": json.dumps(
        {"cluster": spec, "task": {"type": "worker", "index": 1}})})
    assert (chief.is_chief, chief.rank, worker.is_chief, worker.rank) == (True, 0, False, 2)
    alone = read_cluster({"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}})})
    assert alone.is_chief and alone.workers == ["w:1", "w:2"]


def test_a_global_batch_that_does_not_split_over_the_replicas_is_refused():
    from types import SimpleNamespace

    from ftk.distribute import Distribution
    from ftk.errors import ConfigError

    two = Distribution(SimpleNamespace(num_replicas_in_sync=2), "mirrored")
    two.check_batch(8)
    with pytest.raises(ConfigError, match=re.escape(
            "train.batch_size (7) is the global batch and must divide evenly over the 2 "
            "replicas of the mirrored strategy. Use a multiple of 2.")):
        two.check_batch(7)
