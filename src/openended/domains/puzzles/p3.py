"""Programming puzzles in the P3 format (Schuster et al. 2021, arXiv 2106.05784).

A puzzle is ``def sat(x: T, ...) -> bool``; an answer ``x`` solves it when ``sat(x)``
returns True and ``x`` has the declared answer type ``T``. A solution is a function
``sol()`` (with the puzzle's extra arguments as defaults) that returns such an answer.
"""

from __future__ import annotations

import ast
import json
import random
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openended.errors import UserError
from openended.jsonl import read_jsonl
from openended.textfiles import read_text

ANSWER_TYPES = (
    "int",
    "float",
    "str",
    "bool",
    "List[int]",
    "List[float]",
    "List[str]",
    "List[bool]",
    "List[List[int]]",
)
"""The answer types the P3 splits use most; anything else falls in one 'other' bin."""


class PuzzleFileError(UserError, ValueError):
    """A puzzle file that cannot be read; the message names the file, entry and key."""


@dataclass(frozen=True)
class Puzzle:
    """One P3 puzzle: `sat` source, answer type, and the solution's header and docstring."""

    name: str
    sat: str
    ans_type: str
    sol_header: str = "def sol():"
    sol_docstring: str = ""
    sol_bodies: tuple[str, ...] = ()
    module: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str:
        """The problem the instance comes from (``Study_1:0`` -> ``Study_1``)."""
        return self.name.split(":", 1)[0]

    def solution(self, body: str) -> str:
        """The full `sol` source for a body (indented lines)."""
        doc = f"\n{self.sol_docstring}" if self.sol_docstring else ""
        return f"{self.sol_header}{doc}\n{body.rstrip()}\n"

    def reference_solutions(self) -> list[str]:
        return [self.solution(body) for body in self.sol_bodies]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sat": self.sat,
            "ans_type": self.ans_type,
            "sol_header": self.sol_header,
            "sol_docstring": self.sol_docstring,
            "sol_bodies": list(self.sol_bodies),
            "module": self.module,
            **self.extra,
        }


REQUIRED_KEYS = ("name", "sat", "ans_type")


def puzzle_from_json(entry: Any, *, where: str) -> Puzzle:
    """One puzzle from a P3 JSON object; `where` names it in errors (file and index)."""
    if not isinstance(entry, dict):
        raise PuzzleFileError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in REQUIRED_KEYS:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise PuzzleFileError(f"{where}: key {key!r} is missing or not a non-empty string")
    bodies = entry.get("sol_bodies", [])
    if not isinstance(bodies, list) or not all(isinstance(b, str) for b in bodies):
        raise PuzzleFileError(f"{where}: key 'sol_bodies' must be a list of strings")
    try:
        with no_digit_limit():
            tree = ast.parse(entry["sat"])
    except SyntaxError as exc:
        raise PuzzleFileError(
            f"{where}: key 'sat' is not valid Python (line {exc.lineno}: {exc.msg})"
        ) from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == "sat" for n in tree.body):
        raise PuzzleFileError(f"{where}: key 'sat' does not define a function named sat")
    known = {*REQUIRED_KEYS, "sol_header", "sol_docstring", "sol_bodies", "module"}
    return Puzzle(
        name=entry["name"],
        sat=entry["sat"].strip("\n"),
        ans_type=entry["ans_type"].strip(),
        sol_header=entry.get("sol_header") or sol_header_for(entry["sat"]),
        sol_docstring=entry.get("sol_docstring") or "",
        sol_bodies=tuple(bodies),
        module=entry.get("module") or "",
        extra={k: v for k, v in entry.items() if k not in known},
    )


def load_puzzles(path: str | Path) -> list[Puzzle]:
    """Puzzles from a P3-format JSON file (a list of objects with at least ``name``,
    ``sat`` and ``ans_type``), or a JSONL file of such objects."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [
            puzzle_from_json(entry, where=f"{path}: line {number}")
            for number, entry in read_jsonl(path, PuzzleFileError)
        ]
    text = read_text(path, what="puzzle file", error=PuzzleFileError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PuzzleFileError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not JSON: {exc.msg}"
        ) from None
    if not isinstance(data, list):
        raise PuzzleFileError(f"{path}: expected a JSON list of puzzles")
    return [puzzle_from_json(e, where=f"{path}: puzzle {i}") for i, e in enumerate(data)]


@contextmanager
def no_digit_limit() -> Iterator[None]:
    """Lift Python's limit on integer literal digits for a while (P3 has puzzles with
    numbers of thousands of digits)."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


