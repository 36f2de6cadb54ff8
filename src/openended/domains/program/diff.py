"""SEARCH/REPLACE diff blocks (the Aider / AlphaEvolve format): parse them tolerantly and
apply them, saying exactly why a block could not be applied."""

from __future__ import annotations

import re
from dataclasses import dataclass

BLOCK = re.compile(
    r"<{5,9}\s*SEARCH[^\n]*\n(?P<search>.*?)\n?={5,9}[^\n]*\n(?P<replace>.*?)\n?>{5,9}\s*REPLACE",
    re.DOTALL,
)
# a last block cut off by the token limit: SEARCH and ======= present, REPLACE marker missing
OPEN_BLOCK = re.compile(
    r"<{5,9}\s*SEARCH[^\n]*\n(?P<search>.*?)\n?={5,9}[^\n]*\n(?P<replace>.*)$", re.DOTALL
)


@dataclass(frozen=True)
class DiffBlock:
    search: str
    replace: str


class DiffError(ValueError):
    """A diff could not be parsed or applied. `status` is ``parse_error`` or
    ``search_not_found``."""

    def __init__(self, message: str, status: str = "parse_error") -> None:
        super().__init__(message)
        self.status = status


def parse_blocks(text: str) -> list[DiffBlock]:
    """All SEARCH/REPLACE blocks in `text` (markers of 5 to 9 characters accepted; a final
    block without its REPLACE marker is kept when it has the ======= separator)."""
    text = text.replace("\r\n", "\n")
    blocks = [DiffBlock(m.group("search"), m.group("replace")) for m in BLOCK.finditer(text)]
    tail = text[max((m.end() for m in BLOCK.finditer(text)), default=0) :]
    last = OPEN_BLOCK.search(tail)
    if last is not None:
        replace = re.split(r"\n```|\n<{5,9}", last.group("replace"))[0]
        blocks.append(DiffBlock(last.group("search"), replace.rstrip("\n")))
    return blocks


def _loose(line: str) -> str:
    return line.strip()


def apply_blocks(source: str, blocks: list[DiffBlock]) -> str:
    """Apply blocks in order. Each SEARCH text must occur in the current source: exactly,
    or line by line ignoring leading/trailing whitespace (the replacement is then
    re-indented by the difference of the first lines' indentation).

    Raises:
        DiffError: no blocks, an empty SEARCH, or a SEARCH text that is not found.
    """
    if not blocks:
        raise DiffError("no SEARCH/REPLACE block in the completion")
    for number, block in enumerate(blocks, start=1):
        if not block.search.strip():
            raise DiffError(f"block {number}: empty SEARCH text")
        if block.search in source:
            source = source.replace(block.search, block.replace, 1)
            continue
        source_lines = source.split("\n")
        search_lines = [s for s in block.search.split("\n")]
        while search_lines and not search_lines[-1].strip():
            search_lines.pop()
        while search_lines and not search_lines[0].strip():
            search_lines.pop(0)
        wanted = [_loose(s) for s in search_lines]
        found = -1
        for start in range(len(source_lines) - len(wanted) + 1):
            if [_loose(s) for s in source_lines[start : start + len(wanted)]] == wanted:
                found = start
                break
        if found < 0:
            shown = block.search.strip().splitlines()[0][:80] if block.search.strip() else ""
            raise DiffError(
                f"block {number}: SEARCH text not found in the parent (first line: {shown!r})",
                status="search_not_found",
            )
        have = source_lines[found]
        indent = have[: len(have) - len(have.lstrip())]
        given = search_lines[0][: len(search_lines[0]) - len(search_lines[0].lstrip())]
        replacement = []
        for line in block.replace.split("\n"):
            if line.startswith(given):
                line = indent + line[len(given) :]
            replacement.append(line)
        source_lines[found : found + len(wanted)] = replacement
        source = "\n".join(source_lines)
    return source
