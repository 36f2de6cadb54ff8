"""Small P3-format puzzles for the tests (written here, not taken from any P3 split)."""

from __future__ import annotations

from typing import Any

PUZZLES: list[dict[str, Any]] = [
    {
        "name": "Double:0",
        "sat": "def sat(x: int, n=21):\n    return 2 * x == n + 1",
        "ans_type": "int",
        "sol_header": "def sol(n=21):",
        "sol_docstring": '    """Find x with 2 * x == n + 1."""',
        "sol_bodies": ["    return (n + 1) // 2"],
    },
    {
        "name": "Double:1",
        "sat": "def sat(x: int, n=41):\n    return 2 * x == n + 1",
        "ans_type": "int",
        "sol_header": "def sol(n=41):",
        "sol_docstring": '    """Find x with 2 * x == n + 1."""',
        "sol_bodies": ["    return (n + 1) // 2"],
    },
    {
        "name": "Palindrome:0",
        "sat": "def sat(s: str):\n    return len(s) == 7 and s == s[::-1] and s[0] == 'q'",
        "ans_type": "str",
        "sol_docstring": '    """Find a palindrome of length 7 starting with q."""',
        "sol_bodies": ["    return 'qabcbaq'"],
    },
    {
        "name": "SumTo:0",
        "sat": "def sat(li: List[int]):\n"
        "    return len(li) == 3 and sum(li) == 30 and len(set(li)) == 3",
        "ans_type": "List[int]",
        "sol_docstring": '    """Three distinct integers that sum to 30."""',
        "sol_bodies": ["    return [9, 10, 11]"],
    },
    {
        "name": "Huge:0",
        "sat": "def sat(x: int):\n    return x == " + "7" * 5000,
        "ans_type": "int",
        "sol_docstring": '    """Find the number."""',
        "sol_bodies": ["    return int('7' * 5000)"],
    },
]
