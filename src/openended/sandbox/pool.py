"""`Sandbox`: run untrusted Python in a pool of warm, isolated, resource-limited workers."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from openended.errors import InfrastructureError
from openended.sandbox.launch import best_isolation, bwrap_path
from openended.sandbox.limits import Limits
from openended.sandbox.process import SandboxProcess, SandboxStartError
from openended.sandbox.result import SandboxError, SandboxResult
from openended.sandbox.worker_runtime import program as program_runner

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


class SandboxUnavailableError(InfrastructureError):
    """The sandbox cannot run programs here: the requested isolation is missing, or a
    worker cannot start (the message says why and what to do)."""


class Sandbox:
    """Runs `entry(*args)` of untrusted program text with limits, in warm workers.

    Each worker is a fork server that never runs untrusted code itself: every program runs
    in a fresh child process, under the worker slot's private uid (when started as root),
    with resource limits, a seccomp filter (no new namespaces, no tracing, no leaving its
    process group) and no descriptor but its own result pipe and stdout/stderr. When the
    program has answered, died or timed out, everything it started is killed and its
    scratch folder emptied. So nothing of one program — interpreter state, threads,
    processes, files — can reach another's run or result, and the warm server keeps its
    speed (imports, including `preload`, are done once).

    Isolation (`isolation`):

    - ``"bwrap"``: bubblewrap — own PID, network, IPC and UTS namespaces (no network),
      a read-only view of /usr and the Python installation only, a size-limited tmpfs
      as scratch, an empty environment; as root the server keeps only the capabilities
      it needs to switch uid and clean up.
    - ``"rlimits"``: a plain subprocess with the same limits, uid and seccomp filter,
      but no filesystem or network isolation; the scratch quota is measured, not
      enforced by the kernel. Used by ``"auto"`` when bwrap is missing, with a warning.
    - ``"inprocess"``: exec in this process with no limits at all. Only for trusted
      code, and only when asked for by name.

    The first worker starts in the constructor and runs a probe program (an import of the
    standard library, under the seccomp filter): a sandbox that cannot run programs raises
    `SandboxUnavailableError` here, naming the cause, instead of failing every run later.

    Args:
        limits: per-evaluation limits.
        isolation: see above.
        workers: most evaluations at once.
        recycle_after: runs per worker process (a worker is also replaced after any sign
            that a run left something behind).
        base_uid: uid of worker slot i is ``base_uid + i`` (when running as root). By
            default each pool takes uids no other open pool uses, in this process or any
            other, so that two pools never share a uid.
        preload: modules each worker imports once, before serving (e.g. ``"numpy"`` for
            an evaluator that uses it): programs then find them already imported.
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        isolation: IsolationChoice = "auto",
        workers: int = 2,
        recycle_after: int = 10_000,
        base_uid: int | None = None,
        preload: Sequence[str] = (),
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
        self.preload = tuple(preload)
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
        self.info: dict[str, Any] = {"isolation": self.isolation}
        if self.isolation != "inprocess":
            try:
                self._processes[0] = self._start(0)
            except SandboxStartError as exc:
                self.close()
                raise SandboxUnavailableError(_explain(str(exc), self.isolation)) from None
            self.info.update(
                {
                    key: self._processes[0].info[key]  # type: ignore[union-attr]
                    for key in ("seccomp", "scratch", "mapped_paths")
                }
            )

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
                process = self._start_or_raise(slot)
            result = process.run(program, entry, args, kwargs)
            if process.retry:  # refused before the program ran: once more, on a new worker
                process.close()
                process = self._processes[slot] = self._start_or_raise(slot)
                result = process.run(program, entry, args, kwargs)
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

    def _start_or_raise(self, slot: int) -> SandboxProcess:
        """Start the slot's worker; one retry, then `SandboxUnavailableError` (a worker
        that cannot start is the machine's fault, not the program's)."""
        try:
            return self._start(slot)
        except SandboxStartError:
            time.sleep(0.5)
        try:
            return self._start(slot)
        except SandboxStartError as exc:
            raise SandboxUnavailableError(_explain(str(exc), self.isolation)) from None

    def _start(self, slot: int) -> SandboxProcess:
        process = self._spawner.submit(
            SandboxProcess,
            isolation=self.isolation,  # type: ignore[arg-type]
            limits=self.limits,
            uid=self._uids[slot],
            preload=self.preload,
        ).result()
        with self._lock:
            self.started += 1
        self._processes[slot] = process
        return process

    def _run_inprocess(
        self, program: str, entry: str, args: list[Any], kwargs: dict[str, Any]
    ) -> SandboxResult:
        start = time.perf_counter()
        response = program_runner.evaluate(
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


def _explain(reason: str, isolation: str) -> str:
    """The start failure, with what to do about the common cause: an unprivileged uid that
    cannot read the Python installation."""
    advice = ""
    if "ModuleNotFoundError" in reason or "ImportError" in reason:
        advice = (
            f" (the sandbox's unprivileged uid cannot import from {sys.base_prefix}: make its "
            "folders readable to other users, e.g. chmod o+rx on each parent folder"
            + (
                ", or install bubblewrap: apt-get install bubblewrap)"
                if isolation != "bwrap"
                else ")"
            )
        )
    return f"{reason}{advice}"
