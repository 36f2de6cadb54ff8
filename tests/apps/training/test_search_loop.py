"""The explore -> verify -> fine-tune loop for any domain: the logic with a scripted model
and a recording trainer (fast), and a tiny real loop with the embedded model, killed
between steps and resumed (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openended.apps.training.finetune import FINETUNE_INFO, FinetuneResult
from openended.apps.training.pairs import select_pairs
from openended.apps.training.search_loop import METRICS, LoopError, LoopSettings, SearchImproveLoop
from openended.lm.scripted import ScriptedLM
from openended.store.run_store import RunStore
from tests.conftest import seeded_script

OVERRIDES = ("domain.points=64", "search.batch_size=8")


class RecordingTrainer:
    """Writes an (empty) model folder and remembers what it was asked to learn."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[Any], Path]] = []
        self.fail = fail

    def __call__(self, base: Any, examples: Any, out: Path, settings: Any, **kw: Any) -> Any:
        if self.fail:
            raise RuntimeError("killed while training")
        self.calls.append((list(examples), Path(out)))
        Path(out).mkdir(parents=True)
        (Path(out) / FINETUNE_INFO).write_text("{}")
        return FinetuneResult(Path(out), str(base), len(examples), 1, 0.0)


def loop_of(tmp_path: Path, trainer: Any, models: list[str], **options: Any) -> SearchImproveLoop:
    settings = LoopSettings(
        **{
            "config": None,
            "out_dir": tmp_path / "loop",
            "overrides": OVERRIDES,
            "iterations": 2,
            "completions": 24,
            "select": "valid",
            "min_pairs": 1,
            **options,
        }
    )

    def language_model(name: str) -> ScriptedLM:
        models.append(name)
        return ScriptedLM(seeded_script)

    return SearchImproveLoop(
        settings, log=lambda line: None, language_model=language_model, trainer=trainer
    )


