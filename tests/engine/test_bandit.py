"""Operator weights that follow measured yield (a bandit over operators)."""

from __future__ import annotations

import openended
from openended.engine.bandit import OperatorBandit
from openended.lm.scripted import ScriptedLM
from openended.store import CandidateRecord, RunStore
from tests.conftest import seeded_script


def child(operator: str, status: str, *, added: bool = False, tokens: int = 50):
    return CandidateRecord(
        batch=1,
        operator=operator,
        parents=(1,),
        status=status,
        added=added,
        prompt_tokens=tokens - 10,
        completion_tokens=10,
    )


def test_weights_start_at_the_configured_ones_and_follow_yield_per_token() -> None:
    bandit = OperatorBandit(["diff", "rewrite"], [0.6, 0.4], floor=0.05, prior=16)
    assert list(bandit.weights()) == [0.6, 0.4]
    bandit.observe([child("diff", "parse_error", tokens=200)] * 100)
    bandit.observe([child("rewrite", "valid", added=i % 2 == 0) for i in range(40)])
    diff, rewrite = bandit.weights()
    assert diff + rewrite == 1.0 or abs(diff + rewrite - 1.0) < 1e-12
    assert 0.05 <= diff < 0.1 and rewrite > 0.9  # nothing valid: down to about the floor
    assert bandit.state()["diff"]["children"] == 100
    assert bandit.state()["rewrite"]["improving"] == 20
    still = OperatorBandit(["diff", "rewrite"], [0.6, 0.4], adapt=False)
    still.observe([child("diff", "parse_error")] * 100)
    assert list(still.weights()) == [0.6, 0.4]


def test_few_children_move_the_weights_little() -> None:
    bandit = OperatorBandit(["lmx", "mutation"], [0.5, 0.5], prior=16)
    bandit.observe([child("lmx", "valid", added=True), child("mutation", "invalid")] * 2)
    lmx, mutation = bandit.weights()
    assert 0.5 < lmx < 0.65 and mutation > 0.35


def lmx_fails(request, sample: int) -> str:
    """LMX prompts get garbage, mutation prompts the seeded script's formulas."""
    if (request.prompt or "").startswith("Formulas for"):
        return " )(garbage"
    return seeded_script(request, sample)


def test_a_search_moves_its_budget_to_the_operator_that_yields(small_config) -> None:
    config = small_config(max_evaluations=0, max_lm_calls=16)
    result = openended.run(config, lm=ScriptedLM(lmx_fails))
    with RunStore(result.run_dir) as store:
        operators = store.get_meta("operators")
        children = [c for c in store.candidates() if c.operator != "seed"]
    assert operators["lmx"]["valid"] == 0 and operators["mutation"]["valid"] > 0
    assert operators["lmx"]["weight"] < 0.25 < 0.75 < operators["mutation"]["weight"]
    early = [c.operator for c in children if c.batch <= 2]
    late = [c.operator for c in children if c.batch >= 12]
    assert late.count("lmx") / len(late) < early.count("lmx") / len(early)
