"""Requests that arrive together are tagged together: dynamic batching for ``umt serve``.

Each request hands its items to :meth:`MicroBatcher.submit` and awaits its results. One worker
takes the first waiting request, then keeps taking whatever else arrives until the batch holds
``max_batch`` items or ``max_wait`` seconds have passed since it began, and runs the whole
batch through ``work`` in one thread (the model's: torch is never entered from two threads at
once). While a batch runs, new requests queue up, so under load every batch is full and the
server approaches offline batch throughput; alone, a request waits at most ``max_wait``.

At most ``max_queued`` items wait at once; beyond that :meth:`submit` raises :class:`Busy` (the
server answers 503), so a flood of requests cannot grow memory without bound. An exception in
``work`` fails the requests of that batch only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """Too many items are waiting: the request is refused rather than queued."""


@dataclass
class _Waiting:
    items: Sequence[Any]
    done: asyncio.Future = field(repr=False)


class MicroBatcher:
    def __init__(
        self,
        work: Callable[[list[Any]], list[Any]],
        max_batch: int = 64,
        max_wait: float = 0.005,
        max_queued: int = 4096,
    ):
        self.work = work
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.queued = 0
        self.batches = 0  # batches run so far (the server's /v1/health reports it)
        self.items = 0
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._worker: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umt-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The results of ``items``, in order, once the batch holding them has run."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self.queued + len(items) > self.max_queued:
            raise Busy(f"{self.queued} posts are waiting to be tagged; try again shortly")
        waiting = _Waiting(items, asyncio.get_running_loop().create_future())
        self.queued += len(items)
        self._queue.put_nowait(waiting)
        return await waiting.done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].items)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    waiting = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        waiting = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                batch.append(waiting)
                size += len(waiting.items)
            self.queued -= size
            items = [item for waiting in batch for item in waiting.items]
            try:
                results = await loop.run_in_executor(self._thread, self.work, items)
            except Exception as e:  # noqa: BLE001 - handed to the requests of this batch, which answer for it
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(e)
                continue
            self.batches += 1
            self.items += len(items)
            start = 0
            for waiting in batch:
                if not waiting.done.done():  # a client that went away has cancelled its future
                    waiting.done.set_result(results[start : start + len(waiting.items)])
                start += len(waiting.items)
