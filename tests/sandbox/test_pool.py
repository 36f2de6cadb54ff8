"""Pool behaviour, isolation choice and the fallbacks."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from openended.sandbox import Limits, Sandbox, SandboxUnavailableError, bwrap_path
from openended.sandbox import pool as pool_module

LIMITS = Limits(
    wall_seconds=2.0, cpu_seconds=1.0, memory_mb=512, max_processes=16, max_output_bytes=64 * 1024
)
DOUBLE = "def f(x):\n    return x * 2\n"


def test_workers_are_warm_and_recycled_after_n_runs() -> None:
    with Sandbox(limits=LIMITS, workers=1, recycle_after=5) as box:
        values = [box.run_sync(DOUBLE, "f", [i]).value for i in range(12)]
        assert values == [2 * i for i in range(12)]
        assert box.started == 3  # 12 runs, 5 per process


def test_pool_survives_event_loops_and_threads() -> None:
    with Sandbox(limits=LIMITS, workers=2) as box:
        first = asyncio.run(box.map(DOUBLE, "f", [[i] for i in range(6)]))
        second = asyncio.run(box.map(DOUBLE, "f", [[i] for i in range(6)]))
        assert [r.value for r in first] == [r.value for r in second] == [0, 2, 4, 6, 8, 10]
        assert all(r.ok for r in first + second)
        assert box.started == 2


def test_arguments_and_kwargs_are_json() -> None:
    with Sandbox(limits=LIMITS, workers=1) as box:
        result = box.run_sync(
            "def f(a, b=0, *, c):\n    return [a, b, c]\n", "f", [{"k": [1]}], {"c": None}
        )
        assert result.value == [{"k": [1]}, 0, None]
        with pytest.raises(TypeError, match="JSON-serialisable"):
            box.run_sync(DOUBLE, "f", [object()])
        missing = box.run_sync(DOUBLE, "nope")
        assert missing.error.kind == "exception"
        assert "defines no function 'nope'" in missing.error.message
        syntax = box.run_sync("def f(:\n", "f")
        assert syntax.error.kind == "exception" and "SyntaxError" in syntax.error.message


def test_a_worker_killed_from_outside_while_idle_is_replaced() -> None:
    with Sandbox(limits=LIMITS, workers=1) as box:
        assert box.run_sync(DOUBLE, "f", [1]).value == 2
        process = box._processes[0]
        assert process is not None
        process.process.kill()
        process.process.wait()
        assert box.run_sync(DOUBLE, "f", [2]).value == 4


def test_rlimits_fallback_limits_and_reports_its_isolation() -> None:
    with Sandbox(limits=LIMITS, isolation="rlimits", workers=1) as box:
        assert box.isolation == "rlimits"
        ok = box.run_sync(
            "def f():\n    import os\n    return [os.getuid(), sorted(os.environ)]\n", "f"
        )
        assert ok.isolation == "rlimits"
        if os.geteuid() == 0:
            assert ok.value[0] == 61000  # the slot's unprivileged uid
        assert "OPENENDED" not in " ".join(ok.value[1])
        assert (
            box.run_sync("def f():\n    while True:\n        pass\n", "f").error.kind == "timeout"
        )
        assert box.run_sync("def f():\n    return bytearray(10**10)\n", "f").error.kind == "memory"
        flood = box.run_sync("def f():\n    while True:\n        print('x' * 1000)\n", "f")
        assert flood.error.kind == "output_too_large"
        if os.geteuid() == 0:
            bomb = box.run_sync(
                "def f():\n    import os\n    while True:\n        os.fork()\n", "f"
            )
            assert bomb.error.kind == "exception"
        assert box.run_sync(DOUBLE, "f", [4]).value == 8


def test_in_process_only_by_name() -> None:
    with Sandbox(limits=LIMITS, isolation="inprocess") as box:
        result = box.run_sync("def f():\n    import os\n    return os.getpid()\n", "f")
        assert result.value == os.getpid() and result.isolation == "inprocess"
        assert box.run_sync("def f():\n    return {1}\n", "f").error.kind == "bad_return_value"


def test_auto_without_bwrap_warns_and_bwrap_without_it_refuses(monkeypatch, caplog) -> None:
    monkeypatch.setattr(pool_module, "bwrap_path", lambda: None)
    monkeypatch.setattr(pool_module, "best_isolation", lambda: "rlimits")
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        Sandbox(isolation="bwrap")
    with caplog.at_level(logging.WARNING), Sandbox(isolation="auto") as box:
        assert box.isolation == "rlimits"
    assert "without filesystem or network isolation" in caplog.text


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not installed")
def test_auto_picks_bwrap_when_it_works() -> None:
    with Sandbox(limits=LIMITS) as box:
        assert box.isolation == "bwrap"
        assert box.run_sync(DOUBLE, "f", [1]).isolation == "bwrap"


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="wall_seconds"):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids are used only as root")
@pytest.mark.slow  # subprocesses
def test_open_pools_never_share_a_uid_even_across_processes() -> None:
    import subprocess
    import sys

    script = (
        "from openended.sandbox import Sandbox\n"
        "box = Sandbox(isolation='rlimits', workers=2)\n"
        "print(*box.uids)\n"
        "import sys; sys.stdin.read()\n"  # hold the pool open until told to stop
    )
    with (
        Sandbox(isolation="rlimits", workers=2) as first,
        Sandbox(isolation="rlimits", workers=3) as second,
    ):
        other = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            third = {int(u) for u in other.stdout.readline().split()}  # type: ignore[union-attr]
        finally:
            other.communicate("")
        uids = [set(first.uids), set(second.uids), third]
        assert [len(u) for u in uids] == [2, 3, 2]
        assert not (uids[0] & uids[1] or uids[0] & uids[2] or uids[1] & uids[2])
        # both workers of a pool run as their own uid
        values = [first.run_sync("import os\ndef f():\n    return os.getuid()\n", "f").value]
        assert values[0] in uids[0]
    with Sandbox(isolation="rlimits", workers=2) as again:  # closed pools give their uids back
        assert set(again.uids) & (uids[0] | uids[1])
