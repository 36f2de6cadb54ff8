"""The fork server: a warm Python process that never runs untrusted code itself.

Every program runs in a child forked for it (see `child`): the child closes every
descriptor but its own request and result pipes and stdout/stderr, applies the resource
limits, drops to the slot's unprivileged uid and runs under the seccomp filter. The next
run's child is forked as soon as a run has been answered, and warms up while the host
reads the answer. When a child has answered, died or run out of time, every process of
its run is killed (see `stopping`) and its scratch folder emptied before the server
answers the host. So no state of one program — interpreter, threads, processes, files —
reaches the next, and no program can reach the channel to the host (closed, owned by
another uid, and the server is not dumpable).
"""

import contextlib
import gc
import importlib
import os
import resource
import select
import signal
import time

from . import frames, import_paths, seccomp, stopping
from .child import ChildPlan
from .linux import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, prctl
from .responses import checked, death, error
from .scratch import Scratch

QUOTA_INTERVAL = 0.02
PROBE = """
def probe(names):
    import importlib, sys
    for name in names:
        if name not in sys.modules:
            importlib.import_module(name)
            return name
    return None
"""
PROBE_MODULES = ["colorsys", "sched", "netrc", "wave", "tabnanny"]
"""A standard-library import the probe performs (the first not already loaded)."""


