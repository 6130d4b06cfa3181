"""`ftk launch`: a multi-worker job on this machine, for development and tests.

It starts N copies of one command, each with the TF_CONFIG that places it in
a job of N workers on free 127.0.0.1 ports, streams their output line by line
behind a `[worker I]` prefix, stops them all as soon as one fails, and returns
the chief's exit code. Workers die with the launcher, however it ends.

TensorFlow's gRPC server listens on every network interface, whatever
address TF_CONFIG gives it. `private_network` runs the job in a network
namespace of its own, where only the loopback interface exists (Linux; root
or unprivileged user namespaces), so nothing outside the machine can reach
the workers, and the workers reach nothing outside it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Sequence

from ftk.errors import FtkError

log = logging.getLogger(__name__)

# How long workers get to stop after SIGTERM before they are killed.
STOP_GRACE_S = 10.0
# What `_wait` says, and `launch` exits with, when the job outlasts its timeout
# (the exit code of coreutils' `timeout`).
TIMED_OUT, TIMED_OUT_CODE = -1, 124


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together, so
    none is handed out twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def tf_config(addresses: Sequence[str], index: int) -> str:
    """The TF_CONFIG of worker `index` in a job of `addresses` (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": list(addresses)},
                       "task": {"type": "worker", "index": index}})


def worker_command(command: Sequence[str]) -> list[str]:
    """`ftk ...` runs as this Python's ftk, so every worker has the
    launcher's environment whatever PATH says."""
    if command and os.path.basename(command[0]) == "ftk":
        return [sys.executable, "-m", "ftk.cli", *command[1:]]
    return list(command)


def launch(command: Sequence[str], workers: int, *, private_network: bool = False,
           timeout: float | None = None, out: IO[str] | None = None) -> int:
    """Run `command` as a job of `workers` workers; the chief's exit code.

    Args:
        command: the program and its arguments, the same for every worker.
        workers: how many worker processes (at least 1).
        private_network: run the job in a loopback-only network namespace.
        timeout: seconds after which every worker is stopped (None: no limit).
        out: where the prefixed worker lines go (default: standard output).

    Returns:
        The chief's exit code; when the chief was stopped because another
        worker failed, that worker's code; 124 past the timeout (a worker
        killed by signal N gives 128 + N).
    """
    if workers < 1:
        raise FtkError(f"--workers must be at least 1. Received: {workers}")
    if not command:
        raise FtkError("Give the command every worker runs after --, e.g. `ftk launch "
                       "--workers 2 -- ftk run --task text_classification --output run`.")
    out = out or sys.stdout
    if private_network:
        enter_private_network()
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    argv = worker_command(command)
    lock = threading.Lock()
    processes = []
    try:
        for index in range(workers):
            env = {**os.environ, "TF_CONFIG": tf_config(addresses, index),
                   "PYTHONUNBUFFERED": "1"}
            process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace",
                                       preexec_fn=_die_with_parent, start_new_session=True)
            processes.append(process)
            _say(out, lock, f"[launch] worker {index}: pid {process.pid}, {addresses[index]}"
                 f"{' (chief)' if index == 0 else ''}")
        readers = [threading.Thread(target=_stream, args=(p, f"[worker {i}] ", out, lock),
                                    daemon=True) for i, p in enumerate(processes)]
        for reader in readers:
            reader.start()
        failed = _wait(processes, timeout, out, lock)
        for reader in readers:
            reader.join(timeout=STOP_GRACE_S)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    if failed == TIMED_OUT:
        return TIMED_OUT_CODE
    chief = processes[0].returncode
    if failed is not None and chief < 0:
        chief = processes[failed].returncode
    return 128 - chief if chief < 0 else chief  # killed by signal N: 128 + N, as shells say


def _wait(processes: list, timeout: float | None, out: IO[str], lock: threading.Lock) -> int | None:
    """Wait for every worker; on the first failure (or the timeout) stop the
    rest. Returns the index of the worker that failed first, `TIMED_OUT`, or None."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in processes]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None:
            if any(code is None for code in codes):
                _say(out, lock, f"[launch] worker {failed} exited with {codes[failed]}; "
                     "stopping the others.")
            _stop(processes)
            return failed
        if all(code is not None for code in codes):
            return None
        if deadline is not None and time.monotonic() > deadline:
            _say(out, lock, f"[launch] the job ran past its {timeout:g} s limit; stopping it.")
            _stop(processes)
            return TIMED_OUT
        time.sleep(0.1)


def _stop(processes: list) -> None:
    """SIGTERM every running worker's process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [p for p in processes if p.poll() is None]
        for process in running:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)


def _stream(process: subprocess.Popen, prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for line in process.stdout:
        _say(out, lock, prefix + line.rstrip("\n"))
    process.stdout.close()


def _say(out: IO[str], lock: threading.Lock, line: str) -> None:
    with lock:
        out.write(line + "\n")
        out.flush()


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the launcher dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def enter_private_network() -> None:
    """Move this process (and the workers it starts) into a new network
    namespace holding only a loopback interface, and bring that up.

    Raises:
        FtkError: not Linux, or no permission to make the namespace.
    """
    import ctypes
    import fcntl
    import struct

    if not sys.platform.startswith("linux"):
        raise FtkError("--private-network needs Linux network namespaces; leave it out here "
                       "(the workers' servers then listen on every interface).")
    CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise FtkError(f"--private-network could not make a network namespace ({reason}): it "
                       "needs root or unprivileged user namespaces. Leave it out, or run as "
                       "a user allowed to make namespaces.")
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sh", b"lo", 0)
        flags_now = struct.unpack("16sh", fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags_now | IFF_UP))
    log.info("The job runs in a private network namespace: loopback only.")
