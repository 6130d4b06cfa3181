"""What ftk shows on a terminal.

Library modules log to loggers under `ftk` and never print; the command line
decides what reaches the terminal (`configure_cli_logging`). From Python, only
warnings show unless the program configures logging (for instance
`logging.basicConfig(level=logging.INFO)`), and
`logging.getLogger("ftk").setLevel(logging.ERROR)` silences even those.

TensorFlow's C++ runtime writes start-up notes straight to file descriptor 2
before any logging is set up (oneDNN notes, `failed call to cuInit` on
machines without a GPU). They read like failures to a newcomer, so the command
line filters those lines out unless `--debug` is given.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

LOGGER = "ftk"

# Lines of TensorFlow's native logging (absl): `I0000 00:00:1796.1 2140 port.cc:153] ...`.
NATIVE_LINE = re.compile(rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] |"
                         rb"WARNING: All log messages before absl::InitializeLog\(\)|"
                         # the second line of the CPU-instructions note
                         rb"To enable the following instructions: .* rebuild TensorFlow)")


class _StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"Warning: {message}"
        return message


def configure_cli_logging(debug: bool = False) -> None:
    """Show ftk's messages on stderr: info and up, or everything with `debug`."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    # Libraries that log through the root logger give it a handler of its own;
    # ftk's lines must not show twice.
    logger.propagate = False


_REAL_STDERR: int | None = None


def unfiltered_stderr() -> int:
    """The file descriptor of the terminal's stderr, past the filter of
    `filter_native_noise` (whose thread cannot copy while TensorFlow holds
    Python's lock)."""
    return 2 if _REAL_STDERR is None else _REAL_STDERR


def filter_native_noise() -> None:
    """Drop TensorFlow's native log lines from this process's stderr.

    File descriptor 2 is pointed at a pipe; a thread copies every other line
    to the real stderr. Python's own stderr goes through the same pipe, so
    the order of ftk's messages is kept. Undone at exit, after the last line.
    """
    import atexit

    global _REAL_STDERR
    real = _REAL_STDERR = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not NATIVE_LINE.match(line))
                if kept:
                    os.write(real, kept)
            if pending and not NATIVE_LINE.match(pending):
                os.write(real, pending)

    thread = threading.Thread(target=copy, name="ftk-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end, so the thread sees EOF
        thread.join(timeout=5)

    atexit.register(restore)
