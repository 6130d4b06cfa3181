"""Progress of long steps: a bar with an ETA on an interactive terminal, plain
log lines otherwise (redirected output, notebooks, CI logs).

Example:
    ```python
    for batch in progress.track(batches, total=len(batches), description="Scoring"):
        ...
    with progress.timed("Writing the export"):
        tf.saved_model.save(...)
    ```
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
BAR_WIDTH = 24


def interactive() -> bool:
    """Whether a person watches: stderr is a terminal, ftk's info lines show,
    and this is no CI job (whose log a terminal may capture)."""
    return (sys.stderr.isatty() and not os.environ.get("CI")
            and logging.getLogger("ftk").isEnabledFor(logging.INFO))


def track(items: Iterable[Item], total: int, description: str,
          unit: str = "batches") -> Iterator[Item]:
    """Yield `items`, showing how many of `total` are done and the time left."""
    start = time.perf_counter()
    bar = interactive()
    if not bar:
        log.info(f"{description}: {total} {unit} to do ...")
    done = 0
    for item in items:
        yield item
        done += 1
        if bar:
            _draw(description, done, total, time.perf_counter() - start)
    if bar:
        sys.stderr.write("\n")
    log.info(f"{description}: {done} {unit} done in {time.perf_counter() - start:.1f} s.")


@contextmanager
def timed(description: str) -> Iterator[None]:
    """Log a step that cannot count its progress, and how long it took."""
    start = time.perf_counter()
    log.info(f"{description} ...")
    yield
    log.info(f"{description}: done in {time.perf_counter() - start:.1f} s.")


def _draw(description: str, done: int, total: int, elapsed: float) -> None:
    share = min(1.0, done / total) if total else 1.0
    filled = int(round(share * BAR_WIDTH))
    left = elapsed / done * (total - done) if done else 0.0
    sys.stderr.write(f"\r{description} [{'=' * filled}{' ' * (BAR_WIDTH - filled)}] "
                     f"{done}/{total}  ETA {_clock(left)}  ")
    sys.stderr.flush()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"
