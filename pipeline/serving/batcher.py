"""Requests that arrive together are tagged together: dynamic batching for ``umt serve``.

Each request hands its items to :meth:`MicroBatcher.submit` and awaits its results. One worker
takes the first waiting request and keeps taking whatever else is waiting or arrives. The batch
closes when it holds ``max_batch`` items, when ``max_wait`` seconds have passed since the worker
took its first request, or when nothing more is waiting and it holds the items the server
*expects*: those the previous batch answered (their clients may send again) plus those already
waiting when it was answered. It then runs through ``work`` on the :class:`ModelThread`, the one
thread where the server ever runs torch. While a batch runs, new requests queue up, so under
load every batch is full; alone, a request waits at most ``max_wait``.

Why expect: under closed-loop load (N clients, each waiting for its answer) a batch holding the
N posts will get no more, and waiting out ``max_wait`` only idles the model: with 16 clients on
2 cores, 5 of every 73 ms; closing when the expected posts are in served 1.17x as many posts
(docs/results.md). The rule keeps clients together. Clients split into two groups (one queued
while the other's batch runs) are expected together, so the next batch waits for both; more
clients (new ones waiting when a batch is answered) raise the expectation; fewer lower it after
one batch that waits out ``max_wait``. The wait counts from when the worker takes the first
request, not from its arrival, for the same reason, and a batch does not close when arrivals
merely pause: closing once no request had arrived for 1 ms split 16 clients into groups that
never joined again (174 posts/s against 219).

At most ``max_queued`` items wait at once; beyond that :meth:`submit` raises :class:`Busy` (the
server answers 503), so a flood of requests cannot grow memory without bound. An exception in
``work`` fails the requests of that batch only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ModelThread:
    """The one thread where the server runs torch: loading the model, building its tagger, every batch.

    libgomp (torch's OpenMP on Linux) gives each thread that enters a parallel region a team of
    its own. A model loaded on the main thread and run on another leaves two teams, more OpenMP
    threads than cores on a small machine; libgomp then stops spin-waiting between parallel
    regions and every one of them pays a thread wake-up. On 2 cores, with 16 clients, a batch of
    16 posts took 82 to 85 ms that way and 58 ms with everything on this thread (177 to 182
    against 258 to 259 posts/s served).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umt-model")

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the thread, waited for (setting up, before serving)."""
        return self._pool.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread, awaited (serving)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


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
        thread: ModelThread,
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
        self._thread = thread
        self.expected = max_batch  # the items a batch closes at when nothing more waits (module docstring)

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
        self._thread.close()

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
                    if left <= 0 or size >= self.expected:
                        break
                    try:
                        waiting = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                batch.append(waiting)
                size += len(waiting.items)
            self.queued -= size
            items = [item for waiting in batch for item in waiting.items]
            failure: Exception | None = None
            try:
                results = await self._thread.run(self.work, items)
            except Exception as e:  # noqa: BLE001 - handed to the requests of this batch, which answer for it
                failure = e
            self.expected = len(items) + self.queued  # the posts answered now, and those already waiting
            if failure is not None:
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(failure)
                continue
            self.batches += 1
            self.items += len(items)
            start = 0
            for waiting in batch:
                if not waiting.done.done():  # a client that went away has cancelled its future
                    waiting.done.set_result(results[start : start + len(waiting.items)])
                start += len(waiting.items)
