"""The genome of generate mode: the source of a ``sat`` function and a ``sol`` function."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from openended.domains.program.domain import normalised_ast, strip_code
from openended.domains.puzzles.p3 import Puzzle


class PuzzleParseError(ValueError):
    """A completion that is not a (sat, sol) pair."""


@dataclass(frozen=True)
class PuzzleSource:
    """A puzzle and its solution, as source text."""

    sat: str
    sol: str
    ans_type: str

    @property
    def genome(self) -> str:
        return f"{self.sat}\n\n{self.sol}\n"

    def as_puzzle(self, name: str) -> Puzzle:
        """The P3 form: the solution's header, docstring and body kept apart."""
        header, docstring, body = split_solution(self.sol)
        return Puzzle(
            name=name,
            sat=self.sat,
            ans_type=self.ans_type,
            sol_header=header,
            sol_docstring=docstring,
            sol_bodies=(body,),
        )

    @property
    def fingerprint(self) -> str | None:
        """Near-duplicate key: the normalised AST of ``sat`` (another solution to the same
        puzzle is not a new puzzle)."""
        return normalised_ast(self.sat)


def parse_puzzle(completion: str) -> PuzzleSource:
    """Read a (sat, sol) pair from a completion. Functions named ``satN``/``solN`` (as in
    the few-shot prompts) are renamed ``sat``/``sol``; a completion that continues a
    prompt ending in ``def satN(`` is completed with that header."""
    text = strip_code(completion)
    if not re.match(r"\s*(def|from|import|@)", text):
        text = "def sat(" + text
    text = textwrap.dedent(text)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        # keep the longest prefix that parses (a completion cut off mid-function)
        tree = _longest_parsing_prefix(text)
        if tree is None:
            raise PuzzleParseError(f"syntax error: line {exc.lineno}: {exc.msg}") from None
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    sat = next((f for f in functions if re.fullmatch(r"sat\d*", f.name)), None)
    sol = next((f for f in functions if re.fullmatch(r"sol\d*", f.name)), None)
    if sat is None:
        raise PuzzleParseError("no function sat(...) in the completion")
    if sol is None:
        raise PuzzleParseError("no function sol(...) in the completion")
    if not sat.args.args or sat.args.args[0].annotation is None:
        raise PuzzleParseError("sat's first argument has no type annotation (the answer type)")
    if len(sat.args.args) - 1 != len(sat.args.defaults):
        raise PuzzleParseError("sat(...) has arguments after the answer without defaults")
    if len(sol.args.args) != len(sol.args.defaults):
        raise PuzzleParseError("sol(...) has arguments without defaults")
    ans_type = ast.unparse(sat.args.args[0].annotation)
    sat.name, sol.name = "sat", "sol"
    return PuzzleSource(sat=ast.unparse(sat), sol=ast.unparse(sol), ans_type=ans_type)


def _longest_parsing_prefix(text: str) -> ast.Module | None:
    lines = text.split("\n")
    for end in range(len(lines) - 1, 0, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
    return None


def split_solution(sol: str) -> tuple[str, str, str]:
    """(header line, docstring lines or "", body lines) of a ``def sol(...)`` source."""
    tree = ast.parse(sol)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    lines = sol.split("\n")
    body_start = function.body[0].lineno - 1
    docstring = ""
    first = function.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(function.body) > 1
    ):
        docstring = "\n".join(lines[body_start : first.end_lineno])
        body_start = first.end_lineno or body_start
    header = "\n".join(lines[: function.body[0].lineno - 1])
    return header, docstring, "\n".join(lines[body_start:])
