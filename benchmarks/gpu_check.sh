#!/usr/bin/env bash
# Training throughput of ftk on every visible GPU (MirroredStrategy), with and
# without mixed precision and XLA, next to each backbone's forward-pass ceiling.
#
# Run (on a machine with NVIDIA GPUs and network access, from anywhere):
#     bash benchmarks/gpu_check.sh
#     CUDA_VISIBLE_DEVICES=0 bash benchmarks/gpu_check.sh            # one GPU
#     FTK_VENV=.venv bash benchmarks/gpu_check.sh                    # an existing venv
#
# It makes a venv in the work folder and installs this checkout into it
# (`pip install -e .`, plus tensorflow[and-cuda] for the CUDA libraries), or
# uses the venv FTK_VENV names, installing ftk there only if it lacks it. Then
# for each preset, minilm-l6 (text_classification) and efficientnet-lite0
# (image_classification), it runs `ftk run --distribute mirrored` with a
# trainable backbone four times: float32 or `train.mixed_precision=mixed_float16`,
# each with and without `train.jit_compile=true`. Throughput is training
# examples per second over the epochs after the first (which traces and
# compiles), from the `epoch_seconds` column of the run's history.csv; there is
# no validation split, so an epoch's seconds are its training steps and the
# checkpoint written after it. The ceiling is the backbone alone: frozen
# forward passes of the SavedModel through hub.KerasLayer under the same
# MirroredStrategy (`strategy.run`), on the same global batch held in memory,
# as benchmarks/compare.py's image_ceiling measures it (its batches come from
# benchmarks/common.py). Note that ftk builds only the head under the
# mixed-precision policy: a Hub backbone stays the float32 SavedModel it is.
#
# The data is drawn by benchmarks/bench_data.py (topic sentences; the image
# quickstart's demo drawings, 224x224), larger than the quickstart demo sets,
# whose few steps per epoch a GPU would finish too fast to time.
#
# The table goes to stdout and to gpu_check_results.md (RESULTS), logs and runs
# to the work folder. Settings (environment variables, defaults in brackets):
#   FTK_VENV            an existing venv to use                     [make one]
#   WORK                work folder (venv, data, runs, logs)        [mktemp -d]
#   RESULTS             the Markdown file written                   [./gpu_check_results.md]
#   EPOCHS              epochs per run, at least 2                  [3]
#   TEXT_EXAMPLES       training texts                              [16384]
#   IMAGE_EXAMPLES      training images                             [4096]
#   BATCH_PER_REPLICA   batch per GPU, a multiple of 32; the global
#                       batch is this times the GPUs                [32]
#   CEILING_STEPS       timed forward passes per ceiling            [50]
#   TEXT_BACKBONE, IMAGE_BACKBONE   preset names or Hub-format folders
#                                   [minilm-l6, efficientnet-lite0]
#   ALLOW_CPU=1         run without a GPU (mirrored over the CPU), to check the
#                       script itself with tiny backbones and sizes
#
# The embedded Python sits between `<<'PY'` and `PY` lines.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(realpath "${WORK:-$(mktemp -d)}")
RESULTS=${RESULTS:-$PWD/gpu_check_results.md}
EPOCHS=${EPOCHS:-3}
TEXT_EXAMPLES=${TEXT_EXAMPLES:-16384}
IMAGE_EXAMPLES=${IMAGE_EXAMPLES:-4096}
BATCH_PER_REPLICA=${BATCH_PER_REPLICA:-32}
CEILING_STEPS=${CEILING_STEPS:-50}
TEXT_BACKBONE=${TEXT_BACKBONE:-minilm-l6}
IMAGE_BACKBONE=${IMAGE_BACKBONE:-efficientnet-lite0}
export ROOT TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$WORK/logs" "$WORK/runs"
JSONL=$WORK/results.jsonl
: > "$JSONL"

if (( EPOCHS < 2 || BATCH_PER_REPLICA % 32 )); then
    echo "EPOCHS must be at least 2 (the first is not timed) and BATCH_PER_REPLICA a multiple of 32." >&2
    exit 2
fi

if [[ -n ${FTK_VENV:-} ]]; then
    VENV=$FTK_VENV
else
    VENV=$WORK/venv
    python3 -m venv "$VENV"
