"""Training throughput of one text_classification run under each tf.distribute
setup ftk offers on one machine: one device, MirroredStrategy over two logical
CPU devices in one process, and `ftk launch` jobs of one and of two workers.

Run (from the repository root, with ftk installed; as root, or where
unprivileged user namespaces are allowed, since the jobs use --private-network):
    python benchmarks/distribute.py                            # ~2000 examples, 3 epochs
    python benchmarks/distribute.py --examples 200 --epochs 2  # smoke run, a few minutes
    python benchmarks/distribute.py --backbone "$(ftk backbones pull minilm-l6)"

Every setup trains the same seeded topic CSV (benchmarks/bench_data.py), with
the same global batch, epochs and seed, a trainable backbone (so the feature
cache does not apply) and no head dropout. Dropout draws its own mask on each
replica, so the final training losses agree to float rounding only where the
backbone has none either: the default backbone, a tiny random BERT built
offline without dropout. --backbone names a Hub-format folder holding encoder/
and preprocessor/ instead (real BERTs keep their dropout, so the 2-replica
losses differ a little): `ftk backbones pull minilm-l6` pulls one into
$FTK_HOME/backbones/minilm-l6 (default ~/.cache/ftk/backbones/minilm-l6) and
prints that folder; pull it first, since the workers' private network reaches
nothing outside the machine.

Throughput is examples per second over the epochs after the first (which
traces the model), from the `epoch_seconds` column of the run's history.csv.
There is no validation split, so an epoch's seconds are its training steps
plus the checkpoint ftk writes after each epoch. On a 2-core machine the
replicas share the same two cores: expect no speed-up there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_data import write_topic_csv

FTK = [sys.executable, "-m", "ftk.cli"]
SETUPS = {  # name: what the table calls it
    "none": "one device (`--distribute none`)",
    "mirrored": "MirroredStrategy, 2 logical CPUs, one process",
    "one_worker": "`ftk launch --workers 1`, multi_worker",
    "two_workers": "`ftk launch --workers 2`, multi_worker",
}
SETTINGS = {
    "backbone.trainable": True,
    "head.dropout": 0.0,
    # No validation: the epoch times are then training time.
    "data.validation_split": 0.0,
}
# Wider than ftk.testing's default (32) so a step does some matrix work; the
# default run still takes minutes on 2 cores.
TINY_BERT = {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 512}

# Logical devices can only be set before TensorFlow starts, hence a process of
# its own for the mirrored run.
MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import ftk
from ftk.log import configure_cli_logging
configure_cli_logging()  # ftk's log names the strategy and its replicas
ftk.run(**json.loads(sys.argv[1]), distribute="mirrored")
"""
REPLICAS = re.compile(r"Distribution: .*?(\d+) replica\(s\) in sync")


def run_args(spec: dict) -> list[str]:
    """`ftk run`'s flags for an `ftk.run` spec."""
    args = ["run", "--task", spec["task"], "--data", spec["data"], "--backbone", spec["backbone"],
            "--epochs", str(spec["epochs"]), "--batch-size", str(spec["batch_size"]),
            "--output", spec["output_dir"], "--overwrite"]
    for key, value in spec["set"].items():
        args += ["--set", f"{key}={json.dumps(value)}"]  # JSON scalars read as YAML
    return args


def command(setup: str, spec: dict, timeout: float) -> list[str]:
    if setup == "none":
        return [*FTK, *run_args(spec), "--distribute", "none"]
    if setup == "mirrored":
        return [sys.executable, "-c", MIRRORED, json.dumps(spec)]
    workers = {"one_worker": 1, "two_workers": 2}[setup]
    return [*FTK, "launch", "--workers", str(workers), "--private-network", "--timeout",
            str(timeout), "--", "ftk", *run_args(spec), "--distribute", "multi_worker"]


