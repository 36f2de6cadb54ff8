"""The child that runs one program: it enters the sandbox, warms up, waits for its
request, runs it, answers on its result pipe and exits. It never returns to the server's
code: every path ends in ``os._exit``."""

import fcntl
import math
import os
import resource
import signal
import sys

from . import frames, program, seccomp
from .linux import PR_SET_DUMPABLE, PR_SET_PDEATHSIG, libc, prctl
from .responses import error

RESULT_FD = 3
REQUEST_FD = 4
REQUEST_LIMIT = 1 << 30
WARM_UP = {"program": "def warm(x):\n    return [x, 'w', 1.5]\n", "entry": "warm", "args": [1]}
"""Run before the request arrives: its copy-on-write faults (the compiler's and the
encoder's pages) are then not paid while the real program is timed and awaited."""


class ChildPlan:
    """How every child enters the sandbox, prepared once by the server.

    Args:
        settings: the host's settings (limits).
        uid: the slot's uid (None: not root, no switch).
        scratch_fd: the scratch folder, to work in.
        keep_fds: descriptors the child keeps (import folders, see `import_paths`).
        path_plan: import-path replacements to apply (see `import_paths.plan_mapping`).
        seccomp_filter: a filter to install, or None where bwrap installed one for the
            whole sandbox (or none can be had).
        own_group: lead a process group of its own (without bwrap's PID namespace).
    """

    def __init__(
        self, *, settings, uid, scratch_fd, keep_fds, path_plan, seccomp_filter, own_group
    ):
        self.settings = settings
        self.uid = uid
        self.scratch_fd = scratch_fd
        self.keep_fds = tuple(keep_fds)
        self.path_plan = path_plan
        self.seccomp_filter = seccomp_filter
        self.own_group = own_group
        self.max_result = settings["max_result_bytes"]

    def run(self, request_fd, result_fd):
        try:
            self._enter(request_fd, result_fd)
        except BaseException as exc:
            try:
                message = f"the sandbox could not prepare the run: {type(exc).__name__}: {exc}"
                frames.write_all(RESULT_FD, frames.encode(error("sandbox_error", message)))
            finally:
                os._exit(71)
        try:
            program.evaluate(WARM_UP, self.max_result)
            frames.encode(error("exception", "warm"))
            request = frames.receive(REQUEST_FD, REQUEST_LIMIT)
            os.close(REQUEST_FD)
        except BaseException:
            request = None
        if request is None:  # the server went away before giving a request
            os._exit(0)
        try:
            response = program.evaluate(request, self.max_result)
        except BaseException:
            response = error("exception", "the program's failure could not be described")
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            frames.write_all(RESULT_FD, frames.encode(response))
        finally:
            os._exit(0)

    def _enter(self, request_fd, result_fd):
        settings = self.settings
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.own_group:
            os.setpgid(0, 0)
        os.fchdir(self.scratch_fd)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (result_fd, request_fd)]
        os.dup2(high[0], RESULT_FD)
        os.dup2(high[1], REQUEST_FD)
        keep = sorted({0, 1, 2, RESULT_FD, REQUEST_FD, *self.keep_fds})
        for low, up_to in zip(keep, [*keep[1:], 1 << 20], strict=True):
            os.closerange(low + 1, up_to)
        cpu = max(1, math.ceil(settings["cpu_seconds"]))
        for which, value in (
            (resource.RLIMIT_AS, settings["memory_bytes"]),
            (resource.RLIMIT_NPROC, settings["max_processes"]),
            (resource.RLIMIT_FSIZE, settings["max_file_bytes"]),
            (resource.RLIMIT_NOFILE, 256),
        ):
            resource.setrlimit(which, (value, value))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)
        if self.own_group:  # (in bwrap's namespace, everything dies with the server)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.path_plan:
            prctl(PR_SET_DUMPABLE, 1)  # /proc/self/fd/N must belong to the program's uid
            for paths, mapped in self.path_plan:
                paths[:] = mapped
            sys.path_importer_cache.clear()
        if self.seccomp_filter is not None:
            try:
                seccomp.install(self.seccomp_filter, libc)
            except OSError as exc:
                raise OSError(f"seccomp: {exc}") from None
        sys.argv[:] = [""]
