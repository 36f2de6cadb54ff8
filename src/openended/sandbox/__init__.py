"""Run untrusted, LM-written Python: bubblewrap isolation, resource limits, warm workers."""

from openended.sandbox.launch import best_isolation, bwrap_path
from openended.sandbox.limits import Limits
from openended.sandbox.pool import Sandbox, SandboxUnavailableError
from openended.sandbox.result import ErrorKind, SandboxError, SandboxResult

__all__ = [
    "ErrorKind",
    "Limits",
    "Sandbox",
    "SandboxError",
    "SandboxResult",
    "SandboxUnavailableError",
    "best_isolation",
    "bwrap_path",
]
