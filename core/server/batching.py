"""Requests that arrive together run as one model call.

A model call on 8 inputs costs little more than on 1 on a CPU, so the server
queues requests and runs those of the same kind together: up to `max_batch`
instances, waiting at most `timeout_s` for others to join, counted from the
first request's arrival or from the end of the model's last call, whichever
is later. The second clock keeps clients together: the requests that queued
during a call wait a moment for those the call's answers send next, instead
of running as a smaller batch of their own (8 clients would otherwise split
into two alternating groups). The calls run one at a time on a thread of
their own, so the event loop keeps reading requests while the model computes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

log = logging.getLogger(__name__)
# `run(key, payloads)` computes one result per payload, in order.
Run = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass(eq=False)  # jobs are compared by identity: payloads hold arrays
class _Job:
    key: Hashable
    payload: Any
    size: int
    future: asyncio.Future = field(repr=False)
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Gathers jobs of one key into batches for `run`.

    A job is one request's payload and its number of instances. A job larger
    than `max_batch` runs alone. When a combined call raises, each of its jobs
    runs again alone, so a bad request fails only itself.

    Attributes:
        calls: model calls made so far, and `instances` the instances they ran
            (the mean batch size is the one over the other).
    """

    def __init__(self, run: Run, max_batch: int, timeout_s: float):
        self._run = run
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._waiting: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftk-model")
        self._task: asyncio.Task | None = None
        self._free_since = 0.0  # when the model's last call ended
        self.calls = 0
        self.instances = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, payload: Any, size: int) -> Any:
        """The result of `run(key, [payload, ...])` for this payload."""
        if self._task is None:  # an application run without lifespan events
            self.start()
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Job(key, payload, size, future))
        self._arrived.set()
        return await future

    async def _serve(self) -> None:
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather()
            try:
                await self._call(batch)
            except Exception as error:  # noqa: BLE001 - the loop must go on serving
                log.exception("A batch failed")
                for job in batch:
                    _settle(job, error=error)
            self._free_since = time.monotonic()

    async def _gather(self) -> list[_Job]:
        """The first waiting job and those of its key that fit with it,
        waiting up to `timeout_s` for more to arrive (see the module's note)."""
        first = self._waiting.popleft()
        batch, total = [first], first.size
        deadline = max(first.arrived, self._free_since) + self.timeout_s
        while total < self.max_batch:
            fitting = next((job for job in self._waiting if job.key == first.key
                            and total + job.size <= self.max_batch), None)
            if fitting is not None:
                self._waiting.remove(fitting)
                batch.append(fitting)
                total += fitting.size
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        return batch

    async def _call(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        key = batch[0].key
        try:
            results = await loop.run_in_executor(self._executor, self._run, key,
                                                 [job.payload for job in batch])
        except Exception as error:  # noqa: BLE001 - handed to the requests
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            for job in batch:  # find which request fails, and serve the others
                await self._call([job])
            return
        self.calls += 1
        self.instances += sum(job.size for job in batch)
        for job, result in zip(batch, results):
            _settle(job, result=result)


def _settle(job: _Job, result: Any = None, error: Exception | None = None) -> None:
    if job.future.done():  # the client went away
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)
