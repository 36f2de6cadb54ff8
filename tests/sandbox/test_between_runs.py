"""One candidate must never touch another's run or result, nor the host's memory.

Each test is one finding of the sandbox review (issue 17), under both backends where
bubblewrap is installed: state carried over, the response channel, hidden threads,
malformed and oversized frames, host memory, the scratch quota, nested user namespaces,
and a Python installation the sandbox uid cannot read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from openended.sandbox import Limits, Sandbox, SandboxUnavailableError, bwrap_path
from openended.sandbox.process import SandboxProcess
from openended.sandbox.worker_runtime.frames import FrameError, FrameReader, encode

BACKENDS = ["bwrap", "rlimits"] if bwrap_path() else ["rlimits"]
LIMITS = Limits(wall_seconds=5.0, cpu_seconds=5.0, memory_mb=1024, max_output_bytes=64 * 1024)
VICTIM = "def f(x):\n    return x * 2\n"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="per-slot uids are used only as root")


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(limits=LIMITS, isolation=request.param, workers=2) as box:
        yield box


def body(text: str) -> str:
    return "def attack(*args):\n" + textwrap.indent(textwrap.dedent(text), "    ")


def victims_are_scored_correctly(box: Sandbox) -> list[str]:
    """Runs on both workers after an attack: their values are right; returns stdouts."""
    results = [box.run_sync(VICTIM, "f", [i]) for i in range(4)]
    assert [r.value for r in results] == [0, 2, 4, 6], results
    return [r.stdout for r in results]


# -- 1. state carries over ------------------------------------------------------------------

FORGER = """
import builtins, json, sys
builtins.OPENENDED_MARK = "attacker was here"
seen = []

def forge(*a, **k):
    seen.append(repr(a)[:200])
    return {"value": json.dumps({"forged": True, "saw_program": seen})}

for module in list(sys.modules.values()):
    for name in ("evaluate", "main", "run", "serve", "receive", "encode", "write_all"):
        if callable(getattr(module, name, None)):
            try:
                setattr(module, name, forge)
            except Exception:
                pass
json.dumps = lambda *a, **k: '{"forged": true}'
return "patched"
"""


def test_patched_interpreter_state_never_reaches_the_next_run(sandbox: Sandbox) -> None:
    for _ in range(3):  # both workers
        sandbox.run_sync(body(FORGER), "attack")
    victims_are_scored_correctly(sandbox)
    clean = sandbox.run_sync(
        "import builtins, json\n"
        "def f():\n    return [hasattr(builtins, 'OPENENDED_MARK'), json.dumps([1])]\n",
        "f",
    )
    assert clean.value == [False, "[1]"]


def test_an_evaluated_program_cannot_forge_later_scores(tmp_path: Path) -> None:
    """The review's scenario: a candidate imported by the user's evaluator replaces the
    worker's `evaluate`; later candidates still get their own scores."""
    from openended.domains.program.evaluator import ProgramEvaluator

    evaluator = tmp_path / "evaluator.py"
    evaluator.write_text(
        "import importlib.util\n\n"
        "def evaluate(path):\n"
        "    spec = importlib.util.spec_from_file_location('candidate', path)\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return {'score': float(module.value())}\n"
    )
    attacker = (
        "import sys\n"
        "def _forge(*args, **kwargs):\n"
        "    return {'score': 1000.0}\n"
        "frame = sys._getframe()\n"
        "while frame is not None:\n"
        "    for name in ('evaluate', '__openended_run'):\n"
        "        if name in frame.f_globals:\n"
        "            frame.f_globals[name] = _forge\n"
        "    frame = frame.f_back\n"
        "for module in list(sys.modules.values()):\n"
        "    for name in ('evaluate', 'main', 'run'):\n"
        "        if callable(getattr(module, name, None)):\n"
        "            try:\n"
        "                setattr(module, name, _forge)\n"
        "            except Exception:\n"
        "                pass\n"
        "def value():\n"
        "    return 1.0\n"
    )
    for isolation in BACKENDS:
        scorer = ProgramEvaluator(
            evaluator, limits=LIMITS, workers=1, thresholds=[], isolation=isolation
        )
        try:
            import asyncio

            first = asyncio.run(scorer.run(attacker))
            honest = [asyncio.run(scorer.run(f"def value():\n    return {v}\n")) for v in (5, 7)]
        finally:
            scorer.close()
        assert first.score in (1.0, 1000.0) or first.error is not None  # its own score only
        assert [o.score for o in honest] == [5.0, 7.0], (isolation, honest)


