"""Structured results and errors of sandboxed runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ErrorKind = Literal[
    "timeout",  # wall-clock or CPU limit
    "memory",  # MemoryError under the address-space limit
    "exception",  # the code raised; `traceback` has the frames of the program
    "exit",  # sys.exit / os._exit
    "killed",  # died from a signal (segfault, killed itself or its sandbox)
    "output_too_large",  # stdout/stderr or a scratch file over the limit
    "bad_return_value",  # not JSON-serialisable, or too large
    "sandbox_error",  # the sandbox itself failed (e.g. could not start)
]


@dataclass(frozen=True)
class SandboxError:
    """Why a run produced no value, in a form to show a language model."""

    kind: ErrorKind
    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        text = f"{self.kind}: {self.message}"
        return f"{text}\n{self.traceback}" if self.traceback else text


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run: a JSON value, or an error; with output and timing."""

    value: Any = None
    error: SandboxError | None = None
    stdout: str = ""
    stderr: str = ""
    wall_seconds: float = 0.0
    isolation: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None
