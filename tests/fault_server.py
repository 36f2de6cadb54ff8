"""A fault-injecting OpenAI-compatible server for tests (raw asyncio HTTP on 127.0.0.1).

Each incoming request takes the next fault from `faults` (then "ok"): "500", "429"
(with Retry-After: 1), "hang" (never answers), "malformed" (invalid JSON), "empty" (no
choices), "drop" (closes the connection without a response), "slow" (answers after
`slow_seconds`), or "ok". Completions are a deterministic function of the request seed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque

from tests.conftest import COMPLETIONS


class FaultServer:
    def __init__(self, faults: list[str] | None = None, *, default: str = "ok") -> None:
        self.faults: deque[str] = deque(faults or [])
        self.default = default
        self.slow_seconds = 0.3
        self.log: list[tuple[str, float]] = []  # (fault, arrival time)
        self.answered = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    @staticmethod
    def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        reason = {
            200: "OK",
            400: "Bad Request",
            429: "Too Many Requests",
            500: "Internal Server Error",
        }[status]
        lines = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _completion(self, request: dict) -> bytes:
        seed = request.get("seed") or 0
        n = request.get("n", 1)
        choices = [
            {
                "index": i,
                "text": COMPLETIONS[(seed + i) % len(COMPLETIONS)],
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i in range(n)
        ]
        return json.dumps(
            {
                "id": "x",
                "object": "text_completion",
                "created": 0,
                "model": "fault",
                "choices": choices,
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 3 * n,
                    "total_tokens": 10 + 3 * n,
                },
            }
        ).encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            fault = self.faults.popleft() if self.faults else self.default
            self.log.append((fault, time.monotonic()))
            if fault == "drop":
                writer.transport.abort()
                return
            if fault == "hang":
                await asyncio.sleep(3600)
            if fault == "slow":
                await asyncio.sleep(self.slow_seconds)
            if fault == "400":
                data = self._response(400, b'{"error": {"message": "bad"}}')
            elif fault == "500":
                data = self._response(500, b'{"error": {"message": "boom"}}')
            elif fault == "429":
                data = self._response(
                    429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"}
                )
            elif fault == "malformed":
                data = self._response(200, b'{"choices": [{"text": "unterminated')
            elif fault == "empty":
                data = self._response(
                    200,
                    json.dumps(
                        {
                            "id": "x",
                            "object": "text_completion",
                            "created": 0,
                            "model": "fault",
                            "choices": [],
                            "usage": None,
                        }
                    ).encode(),
                )
            else:
                data = self._response(200, self._completion(body))
            writer.write(data)
            await writer.drain()
            self.answered += 1
            writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
