"""One warm sandbox worker process, driven from the parent with blocking, select-based I/O."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from openended.sandbox.launch import (
    Isolation,
    bwrap_command,
    rlimits_command,
    rlimits_env,
)
from openended.sandbox.limits import Limits
from openended.sandbox.result import SandboxError, SandboxResult

SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


class SandboxStartError(RuntimeError):
    """A worker process could not be started; the message has its stderr."""


def _describe_death(status: int | None, isolation: Isolation) -> SandboxError:
    """Classify a worker that died before answering, from its exit status."""
    if status is None:
        return SandboxError("killed", "the sandbox died before answering")
    signum = (
        -status if status < 0 else (status - 128 if isolation == "bwrap" and status > 128 else 0)
    )
    if signum == signal.SIGXCPU:
        return SandboxError("timeout", "CPU time limit exceeded")
    if signum == signal.SIGXFSZ:
        return SandboxError("output_too_large", "wrote a file larger than the file size limit")
    if signum:
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        return SandboxError("killed", f"the program was killed by {name}")
    return SandboxError("exit", f"the program exited with status {status} before returning")


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
    """A worker evaluating requests one at a time until it is closed or breaks.

    Args:
        isolation: ``"bwrap"`` or ``"rlimits"``.
        limits: resource limits (fixed for the life of the process, except CPU time,
            which is reset for every request).
        uid: the unprivileged uid the code runs as (when started as root).
        max_runs: runs before the process should be recycled (sets its CPU lifetime).
    """

    def __init__(
        self, *, isolation: Isolation, limits: Limits, uid: int | None, max_runs: int
    ) -> None:
        self.isolation = isolation
        self.limits = limits
        self.runs = 0
        self.broken = False
        self.scratch = Path(tempfile.mkdtemp(prefix="openended-sandbox-"))
        if uid is not None:
            os.chown(self.scratch, uid, uid)
        os.chmod(self.scratch, 0o700)
        self.uid = uid
        settings = json.dumps(
            {
                "memory_bytes": limits.memory_mb << 20,
                "max_processes": limits.max_processes,
                "max_file_bytes": limits.max_file_mb << 20,
                "max_result_bytes": limits.max_result_bytes,
                "cpu_lifetime_seconds": int(limits.cpu_seconds * (max_runs + 1) + 60),
                "uid": uid,
            }
        )
        request_read, self._request = os.pipe()
        self._response, response_write = os.pipe()
        if isolation == "bwrap":
            command = bwrap_command(
                scratch=self.scratch,
                request_fd=request_read,
                response_fd=response_write,
                settings_json=settings,
            )
            env: dict[str, str] | None = {}
            cwd = None
        else:
            command = rlimits_command(
                request_fd=request_read, response_fd=response_write, settings_json=settings
            )
            env, cwd = rlimits_env(self.scratch), str(self.scratch)
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(request_read, response_write),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(request_read)
        os.close(response_write)
        self._out = self.process.stdout.fileno()  # type: ignore[union-attr]
        self._err = self.process.stderr.fileno()  # type: ignore[union-attr]
        for fd in (self._out, self._err, self._response, self._request):
            os.set_blocking(fd, False)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.perf_counter() + timeout
        buffer = bytearray()
        while time.perf_counter() < deadline:
            readable, _, _ = select.select([self._response], [], [], 0.5)
            if readable:
                chunk = self._read(self._response)
                if chunk is None:
                    break
                buffer += chunk
                if len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "big"):
                    self.sandbox_uid = json.loads(bytes(buffer[4:]))["uid"]
                    return
        outputs = {self._out: bytearray(), self._err: bytearray()}
        self._drain(outputs)
        self.close()
        detail = bytes(outputs[self._err]).decode("utf-8", errors="replace").strip()[-2000:]
        raise SandboxStartError(
            f"the {self.isolation} sandbox did not start: {detail or 'no output'}"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def kill(self) -> None:
        """Kill the whole process tree: bwrap's PID namespace dies with it; without bwrap,
        every process of the worker's private uid is killed too."""
        self.broken = True
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
        for fd in (self._response,):
            with contextlib.suppress(OSError):
                os.close(fd)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def clean_scratch(self) -> None:
        for entry in self.scratch.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()

    # -- one run ----------------------------------------------------------------------------

    def run(
        self, program: str, entry: str, args: list[Any], kwargs: dict[str, Any]
    ) -> SandboxResult:
        """Evaluate `entry(*args, **kwargs)` of `program`; never raises for the program's
        faults (they come back as `SandboxResult.error`)."""
        start = time.perf_counter()
        self.runs += 1
        limits = self.limits
        request = json.dumps(
            {
                "program": program,
                "entry": entry,
                "args": args,
                "kwargs": kwargs,
                "cpu_seconds": limits.cpu_seconds,
            }
        ).encode()
        outputs = {self._out: bytearray(), self._err: bytearray()}
        response = bytearray()
        error: SandboxError | None = None
        try:
            self._write(len(request).to_bytes(4, "big") + request, start)
        except (BrokenPipeError, TimeoutError) as exc:
            self.kill()
            error = _describe_death(self.process.poll(), self.isolation)
            if isinstance(exc, TimeoutError):
                error = SandboxError("timeout", f"wall-clock limit of {limits.wall_seconds:g} s")
            return self._result(None, error, outputs, start)
        deadline = start + limits.wall_seconds
        answered = False
        while not answered:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self.kill()
                error = SandboxError("timeout", f"wall-clock limit of {limits.wall_seconds:g} s")
                break
            readable, _, _ = select.select(
                [self._response, self._out, self._err], [], [], remaining
            )
            if self._drain(outputs) > limits.max_output_bytes:
                self.kill()
                error = SandboxError(
                    "output_too_large", f"more than {limits.max_output_bytes} bytes of output"
                )
                break
            if self._response in readable:
                chunk = self._read(self._response)
                if chunk is None:  # EOF: the worker died
                    status = self._wait_status()
                    error = _describe_death(status, self.isolation)
                    self.kill()
                    break
                response += chunk
                if len(response) >= 4 and len(response) >= 4 + int.from_bytes(response[:4], "big"):
                    answered = True
        if answered:
            if self._drain(outputs) > limits.max_output_bytes:
                self.kill()
                return self._result(
                    None,
                    SandboxError(
                        "output_too_large", f"more than {limits.max_output_bytes} bytes of output"
                    ),
                    outputs,
                    start,
                )
            message = json.loads(bytes(response[4:]))
            if message.get("threads", 1) > 1 or message.get("processes", 0) > 0:
                self.broken = True  # threads or processes left running: recycle the worker
            if "error" in message:
                e = message["error"]
                error = SandboxError(e["kind"], e["message"], e.get("traceback"))
                return self._result(None, error, outputs, start)
            return self._result(json.loads(message["value"]), None, outputs, start)
        return self._result(None, error, outputs, start)

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
    def _read(fd: int) -> bytes | None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return b""
        return data or None

    def _drain(self, outputs: dict[int, bytearray]) -> int:
        """Read what stdout and stderr hold now; returns the total kept so far."""
        cap = self.limits.max_output_bytes + 1
        for fd, buffer in outputs.items():
            while len(buffer) < cap:
                try:
                    data = os.read(fd, 1 << 16)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                buffer += data
        return sum(len(b) for b in outputs.values())

    def _write(self, data: bytes, start: float) -> None:
        view = memoryview(data)
        while view:
            remaining = start + self.limits.wall_seconds - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError
            _, writable, _ = select.select([], [self._request], [], remaining)
            if writable:
                written = os.write(self._request, view[: 1 << 16])
                view = view[written:]
