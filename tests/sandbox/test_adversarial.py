"""The adversarial suite: each attack is contained, reported with the right kind, and leaves
the parent, the pool and the next candidate unaffected."""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openended.sandbox import Limits, Sandbox, bwrap_path

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(
    wall_seconds=2.0, cpu_seconds=2.0, memory_mb=512, max_processes=16, max_output_bytes=64 * 1024
)
SECRET = "OPENENDED_TEST_SECRET"


def only_bwrap(box: Sandbox) -> None:
    """Filesystem and network isolation come from bubblewrap only."""
    if box.isolation != "bwrap":
        pytest.skip("filesystem and network isolation need bubblewrap")


BACKENDS = ["bwrap", "rlimits"] if bwrap_path() else ["rlimits"]


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """Every attack runs under both backends (bubblewrap, where installed, and the
    rlimits fallback)."""
    os.environ[SECRET] = "hunter2"
    with Sandbox(limits=LIMITS, isolation=request.param, workers=2) as box:
        yield box
    os.environ.pop(SECRET, None)


def program(body: str) -> str:
    return "def attack(*args):\n" + textwrap.indent(textwrap.dedent(body), "    ")


def still_works(box: Sandbox) -> None:
    """The pool still evaluates a normal candidate correctly, on both workers."""
    results = [box.run_sync("def f(x):\n    return x * 2\n", "f", [i]) for i in range(3)]
    assert [r.value for r in results] == [0, 2, 4]


def attack(box: Sandbox, body: str, *args: object):
    result = box.run_sync(program(body), "attack", list(args))
    still_works(box)
    return result


CASES = {
    "infinite loop": ("while True:\n    pass", "timeout"),
    "sleeping forever": ("import time\ntime.sleep(1000)", "timeout"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "exception"),
    "memory bomb": ("x = []\nwhile True:\n    x.append(bytearray(10**7))", "memory"),
    "one huge allocation": ("return bytearray(10**10)", "memory"),
    "1 GB of stdout": (
        "import sys\nfor _ in range(10**6):\n    sys.stdout.write('x' * 1000)",
        "output_too_large",
    ),
    "1 GB at the fd level": (
        "import os\nfor _ in range(10**6):\n    os.write(2, b'x' * 1000)",
        "output_too_large",
    ),
    "ctypes segfault": ("import ctypes\nctypes.string_at(0)", "killed"),
    "sys.exit": ("import sys\nsys.exit(3)", "exit"),
    "os._exit": ("import os\nos._exit(0)", "exit"),
    "deep recursion": ("def r(n):\n    return r(n + 1) + 1\nreturn r(0)", "exception"),
    "deep recursion, limit raised": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef r(n):\n    return r(n + 1) + 1\nreturn r(0)",
        ("killed", "timeout"),
    ),
    "ignoring SIGTERM": (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.05)",
        "timeout",
    ),
    "huge return value": ("return 'x' * 10**7", "bad_return_value"),
    "non-serialisable return value": ("return object()", "bad_return_value"),
    "a set is not JSON": ("return {1, 2}", "bad_return_value"),
    "raises": ("raise ValueError('nope')", "exception"),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow  # each attack runs into its time limit
def test_attack_is_contained_and_reported(sandbox: Sandbox, name: str) -> None:
    body, kind = CASES[name]
    result = attack(sandbox, body)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    assert result.error is not None and result.error.kind in kinds, result
    assert result.wall_seconds < LIMITS.wall_seconds + 1.5


def test_exceptions_carry_the_program_traceback(sandbox: Sandbox) -> None:
    result = attack(sandbox, "x = 1\nraise ValueError(f'bad {x}')")
    assert result.error.message == "ValueError: bad 1"
    assert 'File "<program>", line 3, in attack' in result.error.traceback
    assert "raise ValueError(f'bad {x}')" in result.error.traceback
    assert "worker_main" not in result.error.traceback


def test_fork_bomb_leaves_no_process_behind(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import os\nwhile True:\n    os.fork()")
    assert "Resource temporarily unavailable" in result.error.message
    if os.geteuid() == 0:  # the fork server kills and reaps every process of the run
        uids = set(sandbox.uids)
        left = [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) in uids]
        assert len(left) <= sandbox.workers  # each worker's next child, waiting for its run


