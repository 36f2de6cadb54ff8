"""Training pairs from a run: which children are picked, with which prompts, and the
refusal to train on too little."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openended.apps import cli
from openended.apps.training.finetune import read_examples, read_preferences
from openended.apps.training.pairs import TooFewPairsError, select_pairs, select_preferences
from openended.store.run_store import BatchMetrics, CandidateRecord, RunStore


def child(
    id: int, parents: tuple[int, ...], fitness: float | None, genome: str, added: bool = False
) -> CandidateRecord:
    return CandidateRecord(
        id=id,
        batch=1,
        operator="mutation",
        parents=parents,
        status="valid" if fitness is not None else "invalid",
        genome=genome,
        prompt=f"prompt of {id}",
        completion=f" completion of {id}",
        fitness=fitness,
        descriptors=(1.0, 1.0),
        added=added,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Seeds 1 (-1.0) and 2 (-0.5); children with known outcomes:
    3 beats its parent 1; 4 beats parent 1 but not parent 2 (it entered the archive);
    5 is invalid; 6 beats parent 2 by 0.4; 7 is 6's genome respaced and beats parent 1 by
    0.8; 8 beats its parent 3; 9 beats parent 1 but has no prompt stored."""
    path = tmp_path / "run"
    seeds = [
        CandidateRecord(id=i, batch=0, operator="seed", parents=(), status="valid",
                        genome=g, fitness=f, descriptors=(0.0, 0.0), added=True)
        for i, g, f in ((1, "x", -1.0), (2, "x**2", -0.5))
    ]  # fmt: skip
    children = [
        child(3, (1,), -0.8, "x + 1", added=True),
        child(4, (1, 2), -0.8, "x - 1", added=True),
        child(5, (2,), None, "x / 0"),
        child(6, (2,), -0.1, "x*x + x"),
        child(7, (1,), -0.2, "x * x+x"),
        child(8, (3,), -0.3, "x + 2", added=True),
        dataclass_without_prompt(child(9, (1,), -0.05, "x + 3")),
    ]
    with RunStore(path, create=True) as store:
        for batch, records in enumerate((seeds, children)):
            store.record_batch(
                records, BatchMetrics(batch, 1, 0, 0, 0.0, 1, 0.1, 1.0, -1.0, 1.0, 1.0, None)
            )
    return path


def dataclass_without_prompt(record: CandidateRecord) -> CandidateRecord:
    record.prompt = None
    return record


@pytest.mark.parametrize(
    ("select", "expected"),
    [("improved", [3, 7, 8]), ("archive", [3, 4, 8]), ("valid", [3, 4, 7, 8])],
)
def test_pairs_are_exactly_the_selected_children_with_their_prompts(
    run_dir: Path, select: str, expected: list[int]
) -> None:
    selection = select_pairs(run_dir, select=select)  # type: ignore[arg-type]
    assert selection.ids == expected
    assert [e.prompt for e in selection.examples] == [f"prompt of {i}" for i in expected]
    assert [e.completion for e in selection.examples] == [f" completion of {i}" for i in expected]
    if select == "valid":  # 6 and 7 are one genome: the larger gain (7's) is kept
        assert selection.counts["duplicates"] == 1


def test_one_parent_gives_at_most_its_cap_largest_gains_first(run_dir: Path) -> None:
    selection = select_pairs(run_dir, select="improved", max_per_parent=1)
    assert selection.ids == [7, 8]  # 3 (gain 0.2) and 7 (gain 0.8) share parent 1
    assert selection.counts["over the per-parent cap"] == 1


