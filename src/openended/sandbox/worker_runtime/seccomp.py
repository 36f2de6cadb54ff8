"""A seccomp-BPF filter for sandboxed programs, built and installed with ctypes.

It closes kernel surface a program has no use for and that would weaken the sandbox:
new namespaces (``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag; ``clone3``
answers ENOSYS so that libc falls back to ``clone``), leaving the process group
(``setsid``, ``setpgid``: the fork server kills the group after each run), tracing or
reading other processes (``ptrace``, ``process_vm_readv/writev``), mounts, keyrings, BPF,
perf events, userfaultfd and io_uring. Denied calls fail with EPERM; system calls of
another ABI (i386, x32) are denied too. See seccomp(2) and Documentation/userspace-api/
seccomp_filter.rst in the Linux sources.
"""

import ctypes
import errno
import os
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
RET = 0x06  # BPF_RET | BPF_K

NR, ARCH, ARG0_LOW = 0, 4, 16  # offsets in struct seccomp_data (little-endian)
X32_BIT = 0x40000000
NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME

# name: (x86_64, aarch64)
DENIED = {
    "unshare": (272, 97),
    "setns": (308, 268),
    "setsid": (112, 157),
    "setpgid": (109, 154),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
}
CLONE = (56, 220)
CLONE3 = (435, 435)
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def build_filter(machine=None):
    """The filter program (packed `struct sock_filter`s) for this machine, or None where
    its architecture is not known here."""
    machine = machine or os.uname().machine
    if machine not in AUDIT_ARCH:
        return None
    column = 0 if machine == "x86_64" else 1
    code = []  # (op, jump-true label or None, jump-false label or None, k)

    def emit(op, k=0, jt=None, jf=None):
        code.append((op, jt, jf, k))

    emit(LD_ABS, ARCH)
    emit(JEQ, AUDIT_ARCH[machine], jf="deny")
    emit(LD_ABS, NR)
    if machine == "x86_64":
        emit(JGE, X32_BIT, jt="deny")
    for numbers in DENIED.values():
        emit(JEQ, numbers[column], jt="deny")
    emit(JEQ, CLONE3[column], jt="enosys")
    emit(JEQ, CLONE[column], jt="clone")
    emit(RET, RET_ALLOW)
    labels = {"clone": len(code)}
    emit(LD_ABS, ARG0_LOW)
    emit(JSET, NAMESPACE_FLAGS, jt="deny")
    emit(RET, RET_ALLOW)
    labels["deny"] = len(code)
    emit(RET, RET_ERRNO | errno.EPERM)
    labels["enosys"] = len(code)
    emit(RET, RET_ERRNO | errno.ENOSYS)
    packed = b""
    for index, (op, jt, jf, k) in enumerate(code):
        offsets = [0 if label is None else labels[label] - index - 1 for label in (jt, jf)]
        packed += struct.pack("HBBI", op, offsets[0], offsets[1], k)
    return packed


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program, libc):
    """Install `program` for this process and every process it starts (irrevocable).
    Raises OSError if the kernel refuses."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
