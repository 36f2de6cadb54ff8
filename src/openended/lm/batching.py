"""Dynamic batching: requests that arrive within a short window are generated together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openended.lm.base import GenerationRequest, GenerationResult

GenerateSync = Callable[[Sequence[GenerationRequest]], list[GenerationResult]]


@dataclass
class _Pending:
    request: GenerationRequest
    future: asyncio.Future[GenerationResult]


class DynamicBatcher:
    """Collects concurrent requests into batches for a blocking batched generator.

    The first request of a batch waits at most `window` seconds for company; a batch
    closes early when it holds `max_rows` sequences (sum of ``n``). With `window=0` and
    `max_rows=1` every request is generated alone (batching off).

    Args:
        generate: the blocking batched generator (run in a worker thread).
        window: seconds to wait for more requests after the first.
        max_rows: most sequences per batch.
    """

    def __init__(
        self, generate: GenerateSync, *, window: float = 0.005, max_rows: int = 32
    ) -> None:
        self._generate = generate
        self.window = window
        self.max_rows = max_rows
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # requests per batch, for inspection

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        self.start()
        future: asyncio.Future[GenerationResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        rows = batch[0].request.n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while rows < self.max_rows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            rows += item.request.n
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.done()]  # a client may have gone away
            if not live:
                continue
            self.batches.append(len(live))
            try:
                results = await asyncio.to_thread(self._generate, [p.request for p in live])
            except Exception as exc:  # every request of the batch gets the error
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, result in zip(live, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