def _uid(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def test_processes_left_running_are_killed_after_the_run(sandbox: Sandbox) -> None:
    """A daemonised grandchild dies with the run, and nothing it prints reaches the next
    run."""
    result = attack(
        sandbox,
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            print('LEFTOVER', flush=True)\n"
        "            time.sleep(0.01)\n"
        "    os._exit(0)\n"
        "time.sleep(0.05)\n"
        "return os.getpid()",
    )
    assert result.ok
    time.sleep(0.2)
    after = attack(sandbox, "import time\ntime.sleep(0.1)\nreturn 1")
    assert after.value == 1 and "LEFTOVER" not in after.stdout


def test_invalid_utf8_output(sandbox: Sandbox) -> None:
    result = attack(
        sandbox, "import os\nos.write(1, b'ok \\xff\\xfe\\n')\nprint('after')\nreturn 1"
    )
    assert result.ok and result.value == 1
    assert result.stdout.startswith("ok \ufffd\ufffd\n") and "after" in result.stdout


def test_output_is_captured_per_run(sandbox: Sandbox) -> None:
    first = attack(sandbox, "print('one')\nimport sys\nprint('err', file=sys.stderr)")
    second = attack(sandbox, "print('two')")
    assert (first.stdout, first.stderr) == ("one\n", "err\n")
    assert second.stdout == "two\n"


@pytest.mark.parametrize(
    "path",
    [
        "/root/evil.txt",
        "/tmp/openended-evil.txt",
        str(REPO / "evil.txt"),
        "/etc/evil.txt",
        "/usr/evil.txt",
    ],
)
def test_writing_outside_scratch_fails_and_leaves_the_host_alone(
    sandbox: Sandbox, path: str
) -> None:
    only_bwrap(sandbox)
    result = attack(sandbox, f"open({path!r}, 'w').write('pwned')\nreturn 'written'")
    assert result.error is not None and result.error.kind == "exception"
    assert any(
        e in result.error.message
        for e in ("PermissionError", "FileNotFoundError", "OSError", "Read-only")
    )
    assert not Path(path).exists()


def test_scratch_is_writable_private_and_cleaned(sandbox: Sandbox) -> None:
    wrote = attack(
        sandbox,
        "import os\nopen('note.txt', 'w').write('hi')\n"
        "return [os.getcwd(), os.path.expanduser('~'), sorted(os.listdir('.'))]",
    )
    assert wrote.ok and wrote.value[2] == ["note.txt"]
    again = attack(sandbox, "import os\nreturn sorted(os.listdir('.'))")
    assert again.value == []


def test_secrets_are_not_readable(sandbox: Sandbox, tmp_path: Path) -> None:
    only_bwrap(sandbox)
    shadow = attack(sandbox, "return open('/etc/shadow').read()")
    assert shadow.error.kind == "exception"
    ssh = attack(sandbox, "import os\nreturn os.listdir('/root/.ssh')")
    assert ssh.error.kind == "exception"
    home = attack(sandbox, "import os\nreturn os.listdir('/root')")
    assert home.error is not None or set(home.value) <= {".pyenv"}
    env = attack(sandbox, "import os\nreturn dict(os.environ)")
    assert SECRET not in env.value and "hunter2" not in str(env.value)
    assert set(env.value) <= {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "PWD",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "LC_CTYPE",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    }
    proc = attack(sandbox, f"return open('/proc/{os.getpid()}/environ', 'rb').read().decode()")
    assert proc.error is not None or "hunter2" not in proc.value


def test_no_network_even_to_localhost(sandbox: Sandbox) -> None:
    only_bwrap(sandbox)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[object] = []
    listener.settimeout(3)
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)))
    thread.start()
    result = attack(
        sandbox,
        "import socket\nsocket.create_connection(('127.0.0.1', args[0]), timeout=1)\nreturn 'in'",
        port,
    )
    thread.join()
    listener.close()
    assert result.error is not None and result.error.kind == "exception"
    assert accepted == [None]


def _accept(listener: socket.socket) -> object:
    try:
        conn, _ = listener.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


@pytest.mark.slow  # waits for the orphan to die
def test_killing_the_parent_process(sandbox: Sandbox) -> None:
    me = os.getpid()
    direct = attack(
        sandbox, "import os, signal\nos.kill(args[0], signal.SIGKILL)\nreturn 'sent'", me
    )
    assert direct.error is not None and direct.error.kind == "exception"
    parent = attack(
        sandbox,
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(3)",
    )
    assert parent.error is not None
    everyone = attack(
        sandbox, "import os, signal\nos.kill(-1, signal.SIGKILL)\nimport time\ntime.sleep(3)"
    )
    assert everyone.error is not None  # nothing of ours to kill: refused, or only itself
    assert os.getpid() == me  # still here


@pytest.mark.slow  # runs into a time limit
def test_other_candidates_are_unaffected_by_a_concurrent_attack(sandbox: Sandbox) -> None:
    import asyncio

    async def both():
        return await asyncio.gather(
            sandbox.run(program("while True:\n    pass"), "attack"),
            *(sandbox.run("def f(x):\n    return x + 1\n", "f", [i]) for i in range(20)),
        )

    bad, *good = asyncio.run(both())
    assert bad.error.kind == "timeout"
    assert [r.value for r in good] == list(range(1, 21))