def test_the_tuned_arm_searches_with_the_model_trained_on_its_own_verified_pairs(
    tmp_path: Path,
) -> None:
    trainer, models = RecordingTrainer(), []
    loop = loop_of(tmp_path, trainer, models)
    loop.run()
    out = tmp_path / "loop"
    steps = {(s.arm, s.iteration): s for s in loop.searches}
    assert set(steps) == {("tuned", 1), ("control", 1), ("tuned", 2), ("control", 2)}
    # iteration 1: one search shared by both arms (the same model and seed)
    assert steps["tuned", 1].run_dir == steps["control", 1].run_dir
    ((examples, folder),) = trainer.calls
    expected = select_pairs(out / steps["tuned", 1].run_dir, select="valid", min_pairs=1)
    assert examples == expected.examples and examples
    assert steps["tuned", 2].model == str(folder)
    assert steps["control", 2].model == "embedded"
    assert models == ["embedded", str(folder), "embedded"]  # iteration 1 searched once
    for step in loop.searches:
        assert set(step.metrics) == set(METRICS)
        assert 0 <= step.metrics["improved_rate"] <= step.metrics["valid_rate"] <= 1
        assert step.completions == 24  # the same completions in every search
    saved = json.loads((out / "loop.json").read_text())
    assert len(saved["searches"]) == 4 and saved["trainings"][0]["pairs"] == len(examples)
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == sorted([*(f"{m}.png" for m in METRICS), "effects.png"])
    # every child's outcome is kept, and the rates are their means
    for step in loop.searches:
        for metric in ("valid_rate", "improved_rate"):
            assert len(step.items[metric]) == step.completions
            assert sum(step.items[metric]) / step.completions == step.metrics[metric]
    effects = {(e["metric"], e["iteration"]) for e in saved["effects"]}
    assert effects <= {("valid_rate", 2), ("improved_rate", 2)} and ("valid_rate", 2) in effects
    valid = next(e for e in saved["effects"] if e["metric"] == "valid_rate")
    assert valid["items"] == 48 and valid["low"] <= valid["ratio"] <= valid["high"]
    lines = (folder / "training_pairs.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == [e.prompt for e in examples]


@pytest.mark.slow  # seconds: not the quick tier
def test_a_continual_loop_trains_during_one_search_and_counts_each_iterations_children(
    tmp_path: Path,
) -> None:
    trainer, models = RecordingTrainer(), []
    loop = loop_of(tmp_path, trainer, models, iterations=3, continual=True)
    loop.run()
    out = tmp_path / "loop"
    steps = {(s.arm, s.iteration): s for s in loop.searches}
    with RunStore(out / steps["tuned", 1].run_dir) as store:
        first = [r.genome for r in store.candidates()]
    for arm in ("tuned", "control"):
        with RunStore(out / steps[arm, 3].run_dir) as store:
            records = list(store.candidates())
        # iteration 3 continues iteration 2, which continued the shared iteration 1
        assert [r.genome for r in records[: len(first)]] == first
        assert sum(1 for r in records if r.parents) == 3 * 24
        assert all(steps[arm, i].completions == 24 for i in (1, 2, 3))
    # the second fine-tune learns from the tuned arm's one search, iterations 1 and 2
    (_, _), (examples, _) = trainer.calls
    expected = select_pairs(out / steps["tuned", 2].run_dir, select="valid", min_pairs=1)
    assert examples == expected.examples
    assert models == ["embedded", trainer.calls[0][1].as_posix(), "embedded",
                      trainer.calls[1][1].as_posix(), "embedded"]  # fmt: skip


@pytest.mark.slow  # seconds: not the quick tier
def test_a_rerun_after_a_failure_redoes_no_finished_step(tmp_path: Path) -> None:
    models: list[str] = []
    with pytest.raises(RuntimeError, match="killed while training"):
        loop_of(tmp_path, RecordingTrainer(fail=True), models).run()
    assert models == ["embedded"]  # iteration 1's search is done and recorded
    run_dir = tmp_path / "loop" / "tuned" / "iter1"
    with RunStore(run_dir) as store:
        before = [(r.id, r.genome, r.fitness) for r in store.candidates()]
    trainer, models = RecordingTrainer(), []
    loop_of(tmp_path, trainer, models).run()
    assert len(models) == 2 and len(trainer.calls) == 1  # only iteration 2's searches
    with RunStore(run_dir) as store:
        assert [(r.id, r.genome, r.fitness) for r in store.candidates()] == before
    models = []
    loop_of(tmp_path, RecordingTrainer(fail=True), models).run()  # all done: nothing runs
    assert models == []


def test_a_loop_folder_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    loop_of(tmp_path, RecordingTrainer(), []).run()
    settings = LoopSettings(
        config=None,
        out_dir=tmp_path / "loop",
        overrides=(*OVERRIDES, "domain.noise=0.1"),
        completions=24,
        select="valid",
    )
    with pytest.raises(LoopError, match=r"other settings.*resolved_config"):
        SearchImproveLoop(settings)


@pytest.mark.slow
def test_a_tiny_real_loop_resumes_after_sigkill_between_steps(
    tmp_path: Path, embedded_model_dir: Path
) -> None:
    """The embedded model searches, one LoRA epoch trains it, the tuned model searches;
    killed right after the first step is recorded, the rerun keeps that step."""
    out = tmp_path / "loop"
    command = [
        sys.executable, "-m", "openended.apps.cli", "improve",
        "--set", "domain.points=64", "--set", "search.batch_size=8",
        "--iterations", "2", "--completions", "16", "--select", "valid",
        "--min-pairs", "1", "--epochs", "1", "--out", str(out),
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    record = out / "loop.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if record.is_file() and json.loads(record.read_text())["searches"]:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    process.wait(timeout=60)
    first = json.loads(record.read_text())
    assert first["searches"] and not first["trainings"]  # killed between steps
    with RunStore(out / first["searches"][0]["run_dir"]) as store:
        before = [(r.id, r.genome, r.fitness) for r in store.candidates()]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads(record.read_text())
    assert final["searches"][0] == first["searches"][0]  # not redone
    with RunStore(out / first["searches"][0]["run_dir"]) as store:
        after = [(r.id, r.genome, r.fitness) for r in store.candidates()]
    assert after == before
    arms = {(s["arm"], s["iteration"]): s for s in final["searches"]}
    tuned_model = Path(arms["tuned", 2]["model"])
    assert (tuned_model / FINETUNE_INFO).is_file() and final["trainings"][0]["pairs"] >= 1
    assert arms["control", 2]["model"] == "embedded"
    assert arms["tuned", 2]["completions"] == arms["control", 2]["completions"] == 16
