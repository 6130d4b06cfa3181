"""Where a run's replicas are: the tf.distribute strategy, the cluster that
TF_CONFIG describes, and the checks every worker of a job passes together.

`train.distribute` chooses the strategy:

- `none`: TensorFlow's default strategy (one device).
- `mirrored`: `MirroredStrategy` over every visible GPU, or over the logical
  CPU devices when there is no GPU.
- `multi_worker`: `MultiWorkerMirroredStrategy` over the workers TF_CONFIG names
  (what Kubernetes operators, Vertex AI and Ray Train set).
- `tpu`: `TPUStrategy` on the TPU that `TPU_NAME` names, or the local TPU VM.
- `auto`: multi-worker when TF_CONFIG names several workers, mirrored when
  several GPUs are visible, else none.

`train.batch_size` is the global batch: each of the strategy's replicas takes
an equal part of it, and Keras averages the loss over the whole batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from ftk.errors import ConfigError, FtkError

log = logging.getLogger(__name__)

KINDS = ("auto", "none", "mirrored", "multi_worker", "tpu")
# A strategy is made once per process: TensorFlow configures a multi-worker
# job's collectives at startup, so a second one cannot be made later.
_MADE: dict[str, "Distribution"] = {}


@dataclass(frozen=True)
class Cluster:
    """The job TF_CONFIG describes, and this process's place in it."""

    spec: Mapping[str, list[str]]
    task_type: str
    task_index: int

    @property
    def workers(self) -> list[str]:
        """Addresses of the processes that train (the chief first)."""
        return [*self.spec.get("chief", []), *self.spec.get("worker", [])]

    @property
    def rank(self) -> int:
        """This worker's place in `workers` (0 is the chief)."""
        offset = len(self.spec.get("chief", [])) if self.task_type == "worker" else 0
        return offset + self.task_index

    @property
    def address(self) -> str:
        return self.spec[self.task_type][self.task_index]

    @property
    def is_chief(self) -> bool:
        """The chief writes the run: the `chief` task, else worker 0 (TensorFlow's rule)."""
        if "chief" in self.spec:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def read_cluster(environ: Mapping[str, str] = os.environ) -> Cluster | None:
    """The cluster in TF_CONFIG, or None when it is unset or names no cluster.

    Raises:
        ConfigError: TF_CONFIG is not JSON, or names a task outside its cluster.
    """
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}). It must look like "
                          '{"cluster": {"worker": ["host:port", ...]}, '
                          '"task": {"type": "worker", "index": 0}}.') from None
    spec = config.get("cluster") if isinstance(config, dict) else None
    if not spec:
        return None
    if not isinstance(spec, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in spec.values()):
        raise ConfigError('TF_CONFIG "cluster" must map job names to lists of "host:port" '
                          f"addresses. Received: {json.dumps(spec)}")
    task = config.get("task") or {}
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in spec or not isinstance(index, int) or not 0 <= index < len(spec[task_type]):
        raise ConfigError(f'TF_CONFIG "task" ({json.dumps(task)}) must name a job of its '
                          f"cluster ({', '.join(sorted(spec))}) and an index within it.")
    return Cluster(spec, task_type, index)


def _auto_multi_worker(cluster: Cluster | None) -> bool:
    return cluster is not None and len(cluster.workers) > 1


def writes_run(setting: str, cluster: Cluster | None) -> bool:
    """Whether this process writes the run directory: every process but the
    workers of a multi-worker job other than its chief. Known before
    TensorFlow starts, as `Distribution.writes` is after."""
    multi_worker = setting == "multi_worker" or (setting == "auto" and _auto_multi_worker(cluster))
    return not multi_worker or cluster is None or cluster.is_chief


def choose_kind(setting: str, cluster: Cluster | None) -> tuple[str, str]:
    """The strategy `train.distribute` asks for, and why (for the log)."""
    if setting != "auto":
        return setting, f"train.distribute is {setting}"
    if _auto_multi_worker(cluster):
        return "multi_worker", f"TF_CONFIG names {len(cluster.workers)} workers"
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus > 1:
        return "mirrored", f"{gpus} GPUs are visible"
    return "none", "one device" if cluster is None else "TF_CONFIG names one worker"


@dataclass
class Distribution:
    """A run's strategy and this process's part in it.

    Attributes:
        strategy: the `tf.distribute.Strategy` that builds and trains the model.
        kind: none, mirrored, multi_worker or tpu.
        cluster: the multi-worker job, or None.
    """

    strategy: Any
    kind: str
    cluster: Cluster | None = None

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def workers(self) -> int:
        return len(self.cluster.workers) if self.cluster else 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (only the chief does)."""
        return self.cluster is None or self.cluster.is_chief

    def describe(self) -> str:
        if self.kind == "none":
            return "one device"
        where = (f"worker {self.cluster.rank} of {self.workers}"
                 f"{' (chief)' if self.writes else ''}, " if self.cluster else "")
        return f"{self.kind} strategy, {where}{self.replicas} replica(s) in sync"

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly over the replicas."""
        if batch_size % self.replicas:
            raise ConfigError(
                f"train.batch_size ({batch_size}) is the global batch and must divide evenly "
                f"over the {self.replicas} replicas of the {self.kind} strategy. Use a multiple "
                f"of {self.replicas}.")

    def agree(self, facts: Mapping[str, Any]) -> None:
        """Stop every worker with the same error when they disagree on `facts`
        (config sections, example counts, targets, resume point): workers
        training on different settings would deadlock or train wrongly.

        A collective gather of one digest per fact, so a worker never waits
        for an answer that does not come: all reach it, or the job's
        heartbeat ends it.
        """
        if self.workers < 2:
            return
        import tensorflow as tf

        names = sorted(facts)
        local = tf.constant([[_digest(facts[name]) for name in names]], tf.int64)

        def gather() -> Any:
            return tf.distribute.get_replica_context().all_gather(local, axis=0)

        rows = self.strategy.experimental_local_results(self.strategy.run(gather))[0].numpy()
        per_worker = rows.reshape(self.workers, -1, len(names))[:, 0]
        differ = [(rank, [name for name, mine, chief in zip(names, row, per_worker[0])
                          if mine != chief]) for rank, row in enumerate(per_worker)]
        differ = [(rank, keys) for rank, keys in differ if keys]
        if differ:
            detail = "; ".join(f"worker {rank}: {', '.join(keys)}" for rank, keys in differ)
            raise FtkError(
                f"The workers of this job disagree with the chief (worker 0) on: {detail}. "
                "Every worker must run the same command, with the same config and the same "
                "data (and --resume on all or none).")


