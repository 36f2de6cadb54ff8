"""Reading (sat, sol) pairs from completions."""

from __future__ import annotations

import pytest

from openended.domains.puzzles.puzzle_source import PuzzleParseError, parse_puzzle, split_solution


def test_a_continuation_of_a_numbered_header() -> None:
    source = parse_puzzle(
        "x: int, n=4):\n    return x * n == 12\n\ndef sol5(n=4):\n    return 12 // n\n"
    )
    assert source.ans_type == "int"
    assert source.sat.startswith("def sat(x: int, n=4):")
    assert source.sol.startswith("def sol(n=4):")


def test_a_fenced_block_and_trailing_prose() -> None:
    text = (
        "```python\ndef sat7(s: str):\n    return s == 'ab'\n\ndef sol7():\n    return 'ab'\n"
        "```\nThis puzzle asks for a string."
    )
    assert parse_puzzle(text).ans_type == "str"
    cut_off = (
        "def sat(li: List[int]):\n    return len(li) == 2\n\ndef sol():\n    return [1, 2]"
        "\n\nIn this"
    )
    assert parse_puzzle(cut_off).ans_type == "List[int]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x: int):\n    return x == 3\n", "no function sol"),
        ("def sat(x):\n    return x == 3\n\ndef sol():\n    return 3", "no type annotation"),
        (
            "def sat(x: int, n):\n    return x == n\n\ndef sol(n=1):\n    return n",
            "without defaults",
        ),
        (
            "def sat(x: int):\n    return x == 3\n\ndef sol(n):\n    return n",
            r"sol\(\.\.\.\) has arguments",
        ),
        ("def sol():\n    return 3\n", "no function sat"),
        ("x: int)\n    return", "syntax error"),
    ],
)
def test_bad_pairs_say_why(text: str, message: str) -> None:
    with pytest.raises(PuzzleParseError, match=message):
        parse_puzzle(text)


def test_split_solution_keeps_the_docstring_apart() -> None:
    header, doc, body = split_solution('def sol(a=1):\n    """Doc."""\n    x = a\n    return x')
    assert header == "def sol(a=1):"
    assert doc.strip() == '"""Doc."""'
    assert body == "    x = a\n    return x"


def test_fingerprint_ignores_names_and_formatting_but_not_constants() -> None:
    a = parse_puzzle("def sat(x: int):\n    return x*3 == 12\n\ndef sol():\n    return 4")
    b = parse_puzzle(
        "def sat(y: int):\n    return y * 3 == 12  # same\n\ndef sol():\n    return 2 + 2"
    )
    c = parse_puzzle("def sat(x: int):\n    return x*3 == 15\n\ndef sol():\n    return 5")
    assert a.fingerprint == b.fingerprint != c.fingerprint
