"""Ending a run: killing every process it started and reaping them.

Under bubblewrap the run's processes are everything in the PID namespace but bwrap's init
and the server, so ``kill(-1)`` reaches exactly them (programs may not leave a process
group there, but they need not stay in one either). Without bubblewrap each run leads its
own process group (the seccomp filter forbids leaving it), and the slot's uid catches
anything that left it where the filter is missing.
"""

import contextlib
import os
import signal
import time

PF_EXITING = 0x4
REAP_SECONDS = 2.0


def stop_namespace():
    """Kill every other process in the namespace and wait until each is exiting (past
    its last system call: no more output, no more files). True when all are."""
    deadline = time.monotonic() + REAP_SECONDS
    while True:
        kill_namespace()
        if all(_exiting(pid) for pid in _namespace_processes()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)


def kill_namespace():
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)


def reap_all(between=None):
    """Reap every child of this process; True once none is left, False if some are
    still alive after `REAP_SECONDS`. `between(seconds_waited)` runs between tries."""
    start = time.monotonic()
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return True
        waited = time.monotonic() - start
        if waited > REAP_SECONDS:
            return False
        time.sleep(0.0002)
        if between is not None:
            between(waited)


def stop_group(pgid, uid):
    """Kill the run's process group and reap until no child is left; after 50 ms,
    every process of `uid` too (a helper becomes that uid and kills -1)."""
    kill_group(pgid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, 0)  # the run's own process: it dies at once
    swept = [uid is None]

    def again(waited):
        kill_group(pgid)
        if not swept[0] and waited > 0.05:
            swept[0] = True
            _kill_uid(uid)

    return reap_all(again)


def kill_group(pgid):
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_uid(uid):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)


def _namespace_processes():
    """The PIDs in this PID namespace but its init and this process."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _exiting(pid):
    """Whether a process is gone, a zombie, or past the point of running system calls
    (PF_EXITING, set as it starts to exit)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING)
