from pathlib import Path

import numpy as np
import pytest

from openended.archive import Elite
from openended.config import load_config
from openended.domains.symbolic_regression import SymbolicRegressionConfig, SymbolicRegressionDomain
from openended.engine import build_operators
from openended.operators import TemplateError, load_template

ELITES = [
    Elite(candidate_id=i, genome=g, fitness=f, descriptors=(1.0, 0.0), metrics={"nmse": -f})
    for i, (g, f) in enumerate([("m", -3.0), ("m*v", -1.0), ("v**2", -2.0), ("u", -4.0)], 1)
]


def operators(**overrides: object) -> dict:
    config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    domain = SymbolicRegressionDomain(SymbolicRegressionConfig())
    return {op.name: op for op, _ in build_operators(config, domain)}


def test_lmx_prompt_lists_parents_worst_to_best_and_ends_ready_to_complete() -> None:
    lmx = operators()["lmx"]
    parents = lmx.select_parents(ELITES, np.random.default_rng(0))
    assert len({p.candidate_id for p in parents}) == 4
    assert [p.fitness for p in parents] == sorted(p.fitness for p in parents)
    request = lmx.request(parents, seed=7)
    prompt = request.prompt
    assert prompt.endswith("y =")
    assert prompt.index("y = u\n") < prompt.index("y = m*v\n")
    assert "m, v, u, w" in prompt
    assert request.stop == ("\n",) and request.seed == 7


def test_lmx_with_fewer_elites_than_parents() -> None:
    lmx = operators()["lmx"]
    assert len(lmx.select_parents(ELITES[:2], np.random.default_rng(0))) == 2


def test_mutation_shows_the_parent_and_its_error() -> None:
    mutation = operators()["mutation"]
    (parent,) = mutation.select_parents(ELITES, np.random.default_rng(1))
    prompt = mutation.request([parent], seed=1).prompt
    assert f"= {parent.genome}\n" in prompt
    assert f"{-parent.fitness:.3g}" in prompt


def test_zero_weight_operator_is_left_out() -> None:
    assert set(operators(**{"operators.lmx.weight": 0})) == {"mutation"}


def test_config_template_overrides_the_domain(tmp_path: Path) -> None:
    path = tmp_path / "mine.jinja"
    path.write_text("Custom {{ parents | length }} {{ domain.target }} =")
    lmx = operators(**{"operators.lmx.template": f"'{path}'"})["lmx"]
    assert lmx.request(ELITES[:3], seed=0).prompt == "Custom 3 y ="


def test_template_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        load_template("lmx", override=tmp_path / "missing.jinja", domain_dir=None)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for p in parents %}")
    with pytest.raises(TemplateError, match=r"broken\.jinja: line 1"):
        load_template("lmx", override=broken, domain_dir=None)
    undefined = tmp_path / "undefined.jinja"
    undefined.write_text("{{ domain.nothing_here }}")
    lmx = operators(**{"operators.lmx.template": f"'{undefined}'"})["lmx"]
    with pytest.raises(TemplateError, match=r"undefined\.jinja: cannot render"):
        lmx.request(ELITES, seed=0)


def test_generic_templates_exist_for_domains_without_their_own() -> None:
    for name in ("lmx", "mutation"):
        template = load_template(name, override=None, domain_dir=None)
        text = template.render(domain={"description": "Haiku"}, parents=ELITES, parent=ELITES[0])
        assert "Haiku" in text and "\nm\n" in text
        if name == "lmx":
            assert all(f"\n{e.genome}\n" in text for e in ELITES)


def test_operators_come_from_one_registry_in_its_order() -> None:
    import tomllib

    from openended.config import Config
    from openended.operators import UnknownOperatorError, available_operators, operator_class

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    declared = sorted(pyproject["project"]["entry-points"]["openended.operators"])
    assert available_operators() == declared
    assert [name for name, _ in Config().operators.items()] == declared
    assert all(operator_class(name).name == name for name in declared)
    with pytest.raises(
        UnknownOperatorError, match="unknown operator 'swap'; registered: contrast, diff"
    ):
        operator_class("swap")


def test_a_search_draws_among_the_domains_operators_in_its_order_then_by_name() -> None:
    from openended.engine.search import draw_order

    program = {"diff": 0.6, "rewrite": 0.15, "funsearch": 0.25}
    names = ["contrast", "diff", "evol", "funsearch", "lmx", "mutation", "rewrite"]
    assert draw_order(program, names) == [
        *("diff", "rewrite", "funsearch"),
        *("contrast", "evol", "lmx", "mutation"),
    ]
    assert draw_order({"mine": 1.0, "lmx": 1.0}, names)[0] == "lmx"  # unregistered: left out


def test_a_domain_default_weight_fills_only_unset_weights() -> None:
    config = load_config(None, ["operators.mutation.weight=2"])
    weights = config.operators.weights({"lmx": 0.5, "mutation": 0.5})
    assert weights["lmx"] == 0.5 and weights["mutation"] == 2.0 and weights["diff"] == 0.0


def test_a_program_operator_on_another_domain_is_a_named_error() -> None:
    from openended.operators import OperatorDomainError

    with pytest.raises(OperatorDomainError, match="operator 'diff' edits programs"):
        operators(**{"operators.diff.weight": 1})