class ForkServer:
    """Runs requests, one child process each. `settings` come from the host (see
    `openended.sandbox.process`): under bubblewrap (``isolation == "bwrap"``) the server
    and its children share a PID namespace and bwrap's seccomp filter; without it each
    child installs the filter itself and leads its own process group."""

    def __init__(self, settings):
        self.settings = settings
        self.uid = settings.get("uid")
        self.namespace = settings["isolation"] == "bwrap"
        self.max_frame = settings["max_result_bytes"] + (64 << 10)
        self.scratch = None
        self.plan = None
        self.current = None  # the pid of the run in progress
        self.spare = None  # (pid, request fd, result fd) of the next run's child
        self.unclean = None  # why this server must not run another program
        self.notes = {}

    # -- start ----------------------------------------------------------------------------

    def prepare(self):
        """Set up, then run a probe program as a real request would run; returns the
        message that tells the host the server is ready (or what stops it)."""
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        prctl(PR_SET_DUMPABLE, 0)  # same-uid processes cannot open /proc/<us>/fd or mem
        prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a run are ours to kill and reap
        signal.signal(signal.SIGTERM, self._terminate)
        failed = []
        for name in self.settings.get("preload", []):
            try:
                importlib.import_module(name)
            except BaseException as exc:  # a preload is an optimisation, not a requirement
                failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
        self.scratch = Scratch(
            self.settings["scratch"],
            kind="tmpfs" if self.namespace else "folder",
            uid=self.uid,
            max_bytes=self.settings["max_scratch_bytes"],
            max_files=self.settings["max_scratch_files"],
        )
        path_fds = {}
        if self.uid is not None:
            path_fds = import_paths.open_folders(import_paths.blocked_folders(self.uid))
        filter_program = None if self.namespace else seccomp.build_filter()
        problem = None
        for attempt in ("with seccomp", "without"):
            self.plan = ChildPlan(
                settings=self.settings,
                uid=self.uid,
                scratch_fd=self.scratch.fd,
                keep_fds=path_fds.values(),
                path_plan=import_paths.plan_mapping(path_fds) if path_fds else [],
                seccomp_filter=filter_program if attempt == "with seccomp" else None,
                own_group=not self.namespace,
            )
            problem = self._probe()
            if not (problem and "seccomp" in problem and filter_program is not None):
                break
            self.notes["seccomp_error"] = problem  # a kernel without seccomp filters
        gc.freeze()  # forked children share these pages instead of copying them
        self.prepare_next()
        return {
            "ready": problem is None,
            "problem": problem,
            "uid": self.uid if self.uid is not None else os.getuid(),
            "seccomp": self.plan.seccomp_filter is not None or _filtered(),
            "scratch": self.scratch.kind,
            "mapped_paths": len(path_fds),
            "preload_failed": failed,
            **self.notes,
        }

    def _probe(self):
        response = self.run({"program": PROBE, "entry": "probe", "args": [PROBE_MODULES]})
        self._reap_previous()
        body = response.get("error")
        return None if body is None else f"{body['kind']}: {body['message']}"

    def _terminate(self, signum, frame):
        if self.namespace:
            stopping.kill_namespace()
        for pid in (self.current, self.spare and self.spare[0]):
            if pid:
                stopping.kill_group(pid)
        os._exit(0)

    # -- one run --------------------------------------------------------------------------

    def run(self, request):
        """The response for one request: ``{"value": ...}`` or ``{"error": ...}``, plus
        ``"tampered"`` when the run left something the server could not clean up, or
        ``"retry"`` when the server refuses to run it (the host runs it elsewhere)."""
        if self.unclean:
            return {"retry": True, **error("sandbox_error", self.unclean)}
        pid, request_fd, result_fd = self._take_spare()
        self.current = pid
        try:
            with contextlib.suppress(OSError):  # a child that died early: _supervise says how
                frames.write_all(request_fd, frames.encode(request))
            os.close(request_fd)
            response = self._supervise(pid, result_fd)
        finally:
            os.close(result_fd)
            problems = self._end_run(pid)
            self.current = None
        if problems:
            response["tampered"] = "; ".join(problems)
        return response

    def prepare_next(self):
        """After the answer is sent: reap what the run left dying (under bwrap its
        processes were only stopped before the answer; the kernel frees their memory
        meanwhile), then fork the next run's child."""
        self._reap_previous()
        if self.spare is None:
            self.spare = self._fork_child()

    def _reap_previous(self):
        if self.namespace and not stopping.reap_all():
            self.unclean = "processes of the previous run did not exit"

    def _take_spare(self):
        spare, self.spare = self.spare, None
        if spare is not None:
            done, _ = os.waitpid(spare[0], os.WNOHANG)
            if not done:
                return spare
            os.close(spare[1])  # it died waiting (killed from outside): start another
            os.close(spare[2])
        return self._fork_child()

    def _fork_child(self):
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            self.plan.run(request_read, result_write)  # never returns
        os.close(request_read)
        os.close(result_write)
        return pid, request_write, result_read

    def _supervise(self, pid, fd):
        """Wait for the child's answer, its death, the wall-clock limit or the scratch
        quota, whichever comes first."""
        reader = frames.FrameReader(self.max_frame)
        os.set_blocking(fd, False)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        wall = self.settings["wall_seconds"]
        deadline = time.monotonic() + wall
        pipe_open = True
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return error("timeout", f"wall-clock limit of {wall:g} s")
                waits = [x for x in (fd if pipe_open else None, pidfd) if x is not None]
                pause = QUOTA_INTERVAL if pidfd is not None else 0.002
                ready, _, _ = select.select(waits, [], [], min(deadline - now, pause))
                if fd in ready:
                    message, pipe_open = _read(fd, reader)
                    if message is not None:
                        return self._answered(message)
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    message, _ = _read(fd, reader)
                    return self._answered(message) if message is not None else death(status)
                over = self.scratch.over_quota()
                if over:
                    return error("output_too_large", over)
        except frames.FrameError as exc:
            return error("bad_return_value", f"the program's result: {exc}")
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _answered(self, message):
        """A program's answer, unless its scratch folder ended over the quota."""
        over = self.scratch.over_quota()
        if over:
            return error("output_too_large", over)
        return checked(message, self.settings["max_result_bytes"])

    def _end_run(self, pid):
        problems = []
        if self.namespace:
            stopped = stopping.stop_namespace()
        else:
            stopped = stopping.stop_group(pid, self.uid)
        if not stopped:
            problems.append("processes of the run could not be killed")
        try:
            self.scratch.reset()
        except OSError as exc:
            problems.append(f"the scratch folder could not be emptied: {exc}")
        return problems


def _read(fd, reader):
    """Read what the pipe holds now: (a whole message or None, whether it is open)."""
    while True:
        try:
            data = os.read(fd, reader.wanted())
        except BlockingIOError:
            return None, True
        if not data:
            return None, False
        message = reader.feed(data)
        if message is not None:
            return message, True


def _filtered():
    """Whether this process runs under a seccomp filter (installed by bwrap)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Seccomp:"):
                    return line.split()[1] == "2"
    except OSError:
        pass
    return False
