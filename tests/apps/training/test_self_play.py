"""Self-play puzzles: only puzzles whose solution verifies in the real sandbox, that are
not vacuous, not a copy of a prompt example and new, are kept (and trained on)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from openended.apps.training.self_play import keep_puzzles, self_play, self_play_prompts
from openended.apps.training.solve_loop import SolveLoop, SolveLoopSettings
from openended.domains.puzzles.p3 import load_puzzles
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM
from tests.apps.training.test_search_loop import RecordingTrainer
from tests.domains.puzzles.fixtures import PUZZLES

GOOD = "x: int, a=3):\n    return x * a == 12\n\ndef sol4(a=3):\n    return 12 // a"
GOOD_AGAIN = "x: int, a=3):\n    return x * a == 12\n\ndef sol4(a=3):\n    return 4"
OTHER = "s: str):\n    return s.count('z') == 3 and len(s) == 5\n\ndef sol4():\n    return 'zzzab'"
ALWAYS_TRUE = "x: int):\n    return True\n\ndef sol4():\n    return 1"
TRIVIAL = "li: List[int]):\n    return len(li) < 3\n\ndef sol4():\n    return [1]"
WRONG = "x: int):\n    return x == 5\n\ndef sol4():\n    return 4"
CRASHES = "x: int):\n    return x == 5\n\ndef sol4():\n    return 1 / 0"
COPY = "x: int, n=21):\n    return 2 * x == n + 1\n\ndef sol4(n=21):\n    return (n + 1) // 2"
GARBAGE = "this is not python ((("

COMPLETIONS = [GOOD, ALWAYS_TRUE, WRONG, GOOD_AGAIN, TRIVIAL, CRASHES, COPY, GARBAGE, OTHER]


def puzzles_file(tmp_path: Path) -> Path:
    path = tmp_path / "puzzles.json"
    path.write_text(json.dumps(PUZZLES))
    return path


def test_only_verified_new_non_vacuous_puzzles_are_kept(tmp_path: Path) -> None:
    examples = load_puzzles(puzzles_file(tmp_path))

    async def go():  # type: ignore[no-untyped-def]
        with PuzzleVerifier() as verifier:
            return await keep_puzzles(COMPLETIONS, verifier, examples=examples)

    result = asyncio.run(go())
    assert [(p.sat.split("\n")[1].strip()) for p in result.kept] == [
        "return x * a == 12",
        "return s.count('z') == 3 and len(s) == 5",
    ]
    assert result.counts == {
        "completions": 9,
        "unparsable": 1,
        "solution fails": 2,  # a wrong answer, a crash
        "vacuous": 2,  # true for every answer, true for the trivial answer []
        "duplicate": 1,  # the same sat with another solution is not a new puzzle
        "copy of an example": 1,
        "kept": 2,
    }


def test_prompts_show_training_puzzles_and_end_at_a_new_sat(tmp_path: Path) -> None:
    examples = load_puzzles(puzzles_file(tmp_path))
    prompts = self_play_prompts(examples, 4, seed=1, shots=2)
    again = self_play_prompts(examples, 4, seed=1, shots=2)
    assert prompts == again and len(set(prompts)) > 1
    assert all(p.rstrip().endswith("def sat3(") for p in prompts)
    assert all(p.count("def sol") == 2 for p in prompts)


def test_self_play_samples_the_budget_and_filters(tmp_path: Path) -> None:
    examples = load_puzzles(puzzles_file(tmp_path))
    lm = ScriptedLM(COMPLETIONS)

    async def go():  # type: ignore[no-untyped-def]
        with PuzzleVerifier() as verifier:
            return await self_play(lm, examples, verifier, completions=9, seed=0, batch=4)

    result = asyncio.run(go())
    assert len(lm.requests) == 9 and result.counts["completions"] == 9
    assert result.counts["kept"] == len(result.kept) == 2


def script(request: GenerationRequest, sample: int) -> str:
    """Writes puzzles when asked to (a self-play prompt ends at ``def satN(``); answers
    every solve prompt wrongly."""
    if (request.prompt or "").rstrip().endswith("("):
        return COMPLETIONS[(request.seed or 0) % len(COMPLETIONS)]
    return "\n    return None"


def test_the_self_play_arm_trains_only_on_its_kept_puzzles(tmp_path: Path) -> None:
    trainer = RecordingTrainer()
    settings = SolveLoopSettings(
        puzzles=puzzles_file(tmp_path),
        out_dir=tmp_path / "out",
        iterations=1,
        arms=("selfplay",),
        held_out=0.5,
        split_seed=2,
        samples=6,
        eval_samples=2,
        ks=(1, 2),
        min_pairs=1,
    )
    loop = SolveLoop(
        settings, log=lambda line: None, language_model=lambda name: ScriptedLM(script),
        trainer=trainer,
    )  # fmt: skip
    steps = loop.run()
    [(examples, _)] = trainer.calls
    step = next(s for s in steps if s.arm == "selfplay")
    assert step.sampled == len(loop.train) * 6 and step.verified == len(examples) >= 1
    bodies = {e.completion.strip() for e in examples}
    assert bodies <= {"return 12 // a", "return 4", "return 'zzzab'"}
    assert all("return True" not in e.prompt.split("def sat4")[-1] for e in examples)
    saved = json.loads((tmp_path / "out" / "selfplay" / "solutions1.json").read_text())
    assert saved["counts"]["kept"] == len(examples)