def save_puzzles(puzzles: Sequence[Puzzle], path: str | Path) -> None:
    Path(path).write_text(json.dumps([p.to_json() for p in puzzles], indent=1))


def sol_header_for(sat: str) -> str:
    """``def sol(<sat's arguments after the first, with defaults>):``"""
    with no_digit_limit():
        return _sol_header(ast.parse(sat))


def _sol_header(tree: ast.Module) -> str:
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "sat")
    args = function.args
    rest = args.args[1:]
    defaults = [None] * (len(rest) - len(args.defaults)) + list(args.defaults)
    parts = []
    for arg, default in zip(rest, defaults, strict=True):
        text = arg.arg
        if default is not None:
            text += f"={ast.unparse(default)}"
        parts.append(text)
    return f"def sol({', '.join(parts)}):"


def split_by_family(
    puzzles: Sequence[Puzzle], *, held_out: float, seed: int = 0
) -> tuple[list[Puzzle], list[Puzzle]]:
    """(train, held_out): whole problem families go to one side, so no variant of a
    held-out puzzle is ever seen in training. Deterministic in `seed`."""
    families = sorted({p.family for p in puzzles})
    random.Random(seed).shuffle(families)
    count = round(held_out * len(families))
    chosen = set(families[:count])
    train = [p for p in puzzles if p.family not in chosen]
    test = [p for p in puzzles if p.family in chosen]
    return train, test


# -- answer types ------------------------------------------------------------------------------

_TYPE = re.compile(r"^\s*(?:List|list)\[(.+)\]\s*$")


def answer_type_bin(ans_type: str) -> int:
    """Index of the type in `ANSWER_TYPES`, or ``len(ANSWER_TYPES)`` for any other."""
    normal = normalise_type(ans_type)
    return ANSWER_TYPES.index(normal) if normal in ANSWER_TYPES else len(ANSWER_TYPES)


def normalise_type(ans_type: str) -> str:
    match = _TYPE.match(ans_type)
    if match:
        return f"List[{normalise_type(match.group(1))}]"
    return ans_type.strip()


def type_check_source() -> str:
    """Source of ``matches(value, ans_type) -> bool`` for use inside the sandbox (the
    same code this module uses)."""
    return textwrap.dedent(
        '''
        def matches(value, ans_type):
            """Does a JSON value have the P3 answer type (int, float, str, bool, List[...])?"""
            ans_type = ans_type.strip()
            if ans_type.startswith(("List[", "list[")) and ans_type.endswith("]"):
                inner = ans_type[5:-1]
                return isinstance(value, list) and all(matches(v, inner) for v in value)
            if ans_type == "bool":
                return isinstance(value, bool)
            if ans_type == "int":
                return isinstance(value, int) and not isinstance(value, bool)
            if ans_type == "float":
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            if ans_type == "str":
                return isinstance(value, str)
            return True  # a type we do not know: accept any value
        '''
    )


_namespace: dict[str, Any] = {}
exec(type_check_source(), _namespace)
matches_type = _namespace["matches"]
"""``matches_type(value, ans_type) -> bool`` (see `type_check_source`)."""


def trivial_answers(ans_type: str) -> list[Any]:
    """The empty answer of the type (``""``, 0, 0.0, False, ``[]``): a puzzle that accepts
    it asks for nothing (Haluptzok et al. 2022 drop such puzzles)."""
    normal = normalise_type(ans_type)
    if _TYPE.match(normal):
        return [[]]
    return {"int": [0], "float": [0.0], "str": [""], "bool": [False]}.get(normal, [None])


def random_answers(ans_type: str, count: int, seed: int = 0) -> list[Any]:
    """Random values of the type: if a puzzle accepts every one of them it checks nothing."""
    rng = random.Random(seed)

    def one(kind: str, depth: int = 0) -> Any:
        match = _TYPE.match(kind)
        if match:
            length = rng.randint(1, 6 if depth else 8)
            return [one(match.group(1), depth + 1) for _ in range(length)]
        if kind == "int":
            return rng.choice([rng.randint(-10, 10), rng.randint(-(10**6), 10**6)])
        if kind == "float":
            return rng.uniform(-1000, 1000)
        if kind == "str":
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if kind == "bool":
            return rng.random() < 0.5
        return None

    normal = normalise_type(ans_type)
    return [one(normal) for _ in range(count)]