def distribution(setting: str, *, connect_timeout: float) -> Distribution:
    """The process's distribution for `train.distribute`, made on first use.

    Args:
        setting: one of `KINDS`.
        connect_timeout: seconds a multi-worker job waits for all its workers.

    Raises:
        FtkError: the strategy cannot be made (no TPU, TF_CONFIG missing, a
            worker unreachable, TensorFlow already started in this process).
    """
    cluster = read_cluster()
    kind, reason = choose_kind(setting, cluster)
    made = _MADE.get(kind)
    if made is None:
        made = _MADE[kind] = _make(kind, cluster, connect_timeout)
        log.info(f"Distribution: {made.describe()} ({reason}).")
    return made


def _make(kind: str, cluster: Cluster | None, connect_timeout: float) -> Distribution:
    import tensorflow as tf

    if kind == "none":
        return Distribution(tf.distribute.get_strategy(), kind)
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return Distribution(tf.distribute.MirroredStrategy([d.name for d in devices]), kind)
    if kind == "tpu":
        return Distribution(_tpu_strategy(), kind)
    if cluster is None:
        raise FtkError("train.distribute is multi_worker, but TF_CONFIG names no cluster. Set "
                       "TF_CONFIG on every worker (Kubernetes, Vertex AI and Ray Train do), or "
                       "start the job with `ftk launch --workers N -- ftk run ...`.")
    unreachable = (
        f"Worker {cluster.rank} ({cluster.address}) could not reach the other workers of "
        f"TF_CONFIG ({', '.join(cluster.workers)}) within {connect_timeout:g} s. Start every "
        "worker with the same TF_CONFIG cluster, check each address is reachable from every "
        "worker, or raise train.connect_timeout.")
    _limit_waits(cluster, connect_timeout)
    try:
        with _deadline(connect_timeout + 5, f"Error: {unreachable}"):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "startup" in str(error) or "initialized" in str(error):
            raise FtkError("A multi-worker run must be the first thing TensorFlow does in its "
                           "process; start it as its own `ftk run` command.") from None
        raise
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError):
        raise FtkError(unreachable) from None
    return Distribution(strategy, kind, cluster)


@contextlib.contextmanager
def _deadline(seconds: float, message: str) -> Iterator[None]:
    """Kill this process, with `message` on standard error, if the block
    outlasts `seconds`.

    The job's leader waits for its peers inside TensorFlow, holding Python's
    lock and ignoring its own register timeout, so no thread of this process
    could end the wait: a small watcher process does.
    """
    from ftk.log import unfiltered_stderr

    stderr = unfiltered_stderr()
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(seconds), message, str(os.getpid()), str(stderr)],
        stdin=subprocess.DEVNULL, pass_fds=(stderr,) if stderr != 2 else ())
    try:
        yield
    finally:
        watcher.kill()
        watcher.wait()


_WATCHER = """
import os, signal, sys, time
seconds, message = float(sys.argv[1]), sys.argv[2]
parent, stderr = int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    time.sleep(0.2)
    if os.getppid() != parent:
        sys.exit(0)
os.write(stderr, (message + "\\n").encode())
os.kill(parent, signal.SIGKILL)
"""


def _limit_waits(cluster: Cluster, seconds: float) -> None:
    """Bound how long a worker waits for the others to join.

    TensorFlow's multi-worker strategy configures its coordination service
    with no limit, so a worker whose peers never start waits forever. The same
    service, configured first with a limit, makes it fail instead.
    """
    from tensorflow.python.eager import context

    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    leader = "chief" if "chief" in cluster.spec else "worker"
    jobs = [coordination_config_pb2.CoordinatedJob(name=name, num_tasks=len(cluster.spec[name]))
            for name in ("chief", "worker") if name in cluster.spec]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=int(seconds * 1000),
        shutdown_barrier_timeout_in_ms=int(seconds * 1000))


def _tpu_strategy() -> Any:
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise FtkError(f"train.distribute is tpu, but no TPU could be reached "
                       f"({str(error).splitlines()[0] if str(error) else type(error).__name__}). "
                       "Run on a TPU VM, or set TPU_NAME to the TPU's name.") from None
    return tf.distribute.TPUStrategy(resolver)


def _digest(value: Any) -> int:
    """A signed 64-bit digest of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)
