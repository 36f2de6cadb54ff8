"""`Sandbox`: run untrusted Python in a pool of warm, isolated, resource-limited workers."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from openended.sandbox import worker_main
from openended.sandbox.launch import best_isolation, bwrap_path
from openended.sandbox.limits import Limits
from openended.sandbox.process import SandboxProcess, SandboxStartError
from openended.sandbox.result import SandboxError, SandboxResult

logger = logging.getLogger(__name__)
IsolationChoice = Literal["auto", "bwrap", "rlimits", "inprocess"]


FIRST_SANDBOX_UID = 61000
_UID_LOCK_DIR = Path(tempfile.gettempdir()) / "openended-sandbox-uids"


def _reserve_uids(count: int) -> list[tuple[int, int]]:
    """`count` consecutive sandbox uids that no other open pool holds, in this process or
    any other: each uid is held with an exclusive lock on a file (released when the pool
    closes or its process dies). Returns (uid, lock fd) pairs."""
    _UID_LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    first = FIRST_SANDBOX_UID
    while True:
        held: list[tuple[int, int]] = []
        for uid in range(first, first + count):
            fd = os.open(_UID_LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                break
            held.append((uid, fd))
        if len(held) == count:
            return held
        _release_uids(held)
        first = first + len(held) + 1


def _release_uids(held: list[tuple[int, int]]) -> None:
    for _, fd in held:
        os.close(fd)  # closing the descriptor drops its lock


class SandboxUnavailableError(RuntimeError):
    """The requested isolation cannot be had on this machine."""


class Sandbox:
    """Runs `entry(*args)` of untrusted program text with limits, in warm workers.

    Isolation (`isolation`):

    - ``"bwrap"``: bubblewrap — own PID, network, IPC and UTS namespaces (no network),
      a read-only view of /usr and the Python installation only, a private writable
      scratch folder, an empty environment; inside, the code runs as an unprivileged
      uid with RLIMIT_AS / NPROC / CPU / FSIZE.
    - ``"rlimits"``: a plain subprocess with the same limits and uid, but no filesystem
      or network isolation. Used by ``"auto"`` when bwrap is missing, with a warning.
    - ``"inprocess"``: exec in this process with no limits at all. Only for trusted
      code, and only when asked for by name.

    Each worker evaluates many programs and is recycled after `recycle_after` runs or
    after any fault (timeout, crash, output flood, threads left running).

    Args:
        limits: per-evaluation limits.
        isolation: see above.
        workers: most evaluations at once.
        recycle_after: runs per worker process.
        base_uid: uid of worker slot i is ``base_uid + i`` (when running as root). By
            default each pool takes uids no other open pool of this process uses, so
            that two pools never share a uid (RLIMIT_NPROC and the check for left-over
            processes are per uid).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        isolation: IsolationChoice = "auto",
        workers: int = 2,
        recycle_after: int = 200,
        base_uid: int | None = None,
    ) -> None:
        self.limits = limits or Limits()
        if isolation == "auto":
            resolved = best_isolation()
            if resolved != "bwrap":
                logger.warning(
                    "bubblewrap is not available: the sandbox runs code with resource limits "
                    "only, without filesystem or network isolation (apt-get install bubblewrap)"
                )
        elif isolation == "bwrap" and bwrap_path() is None:
            raise SandboxUnavailableError(
                "isolation 'bwrap' requested but bubblewrap is not installed or cannot create "
                "namespaces here (Debian: apt-get install bubblewrap)"
            )
        else:
            resolved = isolation
        self.isolation: IsolationChoice = resolved  # type: ignore[assignment]
        self.workers = workers
        self.recycle_after = recycle_after
        self._free: queue.Queue[int] = queue.Queue()
        self._processes: dict[int, SandboxProcess | None] = {}
        for slot in range(workers):
            self._free.put(slot)
            self._processes[slot] = None
        root = os.geteuid() == 0
        self._reserved = _reserve_uids(workers) if root and base_uid is None else []
        first = self._reserved[0][0] if self._reserved else base_uid
        self._uids: dict[int, int | None] = {
            slot: (first + slot if root and first is not None else None) for slot in range(workers)
        }
        self._lock = threading.Lock()
        # Workers are started from one long-lived thread: bwrap's --die-with-parent uses
        # PR_SET_PDEATHSIG, which fires when the *thread* that started it exits.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self.started = 0  # worker processes started, for inspection
        self._closed = False

    # -- running ----------------------------------------------------------------------------

    def run_sync(
        self,
        program: str,
        entry: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> SandboxResult:
        """Blocking `run`."""
        try:
            args = json.loads(json.dumps(list(args)))
            kwargs = json.loads(json.dumps(kwargs or {}))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"sandbox arguments must be JSON-serialisable: {exc}") from None
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        if self.isolation == "inprocess":
            return self._run_inprocess(program, entry, args, kwargs)
        slot = self._free.get()
        try:
            process = self._processes[slot]
            if process is not None and process.process.poll() is not None:
                process.close()  # died while idle (killed from outside): start afresh
                process = self._processes[slot] = None
            if process is None:
                try:
                    process = self._start(slot)
                except SandboxStartError as exc:
                    return SandboxResult(
                        error=SandboxError("sandbox_error", str(exc)), isolation=self.isolation
                    )
            result = process.run(program, entry, args, kwargs)
            process.clean_scratch()
            if process.broken or process.runs >= self.recycle_after:
                process.close()
                self._processes[slot] = None
            return result
        finally:
            self._free.put(slot)

    async def run(
        self,
        program: str,
        entry: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> SandboxResult:
        """Evaluate ``entry(*args, **kwargs)`` of `program` in a worker. Arguments and the
        return value are JSON values. The program's faults come back as
        `SandboxResult.error`; this never raises for them."""
        return await asyncio.to_thread(self.run_sync, program, entry, args, kwargs)

    async def map(
        self, program: str, entry: str, arg_lists: Sequence[Sequence[Any]]
    ) -> list[SandboxResult]:
        """Evaluate one program on many argument lists, `workers` at a time."""
        return list(await asyncio.gather(*(self.run(program, entry, a) for a in arg_lists)))

    @property
    def uids(self) -> tuple[int, ...]:
        """The uids the workers run as (empty when not running as root)."""
        return tuple(uid for uid in self._uids.values() if uid is not None)

    def _start(self, slot: int) -> SandboxProcess:
        process = self._spawner.submit(
            SandboxProcess,
            isolation=self.isolation,  # type: ignore[arg-type]
            limits=self.limits,
            uid=self._uids[slot],
            max_runs=self.recycle_after,
        ).result()
        with self._lock:
            self.started += 1
        self._processes[slot] = process
        return process

    def _run_inprocess(
        self, program: str, entry: str, args: list[Any], kwargs: dict[str, Any]
    ) -> SandboxResult:
        start = time.perf_counter()
        response = worker_main.evaluate(
            {"program": program, "entry": entry, "args": args, "kwargs": kwargs},
            self.limits.max_result_bytes,
        )
        elapsed = time.perf_counter() - start
        if "error" in response:
            e = response["error"]
            return SandboxResult(
                error=SandboxError(e["kind"], e["message"], e.get("traceback")),
                wall_seconds=elapsed,
                isolation="inprocess",
            )
        return SandboxResult(
            value=json.loads(response["value"]), wall_seconds=elapsed, isolation="inprocess"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every worker and remove their scratch folders."""
        was_closed = self._closed
        self._closed = True
        for slot, process in list(self._processes.items()):
            if process is not None:
                process.close()
                self._processes[slot] = None
        if not was_closed:  # only now that no worker runs as them
            _release_uids(self._reserved)
        self._spawner.shutdown(wait=False)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()
