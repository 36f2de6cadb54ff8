"""Program evolution: regions, diffs, FunSearch prompts, and whole runs with a scripted LM
(real sandbox, real evaluator, real store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import openended
from openended.archive import Elite
from openended.config import ConfigError, load_config
from openended.domains.program.diff import DiffError, apply_blocks, parse_blocks
from openended.domains.program.domain import DomainError, normalised_ast
from openended.domains.program.region import RegionError, find_region
from openended.engine import build_operators
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM
from openended.operators.program import trim_function_body
from openended.sandbox import bwrap_path
from openended.store import RunStore

INITIAL = '''\
"""Toy task: make value() large."""

# EVOLVE-BLOCK-START
def value():
    """Return a number; bigger is better (at most 10 counts)."""
    x = 1
    return x
# EVOLVE-BLOCK-END
'''

EVALUATOR = '''\
"""Score: the number value() returns, capped at 10."""
import importlib.util


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_stage1(path):
    v = _load(path).value()
    return {"score": float(v), "passed": isinstance(v, (int, float)) and v >= 0}


def evaluate(path):
    v = float(_load(path).value())
    return {"score": min(v, 10.0), "raw": v}
'''


def diff(old: str, new: str) -> str:
    """A completion as the model writes it after the prompt's SEARCH marker."""
    return f"\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def scripted(request: GenerationRequest, sample: int) -> str:
    """Diffs that raise x by the seed's residue; some fail in known ways."""
    k = (request.seed or 0) % 7
    if k == 0:
        return diff("    x = 99", "    x = 100")  # SEARCH text not in the parent
    if k == 1:
        return "I would change the code but here is no diff."
    if k == 2:
        return diff("    x = 1", "    x = -5")  # rejected by the cascade (stage 1)
    if k == 3:
        return diff("    return x", "    return x +")  # syntax error
    return diff("    x = 1", f"    x = {k}")  # valid; k = 4, 5, 6 (repeats: duplicates)


@pytest.fixture
def task(tmp_path: Path) -> dict:
    (tmp_path / "initial.py").write_text(INITIAL)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    return {
        "runs_dir": str(tmp_path / "runs"),
        "name": "evo",
        "search": {"batch_size": 6},
        "budget": {"max_evaluations": 0, "max_lm_calls": 4, "max_seconds": 0},
        "operators": {"rewrite": {"weight": 0}, "funsearch": {"weight": 0}},
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(tmp_path / "evaluator.py"),
            "sandbox": {"wall_seconds": 5, "cpu_seconds": 5, "memory_mb": 512},
        },
    }