# -- 2. the response channel ----------------------------------------------------------------

HIJACK = """
import os, json
forged = json.dumps({"value": "666", "nonce": None}).encode()
frame = len(forged).to_bytes(4, "big") + forged
report = {"wrote": [], "read": [], "opened": []}
for fd in range(4, 1024):  # fd 3 is the program's own result pipe
    try:
        os.write(fd, frame)
        report["wrote"].append(fd)
    except OSError:
        pass
    try:
        os.set_blocking(fd, False)
        data = os.read(fd, 1 << 16)
        if data:
            report["read"].append(fd)
    except OSError:
        pass
parent = os.getppid()
for name in ("fd/0", "fd/1", "fd/3", "fd/4", "fd/5", "fd/6", "mem", "environ"):
    try:
        with open(f"/proc/{parent}/{name}", "rb") as handle:
            handle.read(1)
        report["opened"].append(name)
    except OSError:
        pass
import sys
report["argv"] = sys.argv
return report
"""


def test_the_channel_to_the_host_is_out_of_reach(sandbox: Sandbox) -> None:
    hijack = sandbox.run_sync(body(HIJACK), "attack")
    victims_are_scored_correctly(sandbox)
    assert hijack.ok, hijack.error
    report = hijack.value
    assert report["wrote"] == [] and report["read"] == []
    assert report["opened"] == [] and report["argv"] == [""]
    forged = sandbox.run_sync(body(HIJACK.replace("range(4,", "range(3,")), "attack")
    assert forged.value == 666  # a frame on its own result pipe forges only its own result
    victims_are_scored_correctly(sandbox)


# -- 3. hidden threads ----------------------------------------------------------------------


def test_hidden_threads_die_with_the_run(sandbox: Sandbox) -> None:
    started = sandbox.run_sync(
        body(
            "import _thread, time, threading\n"
            "def loop():\n"
            "    while True:\n"
            "        print('HIDDEN', flush=True)\n"
            "        time.sleep(0.005)\n"
            "_thread.start_new_thread(loop, ())\n"
            "time.sleep(0.02)\n"
            "return threading.active_count()\n"
        ),
        "attack",
    )
    assert started.value == 1  # invisible to threading, as in the review
    stdouts = victims_are_scored_correctly(sandbox)
    later = sandbox.run_sync("import time\ndef f():\n    time.sleep(0.1)\n    return 1\n", "f")
    assert "HIDDEN" not in "".join([*stdouts, later.stdout])


# -- 4. malformed frames --------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"\0\0\0\x01[",  # not JSON
        b"\0\0\0\x017",  # JSON, not an object
        b"\x7f\xff\xff\xff" + b"x" * 100,  # announces 2 GiB
        encode({"value": 7}),  # a value that is not JSON text
        encode({"error": {"kind": "escape", "message": "x"}}),  # an unknown kind
    ],
)
def test_a_malformed_result_frame_is_the_programs_own_error(sandbox: Sandbox, frame: bytes) -> None:
    result = sandbox.run_sync(
        f"import os\ndef f():\n    os.write(3, {frame!r})\n    os._exit(0)\n", "f"
    )
    assert result.error is not None and result.error.kind == "bad_return_value", result
    victims_are_scored_correctly(sandbox)


