"""A run's scratch folder: emptied after every run, measured against its quota."""

import contextlib
import os


class Scratch:
    """The scratch folder, held open as a descriptor (renaming or replacing the path
    cannot redirect the server), owned by the slot's uid.

    Args:
        path: the folder (a bwrap tmpfs of the byte quota, or a host folder).
        kind: ``"tmpfs"`` (usage from statvfs) or ``"folder"`` (usage by walking it).
        uid: the slot's uid, or None when not running as root.
        max_bytes, max_files: the quota.
    """

    def __init__(self, path, *, kind, uid, max_bytes, max_files):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.kind = kind
        self.uid = uid
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.reset()

    def reset(self):
        """Empty the folder and give it back to the slot's uid, mode 0700."""
        if self.uid is not None:
            os.fchown(self.fd, self.uid, self.uid)
        os.fchmod(self.fd, 0o700)
        _empty(self.fd)

    def over_quota(self):
        """Why the folder is over its quota (bytes or files), or None."""
        if self.kind == "tmpfs":
            usage = os.fstatvfs(self.fd)
            used = (usage.f_blocks - usage.f_bfree) * usage.f_frsize
            files = usage.f_files - usage.f_ffree - 1
        else:
            used = files = 0
            for _, dirs, names, root in os.fwalk(".", dir_fd=self.fd):
                for name in names + dirs:
                    files += 1
                    with contextlib.suppress(OSError):
                        used += os.lstat(name, dir_fd=root).st_blocks * 512
                if files > self.max_files or used > self.max_bytes:
                    break
        if files > self.max_files:
            return f"more than {self.max_files} files in the scratch folder"
        if used > self.max_bytes:
            return f"more than {self.max_bytes >> 20} MB in the scratch folder"
        return None


def _empty(fd):
    """Remove everything in the folder open as `fd`, never following a symbolic link."""
    for entry in os.scandir(fd):
        if entry.is_dir(follow_symlinks=False):
            inner = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                _empty(inner)
            finally:
                os.close(inner)
            os.rmdir(entry.name, dir_fd=fd)
        else:
            os.unlink(entry.name, dir_fd=fd)
