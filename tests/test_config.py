from pathlib import Path

import pytest

from openended.config import Config, ConfigError, load_config, merge_overrides, parse_override


def test_defaults_are_the_default_search() -> None:
    config = load_config(None)
    assert config.model.name == "embedded"
    assert config.domain_name == "symbolic_regression"
    assert config.budget.active() == {"evaluations": 1000}


@pytest.mark.parametrize(
    ("overrides", "active"),
    [
        (["budget.max_evaluations=60"], {"evaluations": 60}),  # no hidden 300 s wall clock
        (["budget.max_lm_calls=2"], {"LM calls": 2}),  # no hidden 1000 evaluations
        (["budget.max_seconds=30", "budget.max_tokens=999"], {"tokens": 999, "seconds": 30}),
        (["budget.max_evaluations=0", "budget.max_lm_calls=10"], {"LM calls": 10}),
    ],
)
def test_a_budget_you_set_is_the_only_one(overrides: list[str], active: dict) -> None:
    assert load_config(None, overrides).budget.active() == active


EVERY_FIELD = {
    "name": "every",
    "seed": 7,
    "runs_dir": "elsewhere",
    "model": {
        "name": "http://127.0.0.1:1/v1",
        "max_batch_size": 3,
        "max_batch_tokens": 999,
        "max_batch_mib": 333,
        "backend": "transformers",
        "compute_type": "float32",
        "threads": 3,
        "top_p_candidates": 64,
        "dtype": "bfloat16",
        "device": "cuda:1",
        "speculative": "off",
        "draft_model": "tiny",
        "model_name": "m",
        "api_key_env": "KEY",
        "endpoint": "chat",
        "max_concurrency": 2,
        "timeout": 9.5,
        "max_retries": 1,
        "cache": True,
        "cache_path": "/tmp/cache.sqlite",
    },
    "search": {
        "batch_size": 5,
        "islands": 3,
        "migration_interval": 4,
        "reject_duplicates": False,
        "max_failed_batches": 2,
        "max_fruitless_batches": 7,
        "adapt_operators": False,
        "operator_floor": 0.1,
    },
    "budget": {
        "max_evaluations": 0,
        "max_lm_calls": 10,
        "max_tokens": 5000,
        "max_seconds": 0,
        "target_score": -0.01,
    },
    "archive": {"kind": "cvt", "cells": 16},
    "operators": {
        name: {
            "weight": 0.5,
            "template": f"/tmp/{name}.jinja",
            "temperature": 0.3,
            "top_p": 0.8,
            "max_tokens": 77,
            "stop": ["\n\n"],
            "parents": 3,
        }
        for name in (
            "lmx",
            "mutation",
            "diff",
            "rewrite",
            "funsearch",
            "term",
            "menu",
            "menu_uniform",
            "menu_text",
            "evol",
            "contrast",
        )
    },
    "executor": {
        "kind": "ray",
        "address": "local",
        "chunk_size": 2,
        "task_cpus": 0.5,
        "max_retries": 1,
        "lm_actors": 0,
        "lm_actor_cpus": 2.0,
    },
    "domain": {"name": "symbolic_regression", "target": "I.12.4", "points": 32},
}


def _keys(model: type, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    keys = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys |= _keys(kind, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _given(data: dict, prefix: str = "") -> set[str]:
    """The dotted keys a config dict sets (the free-form domain table is one key)."""
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict) and name != "domain":
            keys |= _given(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_field_saved_and_reloaded_equals_the_original(tmp_path: Path) -> None:
    """What `resume` reads back is what the run was started with, field for field
    (budget 0 stays 0; no default comes back)."""
    assert _keys(Config) <= _given(EVERY_FIELD)  # the test sets every field there is
    for data in (EVERY_FIELD, {}, {"budget": {"max_seconds": 0, "max_evaluations": 9}}):
        config = load_config(data)
        path = tmp_path / "config.toml"
        path.write_text(config.to_toml())
        assert load_config(path).model_dump() == config.model_dump()
    assert load_config(path).budget.active() == {"evaluations": 9}


def test_no_optional_field_has_another_default() -> None:
    """`to_toml` leaves out None values; that is exact only if None is each such field's
    default."""
    from typing import get_args

    from pydantic import BaseModel

    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind)
            elif type(None) in get_args(kind):
                default = field.get_default(call_default_factory=True)
                assert default is None, f"{model.__name__}.{name} defaults to {default!r}"

    walk(Config)


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
    with pytest.raises(ConfigError, match=r"missing\.toml: no such config"):
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
    assert config.budget.max_seconds == 0 and config.budget.active() == {"evaluations": 1000}


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
