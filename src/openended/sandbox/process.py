"""One warm sandbox worker (a fork server), driven from the host with select-based I/O.

The host never raises for anything a program does and never buffers more than the output
cap per stream plus one frame of at most the result cap: frames are read through a
bounded `FrameReader`, and a frame that is oversized, malformed or carries the wrong
nonce stops the worker (it is recycled) and is reported as the run's ``sandbox_error``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, get_args

from openended.sandbox.launch import (
    SCRATCH,
    Isolation,
    bwrap_command,
    rlimits_command,
    rlimits_env,
    site_packages,
)
from openended.sandbox.limits import Limits
from openended.sandbox.result import ErrorKind, SandboxError, SandboxResult
from openended.sandbox.worker_runtime.frames import FrameError, FrameReader, encode
from openended.sandbox.worker_runtime.responses import parse_error
from openended.sandbox.worker_runtime.seccomp import build_filter

READY_LIMIT = 64 << 10
START_SECONDS = 60.0
# The fork server enforces the wall-clock limit itself; the host kills the worker only
# when the server has not answered this long after it.
GRACE_SECONDS = 3.0
KINDS = frozenset(get_args(ErrorKind))


class SandboxStartError(RuntimeError):
    """A worker process could not be started; the message has its stderr."""


def _kill_uid(uid: int) -> None:
    """SIGKILL every process owned by `uid` (the worker slot's private uid)."""
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found = True
                    os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.01)