@pytest.mark.parametrize(
    "frame",
    [
        b"\0\0\0\x01[",
        b"\0\0\0\x017",
        b"\x7f\xff\xff\xff",
        encode({"value": "1", "nonce": "not-the-nonce"}),
        encode({"value": 7, "nonce": "NONCE"}),
        encode({"error": "no", "nonce": "NONCE"}),
    ],
)
def test_the_host_never_raises_for_a_bad_frame_from_a_worker(frame: bytes) -> None:
    """Even a worker that itself misbehaves (here: its response pipe is ours) can only
    produce a ``sandbox_error`` for the run; the worker is then stopped."""
    process = SandboxProcess(isolation="rlimits", limits=LIMITS, uid=None)
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.close(process._response)
    process._response = read
    import secrets

    nonce = "0123456789abcdef"
    original = secrets.token_hex
    secrets.token_hex = lambda n=None: nonce  # type: ignore[assignment]
    try:
        os.write(write, frame.replace(b"NONCE", nonce.encode()))
        os.close(write)
        result = process.run(VICTIM, "f", [1], {})
    finally:
        secrets.token_hex = original  # type: ignore[assignment]
        process.close()
    assert result.error is not None and result.error.kind in ("sandbox_error", "killed")
    assert process.broken


def test_frame_reader_never_reads_past_its_cap() -> None:
    reader = FrameReader(10)
    assert reader.wanted() == 4
    with pytest.raises(FrameError, match="limit is 10"):
        reader.feed((11).to_bytes(4, "big"))
    reader = FrameReader(10)
    assert reader.feed((8).to_bytes(4, "big")) is None
    assert reader.wanted() == 8
    assert reader.feed(b'{"a":') is None and reader.wanted() == 3
    with pytest.raises(FrameError, match="past the end"):
        reader.feed(b" 1}xx")
    assert reader.feed(b" 1}") == {"a": 1}
    reader = FrameReader(10)
    reader.feed(b"\0\0\0\x01")
    with pytest.raises(FrameError, match="malformed"):
        reader.feed(b"[")


# -- 5. the host's memory -------------------------------------------------------------------