fi
PY=$VENV/bin/python
if ! "$PY" -c "import ftk" 2>/dev/null; then
    "$PY" -m pip install --upgrade pip
    "$PY" -m pip install -e "$ROOT"
    # The tensorflow wheel finds GPUs only with the CUDA libraries beside it.
    "$PY" -m pip install "tensorflow[and-cuda]==$("$PY" -c 'import tensorflow as tf; print(tf.__version__)')"
fi

GPUS=$("$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null)
if (( GPUS == 0 )) && [[ ${ALLOW_CPU:-} != 1 ]]; then
    echo "TensorFlow sees no GPU (check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES)," \
         "or set ALLOW_CPU=1 to check this script on the CPU." >&2
    exit 1
fi
REPLICAS=$(( GPUS > 0 ? GPUS : 1 ))
BATCH=$(( BATCH_PER_REPLICA * REPLICAS ))

# A preset is pulled (its folder printed) so the ceiling can load its encoder.
backbone_folder() {
    if [[ -d $1 ]]; then realpath "$1"; else "$PY" -m ftk.cli backbones pull "$1" | tail -n 1; fi
}

# One JSON line in $JSONL for a finished (or failed) run.
record_run() {  # preset precision xla run_dir log exit_code
    "$PY" - "$@" "$JSONL" <<'PY'
import csv, json, re, sys
from pathlib import Path

preset, precision, xla, run_dir, log, code, jsonl = sys.argv[1:]
printed = Path(log).read_text(encoding="utf-8", errors="replace")
row = {"preset": preset, "measure": "train", "precision": precision, "xla": xla}
if code != "0":
    errors = [line for line in printed.splitlines() if line.startswith("Error:")]
    row["error"] = (errors or [f"exit code {code}"])[-1][:200]
else:
    with open(Path(run_dir) / "history.csv", newline="", encoding="utf-8") as stream:
        epochs = list(csv.DictReader(stream))
    later = [float(epoch["epoch_seconds"]) for epoch in epochs[1:]]
    # ftk logs "Training TASK on N examples" and "..., R replica(s) in sync".
    examples = int(re.search(r"Training \S+ on (\d+) examples", printed)[1])
    replicas = re.search(r"Distribution: .*?(\d+) replica\(s\) in sync", printed)
    row.update(replicas=int(replicas[1]) if replicas else 1,
               examples_per_second=examples * len(later) / sum(later),
               final_loss=float(epochs[-1]["loss"]))
with open(jsonl, "a", encoding="utf-8") as stream:
    stream.write(json.dumps(row) + "\n")
PY
}

# The backbone's frozen forward throughput under ftk's MirroredStrategy.
ceiling() {  # preset task folder xla
    "$PY" - "$@" "$BATCH_PER_REPLICA" "$CEILING_STEPS" "$JSONL" <<'PY'
import json, os, sys, time
from pathlib import Path

sys.path.insert(0, os.path.join(os.environ["ROOT"], "benchmarks"))
import tensorflow as tf
import tensorflow_hub as hub

from common import image_batch, text_batch
from compare import Backbones
from ftk.distribute import distribution

preset, task, folder, xla, per_replica, steps, jsonl = sys.argv[1:]
strategy = distribution("mirrored", connect_timeout=60).strategy  # what `ftk run` makes
# common.py's batches of 32 (texts of 20 tokens, 224x224 images), repeated to
# the batch each replica trains on.
inputs, key, _ = text_batch() if task == "text" else image_batch(224, "default")()
inputs = tf.nest.map_structure(lambda t: tf.repeat(t, int(per_replica) // 32, axis=0), inputs)
with strategy.scope():
    backbone = hub.KerasLayer(str(Backbones.encoder(Path(folder))), trainable=False)
batch = strategy.experimental_distribute_values_from_function(
    lambda context: tf.nest.map_structure(tf.identity, inputs))  # a copy on each replica
forward = tf.function(lambda x: backbone(x, training=False)[key], jit_compile=xla == "on")
step = tf.function(lambda replicated: strategy.run(forward, args=(replicated,)))


def seconds(count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        outputs = step(batch)
    for output in strategy.experimental_local_results(outputs):
        output.numpy()  # wait for every replica
    return time.perf_counter() - start


seconds(2)  # trace, compile, warm up
examples = int(per_replica) * strategy.num_replicas_in_sync * int(steps)
row = {"preset": preset, "measure": "ceiling", "precision": "float32", "xla": xla,
       "replicas": strategy.num_replicas_in_sync, "examples_per_second": examples / seconds(int(steps))}
with open(jsonl, "a", encoding="utf-8") as stream:
    stream.write(json.dumps(row) + "\n")
PY
}

make_data() {  # task -> prints the training data path
    if [[ $1 == text ]]; then
        "$PY" "$ROOT/benchmarks/bench_data.py" "$WORK/data/text.csv" "$TEXT_EXAMPLES"
        echo "$WORK/data/text.csv"
    else
        "$PY" - "$WORK/data/images" "$IMAGE_EXAMPLES" <<'PY'
import os, sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.environ["ROOT"], "benchmarks"))
from bench_data import write_image_splits

write_image_splits(Path(sys.argv[1]), {"train": int(sys.argv[2])})
PY
        echo "$WORK/data/images/train"
    fi
}

for task in text image; do
    if [[ $task == text ]]; then preset=$TEXT_BACKBONE; extra=(); else
        preset=$IMAGE_BACKBONE; extra=(--set data.augment=false); fi
    folder=$(backbone_folder "$preset")
    name=$(basename "$preset")
    data=$(make_data "$task")
    echo "[$name] data in $data, backbone in $folder, global batch $BATCH" >&2
    for precision in float32 mixed_float16; do
        for xla in off on; do
            run=$WORK/runs/$task-$precision-xla-$xla
            log=$WORK/logs/$task-$precision-xla-$xla.log
            flags=(--set backbone.trainable=true --set data.validation_split=0 "${extra[@]}")
            [[ $precision == mixed_float16 ]] && flags+=(--set train.mixed_precision=mixed_float16)
            [[ $xla == on ]] && flags+=(--set train.jit_compile=true)
            code=0
            "$PY" -m ftk.cli run --task "${task}_classification" --data "$data" \
                --backbone "$folder" --distribute mirrored --batch-size "$BATCH" \
                --epochs "$EPOCHS" --output "$run" --overwrite "${flags[@]}" > "$log" 2>&1 || code=$?
            record_run "$name" "$precision" "$xla" "$run" "$log" "$code"
            echo "[$name] $precision, XLA $xla: exit code $code (log: $log)" >&2
        done
    done
    for xla in off on; do
        log=$WORK/logs/$task-ceiling-xla-$xla.log
        if ! ceiling "$name" "$task" "$folder" "$xla" > "$log" 2>&1; then
            printf '{"preset": "%s", "measure": "ceiling", "precision": "float32", "xla": "%s", "error": "see %s"}\n' \
                "$name" "$xla" "$log" >> "$JSONL"
        fi
        echo "[$name] ceiling, XLA $xla done (log: $log)" >&2
    done
done

"$PY" - "$JSONL" "$GPUS" "$BATCH" "$EPOCHS" <<'PY' | tee "$RESULTS"
import json, platform, subprocess, sys
from importlib.metadata import version

jsonl, count, batch, epochs = sys.argv[1:]
rows = [json.loads(line) for line in open(jsonl, encoding="utf-8")]
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.split("\n")[0]
except FileNotFoundError:
    gpu = ""
devices = f"{count} x {gpu or 'GPU'}" if count != "0" else "no GPU (mirrored over the CPU)"
print(f"Machine: {devices}, TensorFlow {version('tensorflow')}, Python {platform.python_version()}; global batch {batch}, "
      f"{epochs} epochs, trainable backbone, examples/s over epochs 2+\n")
print("| backbone | measurement | precision | XLA | replicas | examples/s "
      "| vs float32 without XLA | final training loss |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
plain = {row["preset"]: row.get("examples_per_second") for row in rows
         if row["measure"] == "train" and row["precision"] == "float32" and row["xla"] == "off"}
for row in rows:
    what = "train (`ftk run`)" if row["measure"] == "train" else "frozen forward ceiling"
    rate, base = row.get("examples_per_second"), plain.get(row["preset"])
    cells = [row["preset"], what, row["precision"], row["xla"], str(row.get("replicas", "-")),
             f"{rate:.1f}" if rate else f"failed: {row.get('error', '?').replace('|', '/')}",
             f"{rate / base:.2f}x" if rate and base and row["measure"] == "train" else "-",
             f"{row['final_loss']:.4f}" if "final_loss" in row else "-"]
    print("| " + " | ".join(cells) + " |")
PY
echo "Written: $RESULTS (runs and logs in $WORK)" >&2