def rows(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [
            (c.id, c.operator, c.parents, c.genome, c.status, c.error, c.island)
            for c in store.candidates()
        ]


# -- regions and diffs ---------------------------------------------------------------------


def test_evolve_block_region_and_function_region() -> None:
    region = find_region(INITIAL)
    assert region.initial.startswith("def value():") and region.function == "value"
    assert region.header.endswith('bigger is better (at most 10 counts)."""')
    assert region.assemble(region.initial) == INITIAL
    source = "import math\n\ndef helper():\n    return 1\n\ndef target(a):\n    return a\n"
    named = find_region(source, "target")
    assert named.initial == "def target(a):\n    return a\n" and named.header == "def target(a):"
    assert named.assemble("def target(a):\n    return 2 * a\n").endswith("return 2 * a\n")
    with pytest.raises(RegionError, match=r"no top-level function 'missing'.*helper, target"):
        find_region(source, "missing")
    with pytest.raises(RegionError, match="EVOLVE-BLOCK-START"):
        find_region(source)
    with pytest.raises(RegionError, match="syntax error"):
        find_region("def (:\n")


def test_diff_parsing_and_application() -> None:
    source = "def f(x):\n    y = x + 1\n    return y\n"
    text = (
        "<<<<<<< SEARCH\n    y = x + 1\n=======\n    y = x + 2\n>>>>>>> REPLACE\n"
        "<<<<<<<< SEARCH\n    return y\n========\n    return y * 2\n>>>>>>>> REPLACE"
    )
    assert (
        apply_blocks(source, parse_blocks(text)) == "def f(x):\n    y = x + 2\n    return y * 2\n"
    )
    # indentation lost by the model is restored; a cut-off last block is still applied
    loose = "<<<<<<< SEARCH\ny = x + 1\n=======\ny = x * 3\n"
    assert apply_blocks(source, parse_blocks(loose)) == "def f(x):\n    y = x * 3\n    return y\n"
    with pytest.raises(DiffError) as missing:
        apply_blocks(
            source, parse_blocks("<<<<<<< SEARCH\n  z = 0\n=======\nz = 1\n>>>>>>> REPLACE")
        )
    assert missing.value.status == "search_not_found" and "'z = 0'" in str(missing.value)
    with pytest.raises(DiffError) as none:
        apply_blocks(source, parse_blocks("just prose"))
    assert none.value.status == "parse_error"


def test_trim_function_body_like_funsearch() -> None:
    header = 'def f(x):\n    """Doc."""'
    body = trim_function_body(header, "\n    y = x\n    return y\n\nprint('outside')\n")
    assert body == "\n    y = x\n    return y\n"
    assert trim_function_body(header, "\n    return (x +\n") is None or True
    cut = trim_function_body(header, "\n    y = x\n    return (y +")
    assert cut == "\n    y = x\n"


def test_normalised_ast_ignores_names_comments_and_docstrings() -> None:
    a = "def f(x):\n    '''Doc.'''\n    total = x + 1  # note\n    return total\n"
    b = "def f(value):\n    result = value + 1\n    return result\n"
    c = "def f(x):\n    return x + 2\n"
    assert normalised_ast(a) == normalised_ast(b) != normalised_ast(c)


def test_funsearch_prompt(task: dict) -> None:
    config = load_config({**task, "operators": {}})
    from openended.api import build_domain

    domain = build_domain(config)
    try:
        ops = {op.name: op for op, _ in build_operators(config, domain)}
        assert set(ops) == {"diff", "rewrite", "funsearch"}
        parents = [
            Elite(1, "def value():\n    return 3\n", 3.0, (1.0, 0.0)),
            Elite(2, "def value():\n    return 1\n", 1.0, (1.0, 0.0)),
        ]
        ordered = ops["funsearch"].select_parents(parents, np.random.default_rng(0))
        assert [p.fitness for p in ordered] == [1.0, 3.0]
        prompt = ops["funsearch"].request(ordered, seed=0).prompt
        assert prompt.index("def value_v0():\n    return 1") < prompt.index(
            "def value_v1():\n    return 3"
        )
        assert prompt.endswith(
            'def value_v2():\n    """Return a number; bigger is better (at most 10 counts)."""'
        )
        parsed = ops["funsearch"].parse("\n    return 7\n\ndef other():\n    pass", ordered)
        assert parsed.genome is not None and "return 7" in parsed.genome
        assert parsed.genome.startswith("def value():")
        diff_prompt = ops["diff"].request([ordered[0]], seed=0).prompt
        assert diff_prompt.endswith("<<<<<<< SEARCH") and "score 1" in diff_prompt
        chosen = ops["rewrite"].select_parents(parents, np.random.default_rng(0))
        assert len(chosen) == 2 and chosen[0].genome != chosen[1].genome
        rewrite = ops["rewrite"].request(chosen, seed=0).prompt
        assert f"# A version already found (score {chosen[1].fitness:g}):" in rewrite
        assert chosen[1].genome.strip() in rewrite and chosen[0].genome.strip() in rewrite
        assert "# An improved version, different from the versions above:" in rewrite
        alone = ops["rewrite"].select_parents(parents[:1], np.random.default_rng(0))
        assert "already found" not in ops["rewrite"].request(alone, seed=0).prompt
        assert "measurements" not in rewrite  # no metrics beyond the score: no line
        measured = Elite(3, parents[0].genome, 3.0, (1.0, 0.0), {"score": 3.0, "raw": 12.5})
        for name in ("diff", "rewrite"):
            prompt = ops[name].request([measured], seed=0).prompt
            assert "# Its evaluator's measurements: raw 12.5\n" in prompt
    finally:
        domain.close()


# -- whole runs -----------------------------------------------------------------------------


def test_evolve_run_records_every_outcome(task: dict) -> None:
    result = openended.run(task, lm=ScriptedLM(scripted))
    stored = rows(result.run_dir)
    statuses = {r[4] for r in stored}
    assert {"valid", "search_not_found", "parse_error", "invalid", "duplicate"} <= statuses
    by_status = {r[4]: r for r in reversed(stored)}
    assert "SEARCH text not found" in by_status["search_not_found"][5]
    assert "no SEARCH/REPLACE block" in " ".join(
        r[5] or "" for r in stored if r[4] == "parse_error"
    )
    assert any("syntax error" in (r[5] or "") for r in stored if r[4] == "parse_error")
    cascade = [r for r in stored if r[4] == "invalid"]
    assert cascade and all("rejected at evaluate_stage1" in r[5] for r in cascade)
    assert "near-duplicate of candidate" in by_status["duplicate"][5]
    assert result.best["fitness"] == 6.0
    assert result.metrics["qd_score"].is_monotonic_increasing
    assert "x = 6" in result.best["genome"]


def test_a_model_that_only_repeats_the_archive_stops_the_search(task: dict) -> None:
    """Near-duplicates are found at evaluation time; a batch of nothing else is fruitless
    too (such a run used to go on until its budget of evaluations, i.e. forever)."""
    task["budget"] = {"max_evaluations": 50, "max_seconds": 0}
    task["search"]["max_fruitless_batches"] = 3
    task["domain"]["refine"] = {"enabled": False}  # whole batches: one evaluation per child
    result = openended.run(task, lm=ScriptedLM([diff("    x = 1", "    x = 1  # same")]))
    assert result.outcome.stopped_by.startswith(
        "no child of 3 batches in a row could be evaluated (last batch: 6 duplicate; "
    )
    stored = rows(result.run_dir)
    assert sum(row[4] == "duplicate" for row in stored) == 3 * 6  # nothing after the stop


@pytest.mark.slow
def test_a_resumed_run_continues_the_fruitless_streak(task: dict) -> None:
    """Stopping rules count batches across sessions: a run resumed after 2 fruitless
    batches stops after the 3rd, as the same run without the break does."""
    task["search"]["max_fruitless_batches"] = 3
    task["domain"]["refine"] = {"enabled": False}
    task["budget"] = {"max_evaluations": 0, "max_lm_calls": 2, "max_seconds": 0}
    repeat = ScriptedLM([diff("    x = 1", "    x = 1  # same")])
    first = openended.run(task, lm=repeat)
    assert first.outcome.stopped_by.startswith("budget: LM calls")
    resumed = openended.resume(first.run_dir, lm=repeat, overrides=["budget.max_lm_calls=10"])
    assert resumed.outcome.stopped_by.startswith("no child of 3 batches in a row")
    assert max(row[0] for row in rows(first.run_dir)) == 1 + 3 * 6  # the seed, 3 batches


def test_the_last_error_of_a_parent_reaches_the_next_prompt(task: dict) -> None:
    task["budget"]["max_lm_calls"] = 8
    lm = ScriptedLM(scripted)
    openended.run(task, lm=lm)
    prompts = [r.prompt for r in lm.requests]
    shown = [p for p in prompts if "The last change to this program failed:" in p]
    assert shown
    assert any(
        k in p
        for p in shown
        for k in (
            "SEARCH text not found",
            "syntax error",
            "rejected at evaluate_stage1",
            "no SEARCH",
        )
    )


def test_islands_isolate_without_migration_and_exchange_with_it(task: dict) -> None:
    def run(interval: int, name: str) -> list[tuple]:
        config = {
            **task,
            "name": name,
            "search": {"batch_size": 6, "islands": 3, "migration_interval": interval},
        }
        config["budget"] = {"max_evaluations": 0, "max_lm_calls": 8, "max_seconds": 0}
        return rows(openended.run(config, lm=ScriptedLM(scripted)).run_dir)

    isolated = run(0, "isolated")
    island_of = {r[0]: r[6] for r in isolated}
    children = [r for r in isolated if r[1] != "seed"]
    assert {r[6] for r in children} == {0, 1, 2}
    assert all(island_of[p] in (None, r[6]) for r in children for p in r[2])

    migrating = run(2, "migrating")
    island_of = {r[0]: r[6] for r in migrating}
    crossings = [
        r for r in migrating if r[1] != "seed" for p in r[2] if island_of[p] not in (None, r[6])
    ]
    assert crossings  # migrants were used as parents in other islands


def test_ring_migration_copies_each_best_to_the_next_island() -> None:
    from openended.domains import Axis
    from openended.engine.population import Population
    from openended.store import CandidateRecord

    population = Population(
        axes=[Axis("a", 0, 10, 10)],
        kind="grid",
        qd_score_offset=0,
        cells=4,
        seed=0,
        islands=3,
        migration_interval=1,
    )
    records = [
        CandidateRecord(
            id=i + 1,
            batch=1,
            operator="x",
            parents=(),
            status="valid",
            genome=g,
            fitness=f,
            descriptors=(d,),
            island=i,
        )
        for i, (g, f, d) in enumerate([("a", 1.0, 1), ("b", 2.0, 5), ("c", 3.0, 8)])
    ]
    population.absorb(1, records)
    genomes = [sorted(e.genome for e in population.elites(i)) for i in range(3)]
    assert genomes == [["a", "c"], ["a", "b"], ["b", "c"]]
    assert population.migrations == 1


def test_resume_of_an_evolve_run(task: dict) -> None:
    first = openended.run(task, lm=ScriptedLM(scripted))
    before = rows(first.run_dir)
    openended.resume(first.run_dir, overrides=["budget.max_lm_calls=7"], lm=ScriptedLM(scripted))
    after = rows(first.run_dir)
    assert after[: len(before)] == before
    assert [r[0] for r in after] == list(range(1, len(after) + 1))
    with RunStore(first.run_dir) as store:
        assert store.get_meta("usage")["lm_calls"] == 7
        sessions = store.get_meta("sandbox")
    # the run records how its candidates were isolated; the resume (same sandbox) adds nothing
    assert len(sessions) == 1 and sessions[0]["from_batch"] == 0
    assert sessions[0]["isolation"] in ("bwrap", "rlimits") and sessions[0]["seccomp"] is True


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not installed")
def test_a_resume_on_another_isolation_is_recorded(task: dict, monkeypatch) -> None:
    """A run started where bubblewrap was missing and resumed where it works says so."""
    from openended.sandbox import pool

    with monkeypatch.context() as patched:
        patched.setattr(pool, "best_isolation", lambda: "rlimits")
        first = openended.run(task, lm=ScriptedLM(scripted))
    openended.resume(first.run_dir, overrides=["budget.max_lm_calls=6"], lm=ScriptedLM(scripted))
    with RunStore(first.run_dir) as store:
        sessions = store.get_meta("sandbox")
        last = store.last_batch()
    assert [s["isolation"] for s in sessions] == ["rlimits", "bwrap"]
    assert 0 < sessions[1]["from_batch"] <= last


def test_a_failing_initial_program_is_a_clear_error(task: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(INITIAL.replace("x = 1", "x = undefined_name"))
    task["domain"]["initial"] = str(broken)
    with pytest.raises(DomainError, match=r"fails its evaluator.*NameError: name 'undefined_name'"):
        openended.run(task, lm=ScriptedLM(scripted))


def test_unknown_domain_key(task: dict) -> None:
    task["domain"]["evaluater"] = "x.py"
    with pytest.raises(ConfigError, match=r"domain\.evaluater: unknown key"):
        load_config(task)


def test_cli_evolve_errors_cleanly_and_the_best_program_is_written(
    task: dict, tmp_path: Path, capsys
) -> None:
    from openended.apps.cli import main
    from openended.apps.evolve import write_best_program

    code = main(
        [
            "evolve",
            task["domain"]["initial"],
            task["domain"]["evaluator"],
            "--runs-dir",
            str(tmp_path / "cli"),
            "--name",
            "x",
            "--model",
            str(tmp_path / "nope"),
        ]
    )
    assert code == 2
    assert "model.name" in capsys.readouterr().err
    result = openended.run(task, lm=ScriptedLM(scripted))
    best = write_best_program(result.run_dir).read_text()
    assert best == INITIAL.replace("x = 1", "x = 6")


def test_every_finish_rewrites_best_program_py(task: dict, capsys) -> None:
    """`openended resume` of an evolve run writes the new best program, not the old one."""
    from openended.apps.cli.common import finish_run
    from openended.apps.evolve import write_best_program

    first = openended.run(task, lm=ScriptedLM(scripted))
    stale = first.run_dir / "best_program.py"
    stale.write_text("# an earlier best\n")
    again = openended.resume(
        first.run_dir, overrides=["budget.max_lm_calls=8"], lm=ScriptedLM(scripted)
    )
    assert finish_run(again, report=False) == 0
    assert stale.read_text() == write_best_program(first.run_dir).read_text()
    assert "x = 6" in stale.read_text()


def test_show_prints_the_prompt_completion_diff_and_error_of_a_candidate(
    task: dict, capsys
) -> None:
    from openended.apps.cli import main

    result = openended.run(task, lm=ScriptedLM(scripted))
    stored = rows(result.run_dir)
    child = next(r for r in stored if r[1] == "diff" and r[4] == "valid")
    failed = next(r for r in stored if r[4] == "invalid")
    capsys.readouterr()
    assert main(["show", str(result.run_dir), str(child[0])]) == 0
    text = capsys.readouterr().out
    x = child[3].split("x = ")[1].split("\n")[0]
    assert f"candidate {child[0]}" in text and "operator diff" in text
    assert "<<<<<<< SEARCH" in text  # the prompt's end
    assert f"=======\n    x = {x}\n>>>>>>> REPLACE" in text  # the completion
    assert f"-    x = 1\n+    x = {x}\n" in text
    assert main(["show", str(result.run_dir), str(failed[0])]) == 0
    assert failed[5] in capsys.readouterr().out  # the whole error, not cut
    assert main(["show", str(result.run_dir), "999"]) == 2
    assert "no candidate 999 (ids run 1.." in capsys.readouterr().err