def test_fewer_pairs_than_the_minimum_is_a_named_error_and_writes_nothing(
    run_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(TooFewPairsError, match=r"3 pairs .*fewer than the minimum of 5"):
        select_pairs(run_dir, min_pairs=5)
    out = tmp_path / "model"
    code = cli.main(["finetune", str(run_dir), "--min-pairs", "5", "--out", str(out)])
    assert code == 2 and not out.exists()


def test_exported_pairs_read_back_as_training_data(run_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    code = cli.main(["finetune", str(run_dir), "--min-pairs", "1", "--export", str(path)])
    assert code == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["source"] for r in rows] == [3, 7, 8]
    assert [e.prompt for e in read_examples(path)] == ["prompt of 3", "prompt of 7", "prompt of 8"]


def test_a_folder_without_a_run_is_named(tmp_path: Path) -> None:
    code = cli.main(["finetune", str(tmp_path), "--export", str(tmp_path / "p.jsonl")])
    assert code == 2 and not (tmp_path / "p.jsonl").exists()


def shared_prompt_child(
    id: int, prompt: str, status: str, genome: str, fitness: float | None = None
) -> CandidateRecord:
    return CandidateRecord(
        id=id, batch=1, operator="mutation", parents=(1,), status=status, genome=genome,
        prompt=prompt, completion=f" completion of {id}", fitness=fitness,
        descriptors=(1.0, 1.0) if fitness is not None else None,
    )  # fmt: skip


@pytest.fixture
def shared_prompts_run(tmp_path: Path) -> Path:
    """Prompt P1 gave valid 2, invalid 3 and duplicate 4; P2 only valid 5; P3 only a parse
    error 6; P4 valid 7 (2's genome respaced) and a diff that did not apply, 8."""
    path = tmp_path / "run"
    seed = CandidateRecord(
        id=1, batch=0, operator="seed", parents=(), status="valid", genome="x", fitness=-1.0,
        descriptors=(0.0, 0.0), added=True,
    )  # fmt: skip
    children = [
        shared_prompt_child(2, "P1", "valid", "x + 1", -0.5),
        shared_prompt_child(3, "P1", "invalid", "x / 0"),
        shared_prompt_child(4, "P1", "duplicate", "x"),
        shared_prompt_child(5, "P2", "valid", "x * 2", -0.7),
        shared_prompt_child(6, "P3", "parse_error", "x +"),
        shared_prompt_child(7, "P4", "valid", "x+1", -0.5),
        shared_prompt_child(8, "P4", "search_not_found", "x"),
    ]
    with RunStore(path, create=True) as store:
        for batch, records in enumerate(([seed], children)):
            store.record_batch(
                records, BatchMetrics(batch, 1, 0, 0, 0.0, 1, 0.1, 1.0, -1.0, 1.0, 1.0, None)
            )
    return path


def test_preferences_put_a_valid_child_over_a_failed_one_of_the_same_prompt(
    shared_prompts_run: Path, tmp_path: Path
) -> None:
    selection = select_preferences(shared_prompts_run)
    pairs = [(p.prompt, p.chosen, p.rejected) for p in selection.preferences]
    # P1 only: P2 and P3 lack a rejected or a chosen child; P4's valid child is 2's genome.
    assert pairs == [
        ("P1", " completion of 2", " completion of 3"),
        ("P1", " completion of 2", " completion of 4"),
    ]
    assert selection.counts["rejected (duplicate)"] == 1
    assert len(select_preferences(shared_prompts_run, max_per_prompt=1).preferences) == 1
    with pytest.raises(TooFewPairsError, match=r"2 preference pairs .*minimum of 3"):
        select_preferences(shared_prompts_run, min_pairs=3)
    path = tmp_path / "preferences.jsonl"
    code = cli.main(
        ["finetune", str(shared_prompts_run), "--objective", "dpo", "--select", "valid",
         "--min-pairs", "1", "--export", str(path)]
    )  # fmt: skip
    assert code == 0
    assert [(p.prompt, p.chosen, p.rejected) for p in read_preferences(path)] == pairs


def test_improvement_preferences_put_an_improving_child_over_its_prompts_others(
    tmp_path: Path,
) -> None:
    """EvoTune's pairs: same prompt, the child that beat its parent over those that did
    not; in a lettered menu, also over the options it did not pick."""
    from openended.apps.training.pairs import select_improvement_preferences

    menu = (
        "def f(x):\n    return x\n# Options for one more term:\n"
        "#   A. x\n#   B. x**2\n#   C. 1/x\n# The term that most improves f is option"
    )
    seeds = [
        CandidateRecord(id=1, batch=0, operator="seed", parents=(), status="valid",
                        genome="x", fitness=-1.0, descriptors=(0.0, 0.0), added=True)
    ]  # fmt: skip

    def made(id: int, prompt: str, completion: str, fitness: float | None) -> CandidateRecord:
        return CandidateRecord(
            id=id, batch=1, operator="op", parents=(1,),
            status="valid" if fitness is not None else "invalid", genome=f"x + {id}",
            prompt=prompt, completion=completion, fitness=fitness, descriptors=(1.0, 1.0),
        )  # fmt: skip

    children = [
        made(2, "same prompt", " better", -0.5),  # improves
        made(3, "same prompt", " worse", -2.0),  # valid, no better
        made(4, "same prompt", " broken", None),  # failed
        made(5, menu, " B", -0.2),  # improves, in a menu
        made(6, "another prompt", " no gain", -1.0),  # ties its parent: not improving
    ]
    path = tmp_path / "run"
    with RunStore(path, create=True) as store:
        for batch, records in enumerate((seeds, children)):
            store.record_batch(
                records, BatchMetrics(batch, 1, 0, 0, 0.0, 1, 0.1, 1.0, -1.0, 1.0, 1.0, None)
            )
    found = select_improvement_preferences(path, max_per_prompt=4)
    pairs = {(p.prompt, p.chosen, p.rejected) for p in found.preferences}
    assert pairs == {
        ("same prompt", " better", " worse"),
        ("same prompt", " better", " broken"),
        (menu, " B", " A"),
        (menu, " B", " C"),
    }
    assert found.counts["improving children"] == 2
    capped = select_improvement_preferences(path, max_per_prompt=1)
    assert len(capped.preferences) == 2
    with pytest.raises(TooFewPairsError, match="fewer than the minimum of 5"):
        select_improvement_preferences(path, min_pairs=5)