def run_setup(setup: str, spec: dict, examples: int, env: dict[str, str], timeout: float,
              logs: Path) -> dict:
    """Run one setup; its replicas, throughput, last training loss and wall time."""
    start = time.perf_counter()
    done = subprocess.run(command(setup, spec, timeout), env=env, capture_output=True,
                          text=True, timeout=timeout + 60)
    wall = time.perf_counter() - start
    printed = done.stdout + done.stderr
    (logs / f"{setup}.log").write_text(printed, encoding="utf-8")
    if done.returncode != 0:
        sys.exit(f"{setup} failed (exit code {done.returncode}); its log:\n{printed[-3000:]}")
    with open(Path(spec["output_dir"]) / "history.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    later = [float(row["epoch_seconds"]) for row in rows[1:]]
    found = REPLICAS.search(printed)
    return {"replicas": int(found[1]) if found else 1,  # `none` logs "one device"
            "examples_per_second": examples * len(later) / sum(later),
            "final_loss": float(rows[-1]["loss"]), "wall_seconds": wall}


def vocabulary(data: Path) -> list[str]:
    """The words of the data, for the tiny BERT's vocab (no [UNK] tokens)."""
    return sorted(set(re.findall(r"[a-z]+", data.read_text(encoding="utf-8").lower())))


def tiny_bert(folder: Path, words: list[str]) -> str:
    """ftk.testing's tiny random BERT, but without dropout: a trainable
    backbone trains in training mode, where dropout draws its own mask on each
    replica, and the setups' losses would no longer match."""
    import ftk
    from ftk import testing

    checkpoint = testing.tiny_bert_checkpoint(folder.with_name(folder.name + "-checkpoint"),
                                              words=words, **TINY_BERT)
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(ftk.convert_backbone(checkpoint, folder))


def print_report(results: dict[str, dict], examples: int, spec: dict) -> None:
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"\ntext_classification, {examples} examples, {spec['epochs']} epochs, "
          f"global batch {spec['batch_size']}, trainable backbone {spec['backbone']}\n")
    print("| setup | replicas | train examples/s (epochs 2+) | speed-up vs one device "
          "| final training loss | process wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    one = results["none"]["examples_per_second"]
    for setup, result in results.items():
        result["speedup"] = result["examples_per_second"] / one
        print(f"| {SETUPS[setup]} | {result['replicas']} | {result['examples_per_second']:.1f} "
              f"| {result['speedup']:.2f}x | {result['final_loss']:.6f} "
              f"| {result['wall_seconds']:.0f} |")
    print(json.dumps({"examples": examples, "epochs": spec["epochs"],
                      "batch_size": spec["batch_size"], "backbone": spec["backbone"],
                      "setups": results}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--examples", type=int, default=2000, help="training rows (default 2000)")
    parser.add_argument("--epochs", type=int, default=3, help="at least 2 (default 3)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="global batch, even for the 2 replicas (default 32)")
    parser.add_argument("--backbone", help="Hub-format BERT folder (default: a tiny random one)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per setup")
    parser.add_argument("--workdir", help="keep data, runs and logs here (default: a temp folder)")
    args = parser.parse_args()
    if args.epochs < 2 or args.examples < 10 or args.batch_size < 2 or args.batch_size % 2:
        parser.error("--epochs must be at least 2 (the first is not timed), --examples at "
                     "least 10 and --batch-size even.")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch).resolve()
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        data = write_topic_csv(workdir / "data" / "train.csv", args.examples, seed=0)
        backbone = args.backbone or tiny_bert(workdir / "tiny-bert", vocabulary(data))
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        spec = {"task": "text_classification", "data": str(data), "backbone": str(backbone),
                "epochs": args.epochs, "batch_size": args.batch_size, "set": SETTINGS,
                "overwrite": True}
        results = {}
        for setup in SETUPS:
            results[setup] = run_setup(setup, {**spec, "output_dir": str(workdir / "runs" / setup)},
                                       args.examples, env, args.timeout, workdir / "logs")
            print(f"[{setup}] {results[setup]['examples_per_second']:.1f} examples/s",
                  file=sys.stderr, flush=True)
        print_report(results, args.examples, spec)


if __name__ == "__main__":
    main()
