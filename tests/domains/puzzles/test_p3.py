"""Loading P3 files, answer types, family splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openended.domains.puzzles.p3 import (
    PuzzleFileError,
    answer_type_bin,
    load_puzzles,
    matches_type,
    random_answers,
    sol_header_for,
    split_by_family,
    trivial_answers,
)
from tests.domains.puzzles.fixtures import PUZZLES


def write(tmp_path: Path, data: object, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_loads_json_and_jsonl(tmp_path: Path) -> None:
    puzzles = load_puzzles(write(tmp_path, PUZZLES))
    assert [p.name for p in puzzles] == [p["name"] for p in PUZZLES]
    assert puzzles[0].family == "Double"
    assert puzzles[2].sol_header == "def sol():"  # derived from sat when missing
    lines = "\n".join(json.dumps(p) for p in PUZZLES[:2])
    assert len(load_puzzles(write(tmp_path, lines, "p.jsonl"))) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[{", "line 1, column 3: not JSON"),
        ({"name": "x"}, "expected a JSON list"),
        ([{"name": "a", "ans_type": "int"}], "puzzle 0: key 'sat' is missing"),
        (
            [{"name": "a", "sat": "def sat(x:", "ans_type": "int"}],
            "puzzle 0: key 'sat' is not valid",
        ),
        (
            [{"name": "a", "sat": "def f(x): pass", "ans_type": "int"}],
            "does not define a function named sat",
        ),
        ([PUZZLES[0], {**PUZZLES[0], "sol_bodies": "x"}], "puzzle 1: key 'sol_bodies'"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(PuzzleFileError, match=message) as info:
        load_puzzles(path)
    assert str(path) in str(info.value)


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(PUZZLES[0]) + "\n\nnot json\n", "p.jsonl")
    with pytest.raises(PuzzleFileError, match="line 3: not JSON"):
        load_puzzles(path)


def test_sol_header_keeps_the_extra_arguments() -> None:
    assert (
        sol_header_for("def sat(x: int, a=3, b=[1, 2]):\n    return x") == "def sol(a=3, b=[1, 2]):"
    )


def test_answer_types() -> None:
    assert matches_type([[1, 2], []], "List[List[int]]")
    assert not matches_type([True], "List[int]")  # a bool is not an int here
    assert not matches_type("1", "int")
    assert matches_type(3, "float")
    assert answer_type_bin("list[int]") == answer_type_bin("List[int]")
    assert answer_type_bin("Dict[str, int]") == answer_type_bin("Set[int]")  # the 'other' bin
    assert trivial_answers("List[str]") == [[]]
    assert trivial_answers("str") == [""]
    randoms = random_answers("List[List[int]]", 5, seed=1)
    assert randoms == random_answers("List[List[int]]", 5, seed=1)
    assert all(matches_type(r, "List[List[int]]") for r in randoms)


def test_split_keeps_families_together(tmp_path: Path) -> None:
    puzzles = load_puzzles(write(tmp_path, PUZZLES))
    train, test = split_by_family(puzzles, held_out=0.5, seed=3)
    assert not {p.family for p in train} & {p.family for p in test}
    assert len(train) + len(test) == len(puzzles)
    assert split_by_family(puzzles, held_out=0.5, seed=3) == (train, test)
