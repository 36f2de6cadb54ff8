"""How a sandbox worker process is started: under bubblewrap, or with rlimits only."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

Isolation = Literal["bwrap", "rlimits"]
WORKER_SCRIPT = Path(__file__).with_name("worker_main.py")
SANDBOX_WORKER = "/sandbox/worker_main.py"
SCRATCH = "/scratch"
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
}


@functools.cache
def bwrap_path() -> str | None:
    """The bwrap executable, if it is installed and can create a sandbox here."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, *_namespaces(), "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if probe.returncode == 0 else None


def best_isolation() -> Isolation:
    return "bwrap" if bwrap_path() else "rlimits"


def _namespaces() -> list[str]:
    # Everything but the user namespace: the worker starts as root in the sandbox so that
    # it can set its limits and then switch to an unprivileged uid, which RLIMIT_NPROC
    # binds (it does not bind root).
    return [
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]


def _python_roots() -> list[Path]:
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return sorted(roots)


def bwrap_command(
    *, scratch: Path, request_fd: int, response_fd: int, settings_json: str
) -> list[str]:
    """The bwrap command line for one worker. Read-only: /usr (and the /bin, /lib links),
    the Python installation, ld.so.cache. Writable: only the scratch folder. No network,
    own PID namespace, an empty environment."""
    path = bwrap_path()
    assert path is not None
    args = [path, *_namespaces(), "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    for name in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
        args += ["--ro-bind-try", name, name]
    made: set[str] = {"/", "/usr", "/etc"}
    for root in _python_roots():
        for parent in reversed(root.parents):
            if str(parent) in made or str(parent).startswith("/usr/"):
                continue
            made.add(str(parent))
            args += ["--perms", "0755", "--dir", str(parent)]
        if not str(root).startswith("/usr/"):
            args += ["--ro-bind", str(root), str(root)]
    args += [
        "--ro-bind",
        str(WORKER_SCRIPT),
        SANDBOX_WORKER,
        "--bind",
        str(scratch),
        SCRATCH,
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--clearenv",
    ]
    for key, value in {**BASE_ENV, "HOME": SCRATCH, "TMPDIR": SCRATCH}.items():
        args += ["--setenv", key, value]
    args += [
        "--chdir",
        SCRATCH,
        sys.executable,
        "-I",
        SANDBOX_WORKER,
        str(request_fd),
        str(response_fd),
        settings_json,
    ]
    return args


def rlimits_command(*, request_fd: int, response_fd: int, settings_json: str) -> list[str]:
    """A plain subprocess: limits and an unprivileged uid, but no filesystem or network
    isolation."""
    return [
        sys.executable,
        "-I",
        str(WORKER_SCRIPT),
        str(request_fd),
        str(response_fd),
        settings_json,
    ]


def rlimits_env(scratch: Path) -> dict[str, str]:
    return {**BASE_ENV, "HOME": str(scratch), "TMPDIR": str(scratch)}
