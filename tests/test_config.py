from pathlib import Path

import pytest

from openended.config import Config, ConfigError, load_config, merge_overrides, parse_override


def test_defaults_are_the_default_search() -> None:
    config = load_config(None)
    assert config.model.name == "embedded"
    assert config.domain_name == "symbolic_regression"
    assert config.budget.max_evaluations and config.budget.max_seconds


def test_round_trips_through_toml(tmp_path: Path) -> None:
    config = load_config(None, ["search.batch_size=4", "name='x'"])
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    again = load_config(path)
    assert again.search.batch_size == 4 and again.name == "x"
    assert again.model_dump() == config.model_dump()


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (
            {"search": {"batch_sise": 3}},
            ["search.batch_sise: unknown key", "allowed keys: batch_size"],
        ),
        ({"colour": 1}, ["colour: unknown key", "allowed keys: name, seed"]),
        ({"archive": {"kind": "hex"}}, ["archive.kind", "'grid' or 'cvt'", "got 'hex'"]),
        ({"model": {"max_batch_size": 0}}, ["model.max_batch_size", "greater than or equal to 1"]),
        ({"operators": {"lmx": {"top_p": 2}}}, ["operators.lmx.top_p", "less than or equal to 1"]),
        (
            {"operators": {"lmx": {"weight": 0}, "mutation": {"weight": 0}}},
            ["at least one operator"],
        ),
        ({"budget": {"max_evaluations": 0, "max_seconds": 0}}, ["set at least one budget"]),
        (
            {"domain": {"name": "symbolic_regression", "targte": "I.12.4"}},
            ["domain.targte: unknown key", "allowed keys: target"],
        ),
        ({"domain": {"name": "symbolic_regression", "points": "many"}}, ["domain.points"]),
        (
            {"domain": {"name": "nope"}},
            ["domain.name", "unknown domain 'nope'", "symbolic_regression"],
        ),
    ],
)
def test_bad_values_are_errors_naming_the_key(data: dict, messages: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    for message in messages:
        assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"seed": "x", "search": {"batch_size": -1}})
    assert "seed" in str(info.value) and "search.batch_size" in str(info.value)


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[search]\nbatch_size = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[budget]\nmax_evals = 3\n")
    with pytest.raises(ConfigError, match=r"(?s)unknown\.toml: .*budget\.max_evals: unknown key"):
        load_config(unknown)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_overrides() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("name=hello world") == (["name"], "hello world")
    assert merge_overrides({"a": {"b": 1}}, ["a.c=true"]) == {"a": {"b": 1, "c": True}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("batch_size")
    with pytest.raises(ConfigError, match="not a table"):
        merge_overrides({"a": 1}, ["a.b=2"])


def test_zero_budget_means_unlimited() -> None:
    config = load_config(None, ["budget.max_seconds=0"])
    assert config.budget.max_seconds is None


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.csv").write_text("x,y\n1,2\n2,5\n3,7\n")
    (tmp_path / "sub" / "run.toml").write_text(
        '[domain]\nname = "symbolic_regression"\ndata = "data.csv"\n'
    )
    config = load_config(tmp_path / "sub" / "run.toml")
    assert Path(config.domain["data"]) == tmp_path / "sub" / "data.csv"


def test_relative_program_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "run.toml").write_text(
        '[domain]\nname = "program"\ninitial = "initial.py"\nevaluator = "evaluator.py"\n'
        'task = "keep this text"\n'
    )
    config = load_config(tmp_path / "task" / "run.toml")
    assert Path(config.domain["initial"]) == tmp_path / "task" / "initial.py"
    assert Path(config.domain["evaluator"]) == tmp_path / "task" / "evaluator.py"
    assert config.domain["task"] == "keep this text"


def test_config_object_is_accepted() -> None:
    assert load_config(Config(seed=5)).seed == 5


def test_the_readme_config_reference_is_valid_and_shows_the_defaults() -> None:
    import tomllib

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("Every key with its default", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    documented, default = load_config(tomllib.loads(block)), Config()
    assert documented.model_dump(exclude={"domain"}) == default.model_dump(exclude={"domain"})
    assert documented.domain_options() == default.domain_options()
