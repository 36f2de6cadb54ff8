"""Reaching a Python installation the sandbox uid cannot enter.

Where Python lies under a folder the slot's uid cannot traverse (a pyenv under a 0700
home, run as root without bubblewrap), the server — still root — opens each import folder
as an O_PATH descriptor, and children import through /proc/self/fd/N: a descriptor's
magic link is followed without checking the folders above it.
"""

import fcntl
import json
import os
import sys

from . import frames

FIRST_FD = 64
"""Above the numbers a child moves its pipes to."""


def blocked_folders(uid):
    """The folders on sys.path that exist but `uid` cannot list (asked of a forked
    child that has become `uid`)."""
    folders = [p for p in sys.path if p and os.path.isdir(p)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            blocked = []
            for folder in folders:
                try:
                    os.listdir(folder)
                except OSError:
                    blocked.append(folder)
            frames.write_all(write, json.dumps(blocked).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"[]")


def open_folders(folders):
    """{folder: descriptor} for each folder (O_PATH, at or above `FIRST_FD`)."""
    descriptors = {}
    for folder in folders:
        raw = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        descriptors[folder] = fcntl.fcntl(raw, fcntl.F_DUPFD_CLOEXEC, FIRST_FD)
        os.close(raw)
    return descriptors


def plan_mapping(descriptors):
    """[(list, replacement)] for sys.path and the `__path__` of every package imported
    so far: each blocked folder replaced by its descriptor's /proc/self/fd path. A child
    assigns the replacements in place (``paths[:] = replacement``)."""
    folders = sorted(descriptors, key=len, reverse=True)

    def mapped(path):
        for folder in folders:
            if path == folder or path.startswith(folder + os.sep):
                return f"/proc/self/fd/{descriptors[folder]}{path[len(folder) :]}"
        return path

    lists = [sys.path]
    lists += [m.__path__ for m in list(sys.modules.values()) if _has_list_path(m)]
    plan = []
    for paths in lists:
        new = [mapped(p) if isinstance(p, str) else p for p in paths]
        if new != paths:
            plan.append((paths, new))
    return plan


def _has_list_path(module):
    try:
        return isinstance(module.__path__, list)
    except BaseException:
        return False
