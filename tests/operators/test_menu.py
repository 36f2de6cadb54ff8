"""The menu operator: a grammar writes candidate terms, the model picks one by its letter."""

import ast
from collections import Counter
from pathlib import Path

import pytest

import openended
from openended.archive import Elite
from openended.domains.program.domain import ProgramConfig, ProgramDomain
from openended.lm.scripted import ScriptedLM
from openended.operators import SamplingSettings, load_template
from openended.operators.menu import (
    OPTIONS,
    TermMenu,
    TextTermMenu,
    UniformTermMenu,
    chosen_label,
    menu_for,
    named_option,
    term_grammar,
)
from openended.operators.term import TermNotApplicableError, returned_value
from openended.store import RunStore

from .conftest import PRIORITY, menu_run_config


def test_the_grammar_writes_distinct_new_terms_of_the_functions_variables() -> None:
    returned = returned_value(PRIORITY)
    assert returned is not None
    terms = term_grammar(returned)
    assert len(terms) == len(set(terms)) > 50
    assert not set(terms) & set(returned.terms)  # nothing the function has already
    for term in terms:
        read = {n.id for n in ast.walk(ast.parse(term, mode="eval")) if isinstance(n, ast.Name)}
        assert read & {"item", "bins", "room"}, term
    assert "np.exp(-room)" in terms and "item * bins" in terms
    assert "bins * (room ** 2)" in terms or "bins * room ** 2" in terms  # a variable x a term


def test_a_menu_is_reproducible_from_its_seed_and_differs_across_seeds() -> None:
    first = menu_for(PRIORITY, seed=7)
    assert len(first) == OPTIONS and menu_for(PRIORITY, seed=7) == first
    assert len({tuple(menu_for(PRIORITY, seed=s)) for s in range(10)}) == 10
    assert menu_for("def f(x):\n    return x, x\n", seed=7) == []


def test_the_reply_names_an_option_by_its_letter() -> None:
    assert chosen_label(" C.", 8) == 2
    assert chosen_label(" B, where", 8) == 1
    assert chosen_label("option D and C", 8) == 3
    assert chosen_label(" 4,", 8) is None
    assert chosen_label(" Z", 8) is None and chosen_label(" H", 4) is None


def _operator(domain: ProgramDomain, kind: type[TermMenu] = TermMenu) -> TermMenu:
    return kind(
        template=load_template(kind.template_name or kind.name, override=None, domain_dir=None),
        domain=domain,
        sampling=SamplingSettings(max_tokens=3, stop=("\n",)),
    )


PARENT = Elite(candidate_id=1, genome=PRIORITY, fitness=-3.0, descriptors=(0.0, 0.0))


def test_the_menu_is_the_default_where_the_function_is_a_weighted_sum(domain) -> None:
    assert domain.default_operator_weights == {"menu": 1.0}


def test_the_prompt_letters_the_menu_and_the_child_adds_the_chosen_term(domain) -> None:
    operator = _operator(domain)
    request = operator.request([PARENT], seed=11)
    options = menu_for(PRIORITY, seed=11)
    prompt = request.prompt or ""
    assert prompt.endswith("most improves priority is option")
    assert f"#   C. {options[2]}\n" in prompt and "room + room ** 2 + item * room" in prompt
    parsed = operator.parse_reply(" C.", [PARENT], request)
    assert parsed.genome is not None
    assert parsed.genome.rstrip().endswith(f"+ PARAMS[2] * ({options[2]})")
    failed = operator.parse_reply(" 4,", [PARENT], request)
    assert failed.genome is None and "names no option" in (failed.error or "")


def test_the_text_reply_names_an_option_by_copying_it() -> None:
    options = ["np.minimum(size * room, small_gap)", "room ** 2", "item / (np.abs(bins) + 1e-6)"]
    assert named_option(" np.minimum(size*room,  small_gap)\n# more", options) == 0
    assert named_option(" room**2,", options) == 1
    assert named_option(" item / (np.abs(bins) + 1e-06)", options) == 2  # the same float
    assert named_option(" C.", options) == 2 and named_option(" B", options) == 1
    assert named_option(" room ** 3", options) is None  # a term, but not an option
    assert named_option(" the best is", options) is None and named_option("", options) is None


def test_the_text_menu_asks_for_the_term_and_adds_the_copied_one(domain) -> None:
    operator = _operator(domain, TextTermMenu)
    request = operator.request([PARENT], seed=11)
    options = menu_for(PRIORITY, seed=11)
    prompt = request.prompt or ""
    assert prompt.endswith("copied from the options:\nnew_term =")
    assert f"#   C. {options[2]}\n" in prompt  # the same menu as the letter operator's
    parsed = operator.parse_reply(f" {options[4]}", [PARENT], request)
    assert parsed.genome is not None
    assert parsed.genome.rstrip().endswith(f"+ PARAMS[2] * ({options[4]})")
    failed = operator.parse_reply(" nothing here", [PARENT], request)
    assert failed.genome is None and "names no option" in (failed.error or "")


def test_the_uniform_ablation_ignores_the_reply_and_draws_every_option(domain) -> None:
    operator = _operator(domain, UniformTermMenu)
    picks: Counter[str] = Counter()
    for seed in range(80):
        request = operator.request([PARENT], seed=seed)
        child = operator.parse_reply("anything", [PARENT], request).genome
        assert child == operator.parse_reply(" A", [PARENT], request).genome  # reply ignored
        assert child is not None
        options = menu_for(PRIORITY, seed)
        picks[next(i for i, o in enumerate(options) if child.rstrip().endswith(f"({o})"))] += 1
    assert set(picks) == set(range(OPTIONS)) and max(picks.values()) < 24


def test_the_menu_refuses_a_region_it_cannot_extend(tmp_path: Path) -> None:
    (tmp_path / "initial.py").write_text("def f(x):\n    return x, x\n")
    (tmp_path / "evaluator.py").write_text("def evaluate(path):\n    return {'score': 1.0}\n")
    domain = ProgramDomain(
        ProgramConfig(
            initial=tmp_path / "initial.py", evaluator=tmp_path / "evaluator.py", function="f"
        )
    )
    try:
        with pytest.raises(TermNotApplicableError, match=r"operators\.menu\.weight = 0"):
            _operator(domain)
    finally:
        domain.close()


@pytest.mark.parametrize("name", ["menu", "menu_uniform", "menu_text"])
def test_a_run_with_the_menu_makes_children_with_fitted_weights(tmp_path: Path, name: str) -> None:
    """The engine hands each reply its request (the menu depends on the request's seed)."""
    config = menu_run_config(tmp_path, name)
    result = openended.run(config, lm=ScriptedLM([" B.", " E"]), run_dir=tmp_path / "run")
    with RunStore(result.run_dir) as store:
        children = [r for r in store.candidates() if r.parents]
    assert len(children) == 8 and all(r.operator == name for r in children)
    assert all(r.status == "valid" for r in children), Counter(r.status for r in children)
    assert all("PARAMS[2] * (" in (r.genome or "") for r in children)
    assert any(r.details["refine"]["gain"] > 0 for r in children)
