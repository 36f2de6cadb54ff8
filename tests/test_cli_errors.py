"""No traceback reaches the user: every bad input of the run review (issue 18) is one line
that names the file, key or value, a non-zero exit, and nothing created.

(A failing evaluator's own traceback may follow that line, marked as the evaluator's.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openended.apps.cli import main

DEAD_MODEL = "http://127.0.0.1:9/v1"  # the inputs fail before a model is needed

PROGRAM = "# EVOLVE-BLOCK-START\ndef f(x):\n    return x + 1\n# EVOLVE-BLOCK-END\n"
EVALUATORS = {
    "ok": 'def evaluate(path):\n    return {"score": 1.0}\n',
    "raises": 'def evaluate(path):\n    raise ValueError("boom")\n',
    "float": "def evaluate(path):\n    return 1.0\n",
    "nan": 'def evaluate(path):\n    return {"score": float("nan")}\n',
    "inf": 'def evaluate(path):\n    return {"score": float("inf")}\n',
    "no score": 'def evaluate(path):\n    return {"value": 1}\n',
    "no evaluate": "def score(path):\n    return 1\n",
    "syntax error": 'def evaluate(path):\n    return {"score": 1\n',
    "hangs": "def evaluate(path):\n    while True:\n        pass\n",
}


def files(folder: Path) -> Path:
    (folder / "initial.py").write_text(PROGRAM)
    (folder / "plain.py").write_text("def f(x):\n    return x + 1\n")
    (folder / "latin.py").write_bytes(PROGRAM.replace("x + 1", "'\xff'").encode("latin-1"))
    for name, text in EVALUATORS.items():
        (folder / f"ev_{name.replace(' ', '_')}.py").write_text(text)
    (folder / "ev_latin.py").write_bytes(b'def evaluate(path):\n    return {"score": "\xff"}\n')
    (folder / "latin.toml").write_bytes(b'[search]\nbatch_size = "\xff"\n')
    (folder / "latin.csv").write_bytes(b"x,y\n1,\xff\n")
    (folder / "latin.jsonl").write_bytes(b'{"text": "\xff"}\n')
    (folder / "axes.toml").write_text(
        'task = "questions"\n[[axes]]\nname = "tone"\ndescription = "its tone"\n'
        'labels = ["a", "b"]\n'
    )
    return folder


def evolve(initial: str, evaluator: str, *extra: str) -> Callable[[Path], list[str]]:
    def command(d: Path) -> list[str]:
        return [
            "evolve",
            str(d / initial),
            str(d / evaluator),
            "--runs-dir",
            str(d / "runs"),
            "--model",
            DEAD_MODEL,
            "--set",
            "domain.sandbox.wall_seconds=2",
            "--set",
            "domain.sandbox.cpu_seconds=2",
            *extra,
        ]

    return command


def run(*extra: str) -> Callable[[Path], list[str]]:
    def command(d: Path) -> list[str]:
        return ["run", "--runs-dir", str(d / "runs"), "--model", DEAD_MODEL, *extra]

    return command


def csv_run(d: Path) -> list[str]:
    return run("--set", f'domain.data="{d / "latin.csv"}"')(d)


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing initial program": (evolve("nope.py", "ev_ok.py"), "nope.py: no such initial program"),
    "missing evaluator": (evolve("initial.py", "nope.py"), "nope.py: no such evaluator"),
    "evaluator raises": (evolve("initial.py", "ev_raises.py"), "ValueError: boom"),
    "evaluator returns a float": (evolve("initial.py", "ev_float.py"), "returned float"),
    "evaluator returns NaN": (evolve("initial.py", "ev_nan.py"), "score nan is not"),
    "evaluator returns inf": (evolve("initial.py", "ev_inf.py"), "score inf is not"),
    "a dict without score": (evolve("initial.py", "ev_no_score.py"), "has no 'score'"),
    "no evaluate": (evolve("initial.py", "ev_no_evaluate.py"), "ev_no_evaluate.py: defines no"),
    "evaluator syntax error": (evolve("initial.py", "ev_syntax_error.py"), "line 2: syntax"),
    "evaluator hangs": (evolve("initial.py", "ev_hangs.py"), "ev_hangs.py: evaluate: timeout"),
    "no EVOLVE-BLOCK": (evolve("plain.py", "ev_ok.py"), "plain.py: mark the code to evolve"),
    "unknown --function": (
        evolve("initial.py", "ev_ok.py", "--function", "nope"),
        "initial.py: the initial program has no top-level function 'nope'",
    ),
    "non-UTF-8 program": (evolve("latin.py", "ev_ok.py"), "latin.py: line 3, column"),
    "non-UTF-8 evaluator": (evolve("initial.py", "ev_latin.py"), "ev_latin.py: line 2"),
    "non-UTF-8 config": (
        lambda d: ["run", "--config", str(d / "latin.toml"), "--runs-dir", str(d / "runs")],
        "latin.toml: line 2, column 15: byte 0xff is not UTF-8",
    ),
    "non-UTF-8 CSV": (csv_run, "latin.csv: line 2, column 3: byte 0xff is not UTF-8"),
    "non-UTF-8 JSONL": (
        lambda d: ["solve", str(d / "latin.jsonl"), "--model", DEAD_MODEL],
        "latin.jsonl: line 1",
    ),
    "non-UTF-8 seed data": (
        lambda d: [
            "augment",
            str(d / "latin.jsonl"),
            "--axes",
            str(d / "axes.toml"),
            "--runs-dir",
            str(d / "runs"),
            "--model",
            DEAD_MODEL,
        ],
        "latin.jsonl: line 1",
    ),
    "a model folder that does not exist": (
        run("--model", "/nonexistent/model"),
        "/nonexistent/model",
    ),
    "resume of a folder that is no run": (
        lambda d: ["resume", str(d)],
        "is not an openended run directory",
    ),
    "report of a folder that is no run": (
        lambda d: ["report", str(d)],
        "is not an openended run directory",
    ),
    "export of a folder that is no run": (
        lambda d: ["export", str(d)],
        "is not an openended run directory",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_one_line_naming_it(tmp_path: Path, capsys, case: str) -> None:
    command, named = CASES[case]
    folder = files(tmp_path)
    code = main(command(folder))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: "), err
    assert named in " ".join(lines[0].split()), err
    if len(lines) > 1:  # only the evaluator's own frames may follow
        assert lines[1] == "the evaluator's traceback:", err
        assert all(str(folder) in line for line in lines[2:] if line.strip().startswith("File"))
    assert "Traceback (most recent call last)" not in err
    assert "openended/" not in err.replace(str(folder), "")  # none of our frames
    assert not (folder / "runs").exists()  # nothing created


def test_debug_shows_pythons_traceback(tmp_path: Path) -> None:
    folder = files(tmp_path)
    with pytest.raises(Exception, match="no such initial program"):
        main([*evolve("nope.py", "ev_ok.py")(folder), "--debug"])


def test_an_internal_error_is_one_line_too(monkeypatch, tmp_path: Path, capsys) -> None:
    from openended.apps import cli
    from openended.apps.cli import runs

    def broken(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runs, "cmd_report", broken)
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: internal error: ZeroDivisionError: a bug (run again with --debug to see where)"
    )
