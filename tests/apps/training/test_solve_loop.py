"""Expert iteration on puzzles: only sandbox-verified solutions ever train the model
(scripted models, the real verifier, a recording trainer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openended.apps.training.solve_loop import SolveLoop, SolveLoopSettings
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM
from tests.apps.training.test_search_loop import RecordingTrainer
from tests.domains.puzzles.fixtures import PUZZLES

RIGHT = ("\n    return (n + 1) // 2", "\n    return n // 2 + 1")  # both solve "Double"


def wrong_answers(request: GenerationRequest, sample: int) -> str:
    return "\n    return None"


def partly_right(request: GenerationRequest, sample: int) -> str:
    """Right (two distinct ways) on the Double family, wrong on every other puzzle and
    in every third sample."""
    if "2 * x == n + 1" in (request.prompt or "") and sample % 3 != 2:
        return RIGHT[sample % 3]
    return "\n    return n"


def loop_of(tmp_path: Path, script, trainer: RecordingTrainer, **options) -> SolveLoop:
    puzzles = tmp_path / "puzzles.json"
    puzzles.write_text(json.dumps(PUZZLES))
    settings = SolveLoopSettings(
        puzzles=puzzles,
        out_dir=tmp_path / "out",
        iterations=2,
        held_out=0.5,
        split_seed=2,  # trains on Double:0, Double:1, SumTo:0; holds out Palindrome and Huge
        samples=6,
        eval_samples=2,
        ks=(1, 2),
        min_pairs=1,
        **options,
    )
    return SolveLoop(
        settings, log=lambda line: None, language_model=lambda name: ScriptedLM(script),
        trainer=trainer,
    )  # fmt: skip


def test_a_model_that_only_answers_wrong_gives_an_empty_training_set(tmp_path: Path) -> None:
    trainer = RecordingTrainer()
    loop = loop_of(tmp_path, wrong_answers, trainer)
    steps = loop.run()
    assert trainer.calls == []
    tuned = [s for s in steps if s.arm == "tuned"]
    assert [s.verified for s in tuned] == [0, 0] and all(s.training_pairs == 0 for s in tuned)
    assert all("not changed" in s.note and s.model == "embedded" for s in tuned)
    assert loop.training_pairs("tuned") == ([], [])


def test_only_verified_distinct_solutions_train_the_model_capped_per_puzzle(
    tmp_path: Path,
) -> None:
    trainer = RecordingTrainer()
    loop = loop_of(tmp_path, partly_right, trainer, max_per_puzzle=1)
    steps = loop.run()
    assert sorted(p.name for p in loop.train) == ["Double:0", "Double:1", "SumTo:0"]
    (examples, folder), (again, _) = trainer.calls  # after iterations 1 and 2
    assert len(examples) == 2  # one per solved puzzle (the cap), nothing for SumTo
    assert all(e.completion.strip() in {r.strip() for r in RIGHT} for e in examples)
    assert {e.prompt.count("def sat4(x: int, n=21)") for e in examples} == {0, 1}
    assert again == examples  # iteration 2 finds nothing new
    tuned = {s.iteration: s for s in steps if s.arm == "tuned"}
    assert tuned[1].verified == 4 and tuned[1].puzzles_solved == 2  # 2 distinct x 2 puzzles
    assert tuned[1].model == str(folder) and tuned[1].training_pairs == 2
    control = [s for s in steps if s.arm == "control"]
    assert [s.model for s in control] == ["embedded", "embedded"]
    assert all(set(s.pass_at) == {"pass@1", "pass@2"} for s in steps)


def test_a_rerun_redoes_nothing_and_other_settings_are_refused(tmp_path: Path) -> None:
    loop_of(tmp_path, partly_right, RecordingTrainer()).run()
    trainer = RecordingTrainer(fail=True)
    models: list[str] = []
    loop = loop_of(tmp_path, partly_right, trainer)
    loop.language_model = lambda name: models.append(name)  # type: ignore[assignment,return-value]
    assert len(loop.run()) == 5 and models == []  # base + 2 tuned + 2 control, all done
    with pytest.raises(Exception, match="other settings"):
        loop_of(tmp_path, partly_right, RecordingTrainer(), max_per_puzzle=2)


def test_every_arm_is_judged_against_the_base_with_an_interval_over_puzzles(
    tmp_path: Path,
) -> None:
    loop = loop_of(tmp_path, partly_right, RecordingTrainer())
    loop.run()
    record = json.loads(loop.record_path.read_text())
    base = next(s for s in record["steps"] if s["arm"] == "base")
    assert len(base["per_puzzle"]["pass@2"]) == len(loop.eval_set) == 2
    assert base["pass_at"]["pass@2"] == sum(base["per_puzzle"]["pass@2"]) / 2
    # the scripted model solves nothing held out: no ratio to the base exists
    assert record["effects"] == [] and (loop.out / "effects.png").is_file()


@pytest.mark.slow  # seconds: not the quick tier
def test_seeds_share_their_held_out_puzzles_and_pool_into_one_effect(tmp_path: Path) -> None:
    from openended.apps.training.solve_loop import run_solve_seeds

    def model(name: str) -> ScriptedLM:
        """Solves the held-out palindrome in half of the samples; a trained model (a
        folder) in all of them."""
        trained = name != "embedded"

        def script(request: GenerationRequest, sample: int) -> str:
            if "s[0] == 'q'" in (request.prompt or "") and (sample % 2 == 0 or trained):
                return "\n    return 'qabcbaq'"
            return partly_right(request, sample)

        return ScriptedLM(script)

    loop = loop_of(tmp_path, partly_right, RecordingTrainer())
    loops, effects = run_solve_seeds(
        loop.settings, [0, 1, 2], log=lambda line: None, language_model=model,
        trainer=RecordingTrainer(),
    )  # fmt: skip
    assert [lp.settings.seed for lp in loops] == [0, 1, 2]
    assert len({tuple(p.name for p in lp.eval_set) for lp in loops}) == 1
    control = next(e for e in effects if e.arm == "control" and e.metric == "pass@1")
    assert control.seeds == 3 and control.items == 2 and control.ratio == 1.0
    tuned = next(e for e in effects if e.arm == "tuned" and e.iteration == 2)
    assert tuned.ratio > 1.0 and tuned.arm_mean > tuned.reference_mean
    saved = json.loads((loop.out / "effects.json").read_text())
    assert saved["settings"] == {"seeds": [0, 1, 2]} and len(saved["effects"]) == len(effects)
