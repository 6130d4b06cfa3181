"""Load on `ftk serve`: throughput and latency with concurrent clients.

Run (from the repository root, with ftk installed, after training a run):
    ftk run --task text_classification --output runs/text
    python benchmarks/serve.py runs/text --clients 8 --requests 2000 --max-batch 1,8,32

It first times the model alone in its own process (no HTTP), on batches of
one and of each limit, which says how fast the machine is. For each batch
limit it then starts `ftk serve RUN --port 0 --max-batch B` on
127.0.0.1, warms it up, then `--clients` threads (one keep-alive connection
each) send `--requests` requests in all to POST /predict, one example each,
taken in turn from the run's test split (texts as strings, files as b64). It
prints a Markdown row per limit: requests per second, p50/p99 latency, the
mean batch the server ran, and the server's resident memory after the warm-up
and at the end (memory should not grow with the requests served).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WARM_UP = 50


def examples(run: Path) -> tuple[list, list]:
    """The run's test split as the task reads it, and as JSON instances."""
    import ftk

    model = ftk.load(run)
    data = model.config["data"]
    source = data.get("test") or data.get("validation") or data["train"]
    inputs = list(model.task.read_data(source).inputs)
    if model.task.file_inputs or model.task.page.get("input") == "file":
        return inputs, [{"b64": base64.b64encode(Path(path).read_bytes()).decode()}
                        for path in inputs]
    return inputs, [str(text) for text in inputs]


def model_alone(run: Path, inputs: list, sizes: list[int]) -> str:
    """The model's own time per call in this process, without HTTP: what
    the server's figures are to be read against on another machine."""
    import ftk

    model = ftk.load(run)
    parts = []
    for size in sizes:
        batch = [str(value) for value in inputs[:size]]
        model.predict(batch, batch_size=size)
        times = []
        for _ in range(20):
            started = time.perf_counter()
            model.predict(batch, batch_size=size)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        parts.append(f"batch {len(batch)}: {seconds * 1000:.1f} ms "
                     f"({len(batch) / seconds:.0f} examples/s)")
    return "The model alone, median of 20 calls: " + "; ".join(parts) + "."


class Server:
    """`ftk serve` in a process of its own on a free 127.0.0.1 port."""

    def __init__(self, run: Path, max_batch: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ftk.cli", "serve", str(run), "--port", "0",
             "--max-batch", str(max_batch), "--max-instances", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stderr),
                         daemon=True).start()
        deadline = time.monotonic() + 300
        while not (match := next(filter(None, (re.search(r"http://127\.0\.0\.1:(\d+)/", line)
                                                for line in self.lines)), None)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit("ftk serve did not start:\n" + "".join(self.lines))
            time.sleep(0.05)
        self.port = int(match[1])

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024

    def info(self) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("GET", "/info")
        return json.loads(connection.getresponse().read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def drive(port: int, instances: list, clients: int, requests: int) -> tuple[float, list[float]]:
    """Send `requests` requests from `clients` threads; wall seconds and latencies."""
    share = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index: int) -> list[float]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies = []
        for n in range(share[index]):
            body = json.dumps({"instances": [instances[(index + n * clients) % len(instances)]]})
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        connection.close()
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [value for part in pool.map(client, range(clients)) for value in part]
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-batch", default="1,8,32", help="comma-separated batch limits")
    args = parser.parse_args()
    inputs, instances = examples(args.run)
    task = json.loads((args.run / "export" / "ftk.json").read_text())["task"]
    limits = [int(value) for value in args.max_batch.split(",")]
    print(f"{task}, {args.clients} clients, {args.requests} requests of one example each")
    print(model_alone(args.run, inputs, sorted({1, *limits})) + "\n")
    print("| task | max batch | requests/s | p50 ms | p99 ms | mean batch | RSS after warm-up MB "
          "| RSS at end MB |")
    print("|---|---|---|---|---|---|---|---|")
    for limit in limits:
        server = Server(args.run, limit)
        try:
            drive(server.port, instances, args.clients, WARM_UP)
            before, warm = server.info(), server.rss_mb()
            seconds, latencies = drive(server.port, instances, args.clients, args.requests)
            after, end = server.info(), server.rss_mb()
        finally:
            server.stop()
        quantiles = statistics.quantiles(latencies, n=100)
        batch = (after["instances"] - before["instances"]) / (after["model_calls"]
                                                              - before["model_calls"])
        print(f"| {task} | {limit} | {args.requests / seconds:.1f} | {quantiles[49] * 1000:.1f} "
              f"| {quantiles[98] * 1000:.1f} | {batch:.1f} | {warm:.0f} | {end:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
