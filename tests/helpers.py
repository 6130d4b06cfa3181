"""What several test modules share: running the CLI in-process as a user
would type it, and builders of small data sets and run inspections.
Test modules import these; they never import one another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from click.testing import CliRunner

from ftk.cli import cli


def ftk_cli(*args: Any) -> Any:
    """Invoke `ftk ARGS...`; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def install_example(example: Path, target: Path) -> dict[str, str]:
    """pip-install an example plugin package into `target`, as a user would
    install it; returns an environment whose Python sees it."""
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "--target", str(target), str(example)],
                   check=True, capture_output=True)
    path = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def ftk_process(env: dict[str, str], *args: Any) -> Any:
    """Run `ftk ARGS...` in a fresh process with `env`; the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ftk.cli", *map(str, args)], capture_output=True,
                          text=True, env=env)


def json_out(result: Any) -> Any:
    return json.loads(result.stdout)


def interrupt_after_epoch(monkeypatch: Any, epochs: int) -> None:
    """Make training raise KeyboardInterrupt once `epochs` epochs are checkpointed."""
    from ftk.training.callbacks import RunCheckpointer

    write = RunCheckpointer.on_epoch_end

    def crash(self: Any, epoch: int, logs: Any = None) -> None:
        write(self, epoch, logs)
        if epoch + 1 == epochs:
            monkeypatch.setattr(RunCheckpointer, "on_epoch_end", write)
            raise KeyboardInterrupt

    monkeypatch.setattr(RunCheckpointer, "on_epoch_end", crash)


def optimizer_steps(run_dir: Any, name: str = "optimizer") -> int:
    """Steps taken by an optimiser, read from the run's last checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints/last/ckpt"))
    return int(reader.get_tensor(f"{name}/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (230, 220, 30), "cyan": (30, 210, 220), "magenta": (210, 30, 200)}
# Every format and mode the reader accepts, in one folder: (suffix, PIL mode).
FORMATS = [(".png", "RGB"), (".jpg", "RGB"), (".png", "L"), (".png", "RGBA"), (".bmp", "RGB"),
           (".gif", "P"), (".jpeg", "L")]


def colour_image(colour: Any, rng: Any, size: tuple[int, int] = (40, 32)) -> Image.Image:
    noise = rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))


def write_colour_folder(root: Path, per_class: int, seed: int, classes=COLOURS) -> Path:
    """One subfolder per colour; sizes, formats and modes vary inside each."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            suffix, mode = FORMATS[index % len(FORMATS)]
            size = (int(rng.integers(24, 64)), int(rng.integers(24, 64)))
            image = colour_image(COLOURS.get(name, (128, 0, 128)), rng, size).convert(mode)
            image.save(root / name / f"{name}_{index}{suffix}")
    return root


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` pixels: what a
    decompression bomb looks like before it is decoded."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = buffer.getvalue()
    header = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + header + struct.pack(">I", zlib.crc32(header)) + data[33:]


def backbone_weights(run_dir, checkpoint="last"):
    """Backbone variables in one of the run's checkpoints, by variable name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / checkpoint / "ckpt"))
    prefix = "model/backbone/"
    # keys end in "<variable name>/.ATTRIBUTES/VARIABLE_VALUE", "/" escaped as ".S"
    return {key.split("/")[-3].replace(".S", "/").removesuffix(":0"): reader.get_tensor(key)
            for key in reader.get_variable_to_shape_map()
            if key.startswith(prefix) and "optimizer" not in key}


# A fake task for engine tests: four numbers per example (written as one
# string, since exports take strings), a real-valued target, a tiny dense
# backbone. No classes and no text: it shows what the engine does on its own.
def write_vector_csv(path: Path, count: int, seed: int) -> Path:
    """`count` rows of `inputs` (four numbers) and `target` (their weighted sum)."""
    import csv

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(count, 4))
    targets = values @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["inputs", "target"])
        for row, target in zip(values, targets):
            writer.writerow([" ".join(f"{v:.5f}" for v in row), f"{target:.5f}"])
    return path