MEMORY_PROBE = """
import json, resource, sys
from openended.sandbox import Limits, Sandbox

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10

with Sandbox(limits=Limits(wall_seconds=20, cpu_seconds=20, memory_mb=2048),
             isolation=sys.argv[1], workers=1) as box:
    box.run_sync("def f():\\n    return 1\\n", "f")
    before = peak()
    kinds = []
    for program in (
        # a frame announcing 1.5 GiB on the result pipe, then the data
        "import os\\ndef f():\\n    os.write(3, (3 << 29).to_bytes(4, 'big'))\\n"
        "    block = b'x' * (1 << 20)\\n    for _ in range(1536):\\n        os.write(3, block)\\n",
        # a 200 MB return value (the result cap is 1 MiB)
        "def f():\\n    return 'x' * (200 << 20)\\n",
        # 1.5 GB on stdout
        "import os\\ndef f():\\n    block = b'x' * (1 << 20)\\n"
        "    for _ in range(1536):\\n        os.write(1, block)\\n",
    ):
        kinds.append(box.run_sync(program, "f").error.kind)
    print(json.dumps({"before": before, "after": peak(), "kinds": kinds}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolation", BACKENDS)
def test_floods_never_grow_the_hosts_memory(isolation: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, isolation],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["kinds"] == ["bad_return_value", "bad_return_value", "output_too_large"]
    assert report["after"] - report["before"] < 64, report  # MB


# -- 6. the scratch quota -------------------------------------------------------------------

QUOTA = Limits(wall_seconds=20, cpu_seconds=20, max_file_mb=64, max_scratch_mb=128)


@pytest.mark.parametrize("isolation", BACKENDS)
def test_the_scratch_folder_has_a_total_quota(isolation: str) -> None:
    fill = (
        "import os\ndef f():\n    block = b'x' * (1 << 20)\n    written = 0\n"
        "    for i in range(12):\n"
        "        with open(f'big{i}', 'wb') as out:\n"
        "            for _ in range(60):\n"
        "                out.write(block)\n"
        "                written += len(block)\n"
        "    return written\n"
    )
    many = "def f():\n    for i in range(6000):\n        open(f'f{i}', 'w').close()\n    return 1\n"
    with Sandbox(limits=QUOTA, isolation=isolation, workers=1) as box:
        filled = box.run_sync(fill, "f")
        assert not filled.ok, filled  # 720 MB never fits in 128 MB
        assert filled.error.kind in ("output_too_large", "exception")
        if filled.error.kind == "exception":  # the tmpfs is full: the kernel said so
            assert "No space left on device" in filled.error.message
        crowded = box.run_sync(many, "f")
        assert crowded.error is not None and crowded.error.kind == "output_too_large"
        assert "files" in crowded.error.message
        empty = box.run_sync("import os\ndef f():\n    return os.listdir('.')\n", "f")
        assert empty.value == []  # everything was removed after the runs


# -- 7. user namespaces ---------------------------------------------------------------------

NAMESPACES = """
import ctypes, os, shutil, subprocess
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["unshare(CLONE_NEWUSER)"] = libc.unshare(0x10000000)
out["setns"] = libc.setns(0, 0)
out["setsid"] = libc.setsid()
number = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
if number is not None:
    pid = libc.syscall(number, 0x10000000 | 17, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    out["clone(CLONE_NEWUSER)"] = -1 if pid < 0 else 0
    if pid > 0:
        os.waitpid(pid, 0)
tool = shutil.which("unshare")
if tool:
    out["unshare -rm"] = subprocess.run([tool, "-rm", "true"], capture_output=True).returncode
bwrap = shutil.which("bwrap")
if bwrap:
    shutil.copy(bwrap, "copied-bwrap")
    os.chmod("copied-bwrap", 0o755)
    done = subprocess.run(["./copied-bwrap", "--bind", "/", "/", "true"], capture_output=True)
    out["copied bwrap"] = done.returncode
return out
"""


def test_no_new_namespaces_inside_the_sandbox(sandbox: Sandbox) -> None:
    result = sandbox.run_sync(body(NAMESPACES), "attack")
    assert result.ok, result.error
    assert result.value["unshare(CLONE_NEWUSER)"] == -1
    assert result.value["setns"] == -1 and result.value["setsid"] == -1
    for name, outcome in result.value.items():
        assert outcome != 0, f"{name} succeeded inside the sandbox"
    assert sandbox.info["seccomp"] is True


# -- 8. a Python the sandbox uid cannot read ------------------------------------------------

LOCKED = """
import json, sys
from openended.sandbox import Limits, Sandbox
with Sandbox(limits=Limits(wall_seconds=10), isolation="rlimits", workers=2) as box:
    result = box.run_sync(
        "import locked_module, fractions, os\\n"
        "def f():\\n"
        "    return [locked_module.VALUE, str(fractions.Fraction(1, 3)), os.getuid()]\\n",
        "f",
    )
    print(json.dumps({"value": result.value, "error": str(result.error), "info": box.info}))
"""


@pytest.mark.slow
@root_only
def test_the_fallback_imports_from_a_python_its_uid_cannot_read(tmp_path: Path) -> None:
    """A venv inside a 0700 folder (like a pyenv under /root): without bubblewrap the
    sandbox uid cannot enter it, yet programs import its modules and the standard library."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    venv = locked / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "locked_module.py").write_text("VALUE = 42\n")
    done = subprocess.run([str(python), "-c", LOCKED], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["value"] == [42, "1/3", report["value"][2]], report
    assert report["value"][2] != 0  # it ran as the slot's uid
    assert report["info"]["mapped_paths"] >= 1


def test_a_sandbox_that_cannot_run_programs_fails_at_start() -> None:
    """Not silently, run after run: the pool refuses to start and says why."""
    with pytest.raises(SandboxUnavailableError, match="did not start"):
        Sandbox(limits=Limits(memory_mb=1), isolation=BACKENDS[0])
