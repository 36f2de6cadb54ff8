"""The part of a program that evolves: an EVOLVE-BLOCK or a named function."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from openended.errors import UserError

START = re.compile(r"^[ \t]*#[ \t]*EVOLVE-BLOCK-START.*$", re.MULTILINE)
END = re.compile(r"^[ \t]*#[ \t]*EVOLVE-BLOCK-END.*$", re.MULTILINE)


class RegionError(UserError, ValueError):
    """The initial program does not mark a region to evolve; the message says how."""


@dataclass(frozen=True)
class Region:
    """`prefix + genome + suffix` is the whole program.

    Attributes:
        function: the evolved function's name when the region is one function.
        header: that function's ``def`` line(s) and docstring, ending right after the
            docstring's closing quotes (or the colon) — the prompt ending small code
            models complete best.
    """

    prefix: str
    initial: str
    suffix: str
    function: str | None = None
    header: str | None = None

    def assemble(self, genome: str) -> str:
        text = genome if genome.endswith("\n") else genome + "\n"
        return self.prefix + text + self.suffix

    def rename(self, genome: str, name: str) -> str:
        """`genome` with the evolved function renamed (for FunSearch-style prompts)."""
        if self.function is None:
            return genome
        return re.sub(rf"\bdef\s+{re.escape(self.function)}\s*\(", f"def {name}(", genome, count=1)

    def header_for(self, name: str) -> str:
        assert self.header is not None and self.function is not None
        return re.sub(
            rf"\bdef\s+{re.escape(self.function)}\s*\(", f"def {name}(", self.header, count=1
        )


def _function_header(source_lines: list[str], node: ast.FunctionDef) -> str:
    first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    body0 = node.body[0]
    docstring = (
        isinstance(body0, ast.Expr)
        and isinstance(body0.value, ast.Constant)
        and isinstance(body0.value.value, str)
    )
    last = (body0.end_lineno if docstring else body0.lineno - 1) or node.lineno
    lines = source_lines[first:last]
    text = "".join(lines).rstrip()
    if not docstring:
        # end right after the colon of the def line(s)
        text = "".join(source_lines[first : body0.lineno - 1]).rstrip()
    return text


def find_region(source: str, function: str | None = None) -> Region:
    """Locate the region to evolve in `source`.

    With `function`, the region is that top-level function. Otherwise it is the text
    between ``# EVOLVE-BLOCK-START`` and ``# EVOLVE-BLOCK-END``; if that text is exactly
    one function, it is also treated as a named function (so FunSearch-style crossover
    can be used).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RegionError(
            f"the initial program has a syntax error: line {exc.lineno}: {exc.msg}"
        ) from None
    lines = source.splitlines(keepends=True)
    if function is not None:
        nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        if not nodes:
            names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
            raise RegionError(
                f"the initial program has no top-level function {function!r} "
                f"(functions: {', '.join(names) or 'none'})"
            )
        node = nodes[0]
        first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        last = node.end_lineno or node.lineno
        return Region(
            prefix="".join(lines[:first]),
            initial="".join(lines[first:last]),
            suffix="".join(lines[last:]),
            function=function,
            header=_function_header(lines, node),
        )
    starts, ends = list(START.finditer(source)), list(END.finditer(source))
    if len(starts) != 1 or len(ends) != 1 or ends[0].start() < starts[0].end():
        raise RegionError(
            "mark the code to evolve with one '# EVOLVE-BLOCK-START' line and one "
            "'# EVOLVE-BLOCK-END' line after it, or name a function to evolve "
            f"(found {len(starts)} start and {len(ends)} end markers)"
        )
    begin = source.index("\n", starts[0].start()) + 1
    end = ends[0].start()
    region = Region(prefix=source[:begin], initial=source[begin:end], suffix=source[end:])
    try:
        inner = ast.parse(textwrap.dedent(region.initial))
    except SyntaxError:
        return region
    if (
        len(inner.body) == 1
        and isinstance(inner.body[0], ast.FunctionDef)
        and not region.initial[:1].isspace()
    ):
        node = inner.body[0]
        return Region(
            prefix=region.prefix,
            initial=region.initial,
            suffix=region.suffix,
            function=node.name,
            header=_function_header(region.initial.splitlines(True), node),
        )
    return region


@runtime_checkable
class ProgramDomain(Protocol):
    """What the program operators (diff, rewrite, funsearch) need of a domain: the region
    that evolves and a check of a proposed region."""

    region: Region

    def validate(self, genome: str) -> str | None:
        """Why `genome` is not a valid region (None when it is)."""
        ...