def tiny_vector_backbone(path: Path) -> str:
    """A SavedModel taking float32 `[B, 4]`: two dense blocks (`layer_1`, `layer_2`)."""
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(0)
    inputs = keras.Input([4])
    hidden = keras.layers.Dense(16, activation="tanh", name="layer_1")(inputs)
    outputs = keras.layers.Dense(16, activation="tanh", name="layer_2")(hidden)
    tf.saved_model.save(keras.Model(inputs, outputs), str(path))
    return str(path)


def fake_task_plugin(folder: Path) -> str:
    """Write the fake task's plugin module into `folder` (put it on sys.path)
    and return the module name."""
    (folder / "ftk_fake_task.py").write_text(FAKE_TASK_SOURCE, encoding="utf-8")
    return "ftk_fake_task"


FAKE_TASK_SOURCE = '''
import ftk
from ftk.text import reading


class VectorPreprocessor(ftk.Preprocessor):
    def __call__(self, inputs):
        import tensorflow as tf

        numbers = tf.strings.split(tf.reshape(inputs, [-1])).to_tensor("0", shape=[None, 4])
        return tf.strings.to_number(numbers, tf.float32)


class FakeTask(ftk.Task):
    name = "fake_vectors"
    default_backbone = "none"
    defaults = {"train": {"learning_rate": 0.01, "batch_size": 16}}
    metric_directions = {"mae": "min"}

    def read_data(self, path):
        rows = list(reading.read_rows(path, {"inputs": "inputs", "target": "target"}))
        return ftk.Examples([row["inputs"] for _, row in rows],
                            [float(row["target"]) for _, row in rows], str(path))

    def build_preprocessor(self, backbone):
        return VectorPreprocessor()

    def build_head(self, backbone):
        import tf_keras as keras

        return Head(self.space.mean[0], self.space.std[0])

    def build_loss(self):
        import tf_keras as keras

        return keras.losses.MeanSquaredError()

    def build_metrics(self):
        import tf_keras as keras

        return [keras.metrics.MeanAbsoluteError(name="mae")]


def Head(mean, std):
    import tf_keras as keras

    class VectorHead(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="head")
            self.dense = keras.layers.Dense(1)

        def call(self, outputs, features=None, training=None):
            return self.dense(outputs) * std + mean

    return VectorHead()


@ftk.hookimpl
def ftk_register_tasks(register):
    register(FakeTask)
'''


def loopback_hub(status: int, max_requests: int = 20) -> Any:
    """A context manager serving HTTP `status` to every request on a free
    127.0.0.1 port, at most `max_requests` of them; yields its base URL and
    stops the server on exit."""
    import http.server
    import threading
    from contextlib import contextmanager

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.server.requests += 1  # type: ignore[attr-defined]
            self.send_response(status if self.server.requests <= max_requests else 503)  # type: ignore[attr-defined]
            self.end_headers()
            self.wfile.write(b"no model here")

        def log_message(self, *args: Any) -> None:
            pass

    @contextmanager
    def serving() -> Any:
        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        server.requests = 0  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    return serving()


def ftk_server(path: Any, *args: Any, timeout: float = 180) -> Any:
    """A context manager running `ftk serve PATH --port 0 ARGS...` on
    127.0.0.1; yields `(base_url, log)`, `log` the list of its stderr lines so
    far, and stops the process (SIGTERM, then SIGKILL) on exit."""
    import re
    import subprocess
    import sys
    import threading
    import time
    from contextlib import contextmanager

    @contextmanager
    def serving() -> Any:
        process = subprocess.Popen(
            [sys.executable, "-m", "ftk.cli", "serve", str(path), "--host", "127.0.0.1",
             "--port", "0", *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                found = [re.search(r"Serving at (http://127\.0\.0\.1:\d+)/", line) for line in log]
                found = [match for match in found if match]
                if found:
                    break
                assert process.poll() is None, "ftk serve ended:\n" + "".join(log)
                assert time.monotonic() < deadline, "ftk serve never listened:\n" + "".join(log)
                time.sleep(0.05)
            yield found[0][1], log
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            reader.join(timeout=10)

    return serving()


def http_json(url: str, body: Any = None, *, raw: bytes | None = None,
              timeout: float = 60) -> tuple[int, Any]:
    """`(status, JSON answer)` of a GET (no body) or a POST of `body` as JSON
    (or of `raw` bytes) to `url`."""
    import urllib.error
    import urllib.request

    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
