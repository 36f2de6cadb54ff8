"""Resource limits for one sandboxed evaluation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one evaluation may use.

    Attributes:
        wall_seconds: wall-clock time per evaluation; the whole process tree is killed after.
        cpu_seconds: CPU time per evaluation (RLIMIT_CPU, reset for each evaluation).
        memory_mb: address space of the sandbox process (RLIMIT_AS).
        max_processes: processes and threads of the sandbox user (RLIMIT_NPROC).
        max_output_bytes: stdout plus stderr per evaluation.
        max_result_bytes: size of the JSON-encoded return value.
        max_file_mb: largest file the code may write in its scratch directory (RLIMIT_FSIZE).
        max_scratch_mb: everything in the scratch directory together (a tmpfs of this size
            under bubblewrap; measured every 20 ms and enforced by killing the run without).
        max_scratch_files: files and folders in the scratch directory together.
    """

    wall_seconds: float = 10.0
    cpu_seconds: float = 10.0
    memory_mb: int = 2048
    max_processes: int = 32
    max_output_bytes: int = 1 << 20
    max_result_bytes: int = 1 << 20
    max_file_mb: int = 64
    max_scratch_mb: int = 256
    max_scratch_files: int = 4096

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "memory_mb",
            "max_processes",
            "max_output_bytes",
            "max_result_bytes",
            "max_file_mb",
            "max_scratch_mb",
            "max_scratch_files",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")
