"""The term operator: the model writes one expression, the child adds it with a new weight."""

import ast
from pathlib import Path

import pytest

from openended.archive import Elite
from openended.domains.program.domain import ProgramConfig, ProgramDomain
from openended.operators import SamplingSettings, load_template
from openended.operators.term import (
    TermAddition,
    TermNotApplicableError,
    add_term,
    applies_to,
    parse_term,
    returned_value,
)

from .conftest import PRIORITY


def test_the_returned_value_its_terms_and_the_functions_variables_are_found() -> None:
    returned = returned_value(PRIORITY)
    assert returned is not None
    assert PRIORITY[returned.start : returned.end] == returned.text
    assert returned.text.startswith("-room + PARAMS[0]")
    assert returned.terms == ("room", "room ** 2", "item * room")
    assert returned.names == ("item", "bins", "room")
    assert returned.parameters == 2


def test_the_returned_span_follows_pythons_line_breaks_not_str_splitlines() -> None:
    code = PRIORITY.replace("    room = bins - item\n", "    room = bins - item  # \x0c\u2028\n")
    returned = returned_value(code)
    assert returned is not None and code[returned.start : returned.end] == returned.text
    assert returned.text.startswith("-room + PARAMS[0]") and returned.text.endswith("* room")


@pytest.mark.parametrize(
    "code",
    [
        "def f(x):\n    PARAMS = [1.0]\n    return x, x\n",  # a tuple
        "def f(x):\n    return x * 2\n",  # no PARAMS
        "def f(x):\n    PARAMS = [1.0]\n    if x:\n        return x\n",  # no final return
        "x = 1\n",  # not a function
    ],
)
def test_regions_without_one_returned_value_and_params_do_not_apply(code: str) -> None:
    assert returned_value(code) is None


def test_a_term_is_one_new_expression_of_the_functions_variables() -> None:
    names, terms = ("item", "room"), ("room", "item * room")
    assert parse_term(" np.exp(-room)  # decays\nmore", names, terms) == ("np.exp(-room)", None)
    assert parse_term("item ** 2,", names, terms)[0] == "item ** 2"
    assert parse_term("PARAMS[3] * item * item", names, terms)[0] == "item * item"
    for text, why in [
        ("", "empty"),
        ("1.5", "none of the function's variables"),
        ("np.zeros(3)", "none of the function's variables"),
        ("foo(room)", "undefined names foo"),
        ("room +", "not a Python expression"),
        ("room, item", "tuple"),
        ("PARAMS[0] * item * room", "already"),
        ("PARAMS[1]", "none of the function's variables"),
    ]:
        term, problem = parse_term(text, names, terms)
        assert term is None and why in (problem or ""), (text, problem)


def test_the_child_is_the_parent_plus_a_weighted_term_with_the_next_parameter() -> None:
    returned = returned_value(PRIORITY)
    assert returned is not None
    child = add_term(PRIORITY, returned, "np.exp(-room)")
    assert child.endswith(
        "return -room + PARAMS[0] * room**2 + PARAMS[1] * item * room"
        " + PARAMS[2] * (np.exp(-room))\n"
    )
    loose = "def f(x):\n    PARAMS = [1.0]\n    return x if x > 0 else -x\n"
    child = add_term(loose, returned_value(loose), "x ** 2")  # type: ignore[arg-type]
    assert "return (x if x > 0 else -x) + PARAMS[1] * (x ** 2)" in child
    ast.parse(child)


def _operator(domain: ProgramDomain) -> TermAddition:
    return TermAddition(
        template=load_template("term", override=None, domain_dir=None),
        domain=domain,
        sampling=SamplingSettings(max_tokens=48, stop=("\n",)),
    )


def test_the_prompt_lists_the_terms_and_ends_where_the_model_writes_one(domain) -> None:
    assert applies_to(domain) and "term" not in domain.default_operator_weights  # opt-in
    parent = Elite(candidate_id=1, genome=PRIORITY, fitness=-3.0, descriptors=(0.0, 0.0))
    operator = _operator(domain)
    prompt = operator.request([parent], seed=0).prompt or ""
    assert prompt.endswith("terms = [\n    room,\n    room ** 2,\n    item * room,\n   ")
    assert "priority returns" in prompt and "item, bins, room:" in prompt
    parsed = operator.parse(" np.sqrt(room)\n", [parent])
    assert parsed.genome is not None and "PARAMS[2] * (np.sqrt(room))" in parsed.genome
    assert operator.parse(" room ** 2", [parent]).status == "parse_error"


def test_the_child_evaluates_as_its_parent_before_fitting_and_the_weight_is_fitted(
    domain,
) -> None:
    import asyncio

    returned = returned_value(PRIORITY)
    assert returned is not None
    child = add_term(PRIORITY, returned, "room * room * room")
    (evaluation,) = asyncio.run(domain.evaluate([child]))
    refine = evaluation.details["refine"]
    assert refine["proposed_values"] == [0.5, 0.0, 0.0]  # the new weight starts at zero
    assert evaluation.valid and refine["gain"] > 0  # the sum grows with every weight
    assert evaluation.genome is not None and "PARAMS[2]" in evaluation.genome


def test_the_operator_refuses_a_region_it_cannot_extend(tmp_path: Path) -> None:
    (tmp_path / "initial.py").write_text("def f(x):\n    return x, x\n")
    (tmp_path / "evaluator.py").write_text("def evaluate(path):\n    return {'score': 1.0}\n")
    domain = ProgramDomain(
        ProgramConfig(
            initial=tmp_path / "initial.py", evaluator=tmp_path / "evaluator.py", function="f"
        )
    )
    try:
        with pytest.raises(TermNotApplicableError, match=r"operators\.term\.weight = 0"):
            _operator(domain)
        assert not applies_to(domain)
    finally:
        domain.close()


def test_parents_are_drawn_among_the_elites_that_can_take_a_term(domain) -> None:
    import numpy as np

    rewritten = "def priority(item, bins):\n    return -(bins - item)\n"
    elites = [
        Elite(candidate_id=i, genome=g, fitness=0.0, descriptors=(0.0, 0.0))
        for i, g in enumerate([rewritten, PRIORITY, rewritten])
    ]
    rng = np.random.default_rng(0)
    picks = {_operator(domain).select_parents(elites, rng)[0].candidate_id for _ in range(20)}
    assert picks == {1}
