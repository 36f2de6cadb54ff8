"""The poisoning experiment: each attack hurts without its defence and the defence
removes the harm (small sizes, real sandbox for the puzzles, real ranking sessions on
SQLite for the raters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openended.apps.experiments.poison import PoisonSettings, buggy_verifier, run_poison
from openended.apps.experiments.puzzle_world import VACUOUS, PuzzleWorld


def _final(rows: list[dict], attack: str, fraction: float, defence: bool, metric: str) -> float:
    chosen = [
        r
        for r in rows
        if r["attack"] == attack and r["fraction"] == fraction and r["defence"] == defence
    ]
    last = max(r["generation"] for r in chosen)
    values = [r[metric] for r in chosen if r["generation"] == last]
    return sum(values) / len(values)


@pytest.mark.slow  # several seconds of simulation
def test_wrong_answers_spread_without_verification_only(tmp_path: Path) -> None:
    settings = PoisonSettings(
        attacks=("wrong-answers", "initial-errors"),
        fractions=(0.0, 0.3),
        seeds=2,
        generations=3,
        real_lines=400,
        prompts=40,
    )
    rows = run_poison(settings, tmp_path, progress=lambda _: None)
    for attack in ("wrong-answers", "initial-errors"):
        clean = _final(rows, attack, 0.0, False, "attack_rate")
        attacked = _final(rows, attack, 0.3, False, "attack_rate")
        defended = _final(rows, attack, 0.3, True, "attack_rate")
        assert attacked > clean + 0.1, attack
        assert defended < attacked, attack
        assert _final(rows, attack, 0.3, True, "pass@1") > _final(
            rows, attack, 0.3, False, "pass@1"
        )
    # verified loop: no poison enters after generation 0
    assert _final(rows, "wrong-answers", 0.3, True, "wrong_in_data") == 0.0
    assert buggy_verifier("2 + 3 = 6") and not buggy_verifier("2 + 3 = 1")


def test_the_vacuity_check_keeps_vacuous_puzzles_out(tmp_path: Path) -> None:
    world = PuzzleWorld()
    from openended.domains.puzzles.verify import PuzzleVerifier

    with PuzzleVerifier() as verifier:
        verdicts = world.check(
            [
                VACUOUS[0],
                "def sat ( x : int ) : return x + 3 == 10",
                "def sat ( x : int ) : return",
            ],
            verifier,
        )
    assert verdicts == [(True, True), (True, False), (False, False)]
    settings = PoisonSettings(
        attacks=("vacuous-puzzles",),
        fractions=(0.3,),
        seeds=1,
        generations=2,
        real_puzzles=60,
    )
    rows = run_poison(settings, tmp_path, progress=lambda _: None)
    assert _final(rows, "vacuous-puzzles", 0.3, True, "vacuous_in_data") == 0.0
    assert _final(rows, "vacuous-puzzles", 0.3, False, "vacuous_in_data") > 0.15
    assert _final(rows, "vacuous-puzzles", 0.3, False, "vacuous_rate") > _final(
        rows, "vacuous-puzzles", 0.3, True, "vacuous_rate"
    )


@pytest.mark.slow  # 40 s of simulated raters
def test_rater_qc_flags_colluding_flippers_and_restores_the_labels(tmp_path: Path) -> None:
    """Two flippers of ten judge the same bottom-bracket pairs that no honest rater
    sees; QC must still flag both (it counts only pairs most other raters judged; before,
    neither was flagged in this session)."""
    settings = PoisonSettings(
        attacks=("flipped-raters",),
        fractions=(0.2,),
        seeds=1,
        raters=10,
        rank_prompts=3,
        candidates=16,
    )
    rows = run_poison(settings, tmp_path, progress=lambda _: None)
    off = next(r for r in rows if not r["defence"])
    on = next(r for r in rows if r["defence"])
    assert on["flipped_raters"] == 2
    assert on["adversaries_flagged"] == 1.0
    assert on["label_accuracy"] > off["label_accuracy"]
    assert on["kept_pairs"] < 1.0 == off["kept_pairs"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"fractions must be in \[0, 1\)"):
        PoisonSettings(fractions=(0.1, 1.0))
    with pytest.raises(ValueError, match="attacks must be among"):
        PoisonSettings(attacks=("typo",))
    with pytest.raises(ValueError, match=r"0\.04 of 10 raters is 0 flipped raters"):
        PoisonSettings(attacks=("flipped-raters",), fractions=(0.04,))