class SandboxProcess:
    """A fork server evaluating requests one at a time until it is closed or breaks.

    Args:
        isolation: ``"bwrap"`` or ``"rlimits"``.
        limits: resource limits of every run.
        uid: the unprivileged uid programs run as (when started as root).
        preload: modules the server imports once, so that programs find them loaded.
    """

    def __init__(
        self,
        *,
        isolation: Isolation,
        limits: Limits,
        uid: int | None,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.isolation = isolation
        self.limits = limits
        self.runs = 0
        self.broken = False
        self.retry = False  # the last request was refused: run it again on a new worker
        self.uid = uid
        self._host_scratch: Path | None = None
        if isolation == "bwrap":
            scratch = SCRATCH
        else:
            # A root-owned folder the program cannot rename, holding its working folder.
            self._host_scratch = Path(tempfile.mkdtemp(prefix="openended-sandbox-"))
            os.chmod(self._host_scratch, 0o711)
            work = self._host_scratch / "work"
            work.mkdir(mode=0o700)
            scratch = str(work)
        settings = json.dumps(
            {
                "uid": uid,
                "isolation": isolation,
                "scratch": scratch,
                "max_scratch_bytes": limits.max_scratch_mb << 20,
                "max_scratch_files": limits.max_scratch_files,
                "memory_bytes": limits.memory_mb << 20,
                "max_processes": limits.max_processes,
                "max_file_bytes": limits.max_file_mb << 20,
                "max_result_bytes": limits.max_result_bytes,
                "cpu_seconds": limits.cpu_seconds,
                "wall_seconds": limits.wall_seconds,
                "preload": list(preload),
                "site_packages": site_packages(),
            }
        )
        request_read, self._request = os.pipe()
        self._response, response_write = os.pipe()
        passed = [request_read, response_write]
        if isolation == "bwrap":
            program = build_filter()
            seccomp_fd = _readable(program) if program is not None else None
            if seccomp_fd is not None:
                passed.append(seccomp_fd)
            command = bwrap_command(
                scratch_bytes=limits.max_scratch_mb << 20,
                request_fd=request_read,
                response_fd=response_write,
                settings_json=settings,
                seccomp_fd=seccomp_fd,
            )
            env: dict[str, str] | None = {}
            cwd = None
        else:
            command = rlimits_command(
                request_fd=request_read, response_fd=response_write, settings_json=settings
            )
            env, cwd = rlimits_env(Path(scratch)), scratch
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(passed),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        for fd in passed:
            os.close(fd)
        self._out = self.process.stdout.fileno()  # type: ignore[union-attr]
        self._err = self.process.stderr.fileno()  # type: ignore[union-attr]
        for fd in (self._out, self._err, self._response, self._request):
            os.set_blocking(fd, False)
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict[str, Any]:
        """The server's ready message: its uid, whether seccomp is on, the scratch kind."""
        deadline = time.perf_counter() + START_SECONDS
        reader = FrameReader(READY_LIMIT)
        outputs = {self._out: bytearray(), self._err: bytearray()}
        message: dict[str, Any] | None = None
        try:
            while message is None and time.perf_counter() < deadline:
                readable, _, _ = select.select([self._response, self._out, self._err], [], [], 0.5)
                self._drain(outputs)
                if self._response in readable:
                    chunk = self._read(self._response, reader.wanted())
                    if chunk is None:
                        break
                    message = reader.feed(chunk)
        except FrameError as exc:
            message = {"ready": False, "problem": f"bad ready message: {exc}"}
        if message is not None and message.get("ready") is True:
            return message
        self._drain(outputs)
        self.close()
        problem = (message or {}).get("problem")
        detail = bytes(outputs[self._err]).decode("utf-8", errors="replace").strip()[-2000:]
        reason = problem or detail or f"no answer within {START_SECONDS:g} s"
        raise SandboxStartError(f"the {self.isolation} sandbox did not start: {reason}")

    # -- lifecycle --------------------------------------------------------------------------

    def kill(self) -> None:
        """Kill the whole process tree: bwrap's PID namespace dies with it; without bwrap,
        every process of the worker's private uid is killed too (or, without a uid, the
        server is asked to kill its run first)."""
        self.broken = True
        if self.isolation == "rlimits" and self.uid is None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.5)
        if self.uid is not None:
            _kill_uid(self.uid)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._request)
        self.kill()
        with contextlib.suppress(OSError):
            os.close(self._response)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._host_scratch is not None:
            shutil.rmtree(self._host_scratch, ignore_errors=True)

    # -- one run ----------------------------------------------------------------------------

    def run(
        self, program: str, entry: str, args: list[Any], kwargs: dict[str, Any]
    ) -> SandboxResult:
        """Evaluate `entry(*args, **kwargs)` of `program` in a fresh child of the server;
        never raises for the program's faults (they come back as `SandboxResult.error`)."""
        start = time.perf_counter()
        self.runs += 1
        limits = self.limits
        nonce = secrets.token_hex(8)
        request = encode(
            {"program": program, "entry": entry, "args": args, "kwargs": kwargs, "nonce": nonce}
        )
        outputs = {self._out: bytearray(), self._err: bytearray()}
        deadline = start + limits.wall_seconds + GRACE_SECONDS
        try:
            self._write(request, deadline)
        except (BrokenPipeError, TimeoutError):
            self.kill()
            return self._result(None, self._died(), outputs, start)
        reader = FrameReader(limits.max_result_bytes + (128 << 10))
        message: dict[str, Any] | None = None
        error: SandboxError | None = None
        try:
            while message is None:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    self.kill()
                    error = SandboxError(
                        "timeout", f"wall-clock limit of {limits.wall_seconds:g} s"
                    )
                    break
                readable, _, _ = select.select(
                    [self._response, self._out, self._err], [], [], remaining
                )
                if self._drain(outputs) > limits.max_output_bytes:
                    self.kill()
                    error = _too_much_output(limits)
                    break
                if self._response in readable:
                    chunk = self._read(self._response, reader.wanted())
                    if chunk is None:
                        self.kill()
                        error = self._died()
                        break
                    message = reader.feed(chunk)
        except FrameError as exc:
            self.kill()
            error = SandboxError("sandbox_error", f"the worker sent a bad frame: {exc}")
        if message is None:
            return self._result(None, error, outputs, start)
        if self._drain(outputs) > limits.max_output_bytes:
            self.kill()
            return self._result(None, _too_much_output(limits), outputs, start)
        value, error = self._interpret(message, nonce)
        return self._result(value, error, outputs, start)

    def _interpret(self, message: dict[str, Any], nonce: str) -> tuple[Any, SandboxError | None]:
        """The value or error a response carries; anything unexpected recycles the worker
        and is the run's ``sandbox_error``."""
        if message.get("nonce") != nonce:
            self.kill()
            return None, SandboxError("sandbox_error", "the worker's answer has the wrong nonce")
        if message.get("retry"):  # the worker could not clean up after an earlier run
            self.kill()
            self.retry = True
            return None, SandboxError("sandbox_error", str(message.get("error")))
        if message.get("tampered"):
            self.broken = True  # the run left something behind: recycle the worker
        if isinstance(message.get("value"), str):
            try:
                return json.loads(message["value"]), None
            except (ValueError, RecursionError) as exc:
                return None, SandboxError(
                    "bad_return_value", f"the return value cannot be read: {exc}"[:500]
                )
        parsed = parse_error(message, KINDS)
        if parsed is not None:
            return None, SandboxError(*parsed)
        self.kill()
        return None, SandboxError("sandbox_error", "the worker's answer is malformed")

    def _died(self) -> SandboxError:
        status = self._wait_status()
        return SandboxError(
            "killed", f"the sandbox worker died during the run (exit status {status})"
        )

    def _result(
        self, value: Any, error: SandboxError | None, outputs: dict[int, bytearray], start: float
    ) -> SandboxResult:
        cap = self.limits.max_output_bytes
        return SandboxResult(
            value=value,
            error=error,
            stdout=bytes(outputs[self._out][:cap]).decode("utf-8", errors="replace"),
            stderr=bytes(outputs[self._err][:cap]).decode("utf-8", errors="replace"),
            wall_seconds=time.perf_counter() - start,
            isolation=self.isolation,
        )

    def _wait_status(self) -> int | None:
        try:
            return self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    @staticmethod
    def _read(fd: int, size: int) -> bytes | None:
        """At most `size` bytes; b"" when nothing is there now; None at end of file."""
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return b""
        return data or None

    def _drain(self, outputs: dict[int, bytearray]) -> int:
        """Read what stdout and stderr hold now; returns the total kept so far."""
        cap = self.limits.max_output_bytes + 1
        for fd, buffer in outputs.items():
            while len(buffer) < cap:
                try:
                    data = os.read(fd, min(1 << 16, cap - len(buffer)))
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                buffer += data
        return sum(len(b) for b in outputs.values())

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError
            _, writable, _ = select.select([], [self._request], [], remaining)
            if writable:
                written = os.write(self._request, view[: 1 << 16])
                view = view[written:]


def _readable(data: bytes) -> int:
    """A descriptor from which `data` can be read to its end (a pipe; `data` is small)."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def _too_much_output(limits: Limits) -> SandboxError:
    return SandboxError("output_too_large", f"more than {limits.max_output_bytes} bytes of output")
