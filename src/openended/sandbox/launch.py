"""How a sandbox worker process is started: under bubblewrap, or with rlimits only."""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Literal

Isolation = Literal["bwrap", "rlimits"]
RUNTIME = Path(__file__).with_name("worker_runtime")
SANDBOX_RUNTIME = "/sandbox/worker_runtime"
SCRATCH = "/scratch"
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    # numerical libraries must not start thread pools in the fork server
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# `python -I -S -c BOOT RUNTIME_PARENT REQUEST_FD RESPONSE_FD SETTINGS`: import the runtime,
# take its folder off sys.path again (programs never see it), serve. Without `site` (-S)
# the server is a third smaller, and forks that much faster; its site-packages folders are
# put on sys.path from the settings instead (.pth files are not run).
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from worker_runtime.main import main; "
    "sys.path.remove(sys.argv[1]); main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])"
)


def site_packages() -> list[str]:
    """The site-packages folders of this Python (what `site` would add)."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


# What the fork server keeps when bwrap runs as root: switching to the slot's uid, killing
# its processes, and owning and emptying its scratch folder. Nothing else (no mounts).
SERVER_CAPABILITIES = (
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_KILL",
    "CAP_CHOWN",
    "CAP_FOWNER",
    "CAP_DAC_OVERRIDE",
)


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
    *,
    scratch_bytes: int,
    request_fd: int,
    response_fd: int,
    settings_json: str,
    seccomp_fd: int | None,
) -> list[str]:
    """The bwrap command line for one worker. Read-only: /usr (and the /bin, /lib links),
    the Python installation, ld.so.cache. Writable: only the scratch folder, a tmpfs of
    `scratch_bytes`. No network, own PID namespace, an empty environment; as root, the
    worker keeps only `SERVER_CAPABILITIES`. `seccomp_fd` holds the seccomp filter that
    bwrap installs for everything in the sandbox."""
    path = bwrap_path()
    assert path is not None
    args = [path, *_namespaces()]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]
        for capability in SERVER_CAPABILITIES:
            args += ["--cap-add", capability]
    args += ["--ro-bind", "/usr", "/usr"]
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
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += [
        "--ro-bind",
        str(RUNTIME),
        SANDBOX_RUNTIME,
        "--size",
        str(scratch_bytes),
        "--tmpfs",
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
        *_boot(str(Path(SANDBOX_RUNTIME).parent), request_fd, response_fd, settings_json),
    ]
    return args


def rlimits_command(*, request_fd: int, response_fd: int, settings_json: str) -> list[str]:
    """A plain subprocess: limits, an unprivileged uid and the seccomp filter, but no
    filesystem or network isolation."""
    return _boot(str(RUNTIME.parent), request_fd, response_fd, settings_json)


def _boot(runtime_parent: str, request_fd: int, response_fd: int, settings: str) -> list[str]:
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        BOOT,
        runtime_parent,
        str(request_fd),
        str(response_fd),
        settings,
    ]


def rlimits_env(scratch: Path) -> dict[str, str]:
    return {**BASE_ENV, "HOME": str(scratch), "TMPDIR": str(scratch)}
