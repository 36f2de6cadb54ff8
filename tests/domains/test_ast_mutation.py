"""Genetic programming's structural mutation, the model-free baseline of program search."""

from __future__ import annotations

import ast
from collections import Counter

import numpy as np

from openended.domains.program.ast_mutation import EDITS, random_edit

CODE = '''\
def priority(item, bins):
    """Docstring kept."""
    PARAMS = [0.5, 2]
    room = bins - item
    if room.min() < 3:
        room = room * PARAMS[0]
    return -room + PARAMS[1] * item
'''


def test_every_edit_kind_yields_parseable_changed_code_and_keeps_the_docstring() -> None:
    rng = np.random.default_rng(0)
    kinds: Counter = Counter()
    for _ in range(300):
        edited = random_edit(CODE, rng)
        assert edited is not None
        text, kind = edited
        kinds[kind] += 1
        tree = ast.parse(text)
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef) and function.name == "priority"
        assert ast.get_docstring(function) == "Docstring kept."
        assert ast.dump(tree) != ast.dump(ast.parse(CODE))
        assert isinstance(function.body[-1], ast.Return)  # the last return is never deleted
    assert set(kinds) == set(EDITS)


def test_edits_reproduce_from_the_seed_and_give_up_on_what_does_not_parse() -> None:
    first = [random_edit(CODE, np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert random_edit("def f(:\n", np.random.default_rng(0)) is None
    assert random_edit("", np.random.default_rng(0)) is None  # nothing to edit
