"""The server's batcher on a stand-in model: which requests run together."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ftk.server.batching import Batcher

# Long enough that a loaded test machine keeps the order of events below.
CALL_S = 0.8
TIMEOUT_S = 0.3


class SlowModel:
    """Doubles each payload after CALL_S seconds; records the batches it ran."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_call_done = threading.Event()

    def __call__(self, key, payloads):
        time.sleep(CALL_S)
        if any(payload < 0 for payload in payloads):
            raise ValueError("negative input")
        self.batches.append(list(payloads))
        self.first_call_done.set()
        return [payload * 2 for payload in payloads]


def run_batcher(scenario) -> SlowModel:
    model = SlowModel()

    async def main():
        batcher = Batcher(model, max_batch=8, timeout_s=TIMEOUT_S)
        try:
            await scenario(batcher, model)
        finally:
            await batcher.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    return model


def test_requests_queued_during_a_call_wait_for_the_answered_clients():
    async def scenario(batcher, model):
        first = asyncio.ensure_future(batcher.submit("k", 1, 1))
        await asyncio.sleep(TIMEOUT_S + 0.1)  # the first batch has closed and runs
        queued = [asyncio.ensure_future(batcher.submit("k", n, 1)) for n in (2, 3, 4)]
        await asyncio.to_thread(model.first_call_done.wait)
        # An answered client's next request, just after the call ended: past
        # the queued requests' own timeout, within the one counted from the call's end.
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(batcher.submit("k", 5, 1))
        assert await asyncio.gather(first, *queued, late) == [2, 4, 6, 8, 10]

    model = run_batcher(scenario)
    assert model.batches == [[1], [2, 3, 4, 5]]


def test_a_failing_batch_fails_only_the_request_that_broke_it():
    async def scenario(batcher, model):
        jobs = [asyncio.ensure_future(batcher.submit("k", n, 1)) for n in (1, -1, 3)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert results[0] == 2 and results[2] == 6
        assert isinstance(results[1], ValueError)

    model = run_batcher(scenario)
    assert model.batches == [[1], [3]]


@pytest.mark.parametrize("sizes, expected", [((5, 5), [[5], [5]]), ((3, 5), [[3, 5]])])
def test_a_batch_holds_at_most_max_batch_instances(sizes, expected):
    async def scenario(batcher, model):
        jobs = [asyncio.ensure_future(batcher.submit("k", size, size)) for size in sizes]
        assert await asyncio.gather(*jobs) == [2 * size for size in sizes]

    assert run_batcher(scenario).batches == expected
