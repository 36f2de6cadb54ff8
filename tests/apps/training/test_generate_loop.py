"""The improve loop end to end on the embedded model (tiny sizes), and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openended.apps import cli
from openended.apps.training.finetune import FinetuneSettings
from openended.apps.training.generate_loop import ImproveLoop, ImproveSettings, diversity
from openended.domains.puzzles.puzzle_source import parse_puzzle
from tests.domains.puzzles.fixtures import PUZZLES


def test_diversity_counts_cells_and_types() -> None:
    a = parse_puzzle("def sat(x: int):\n    return x == 3\n\ndef sol():\n    return 3")
    b = parse_puzzle("def sat(s: str):\n    return s == 'a'\n\ndef sol():\n    return 'a'")
    c = parse_puzzle("def sat(y: int):\n    return y == 4\n\ndef sol():\n    return 4")
    d = diversity([a, b, c])
    assert d["puzzles"] == 3 and d["answer_types"] == 2 and d["cells"] == 2
    assert 0 < d["distinct_3"] <= 1
    assert diversity([])["cells"] == 0


@pytest.mark.slow
def test_improve_loop_runs_both_arms_and_resumes(tmp_path: Path, embedded_model_dir: Path) -> None:
    puzzles = tmp_path / "puzzles.json"
    puzzles.write_text(json.dumps(PUZZLES))
    settings = ImproveSettings(
        puzzles=puzzles,
        out_dir=tmp_path / "out",
        held_out=0.5,
        eval_puzzles=2,
        samples=2,
        ks=(1, 2),
        generate_calls=1,
        batch_size=2,
        max_seeds=2,
        solver_attempts=1,
        with_seeds=True,  # so that both arms have data to fine-tune on
        finetune=FinetuneSettings(epochs=1, batch_size=4),
    )
    lines: list[str] = []
    steps = ImproveLoop(settings, log=lines.append).run()
    assert [(s.arm, s.iteration) for s in steps] == [("base", 0), ("qd", 1), ("naive", 1)]
    record = json.loads((tmp_path / "out" / "improve.json").read_text())
    held_out = set(record["settings"]["eval_set"])
    seeds = {p["name"] for p in json.loads((tmp_path / "out" / "seeds.json").read_text())}
    assert held_out and not held_out & seeds  # the loop never sees held-out puzzles
    assert not {n.split(":")[0] for n in held_out} & {n.split(":")[0] for n in seeds}
    for step in steps[1:]:
        assert step.training_examples >= 1
        assert Path(step.model, "model.safetensors").is_file()  # a fine-tuned model
        assert set(step.pass_at) == {"pass@1", "pass@2"}
        assert {"generate", "finetune", "evaluate"} <= set(step.seconds)
    assert (tmp_path / "out" / "improve.png").is_file()
    # run again: every step is done, nothing is redone
    again: list[str] = []
    assert len(ImproveLoop(settings, log=again.append).run()) == 3
    assert not any("fine-tuning" in line or "evaluating" in line for line in again)


@pytest.mark.slow
def test_solve_command_reports_pass_at_k(tmp_path: Path, embedded_model_dir: Path, capsys) -> None:
    puzzles = tmp_path / "puzzles.json"
    puzzles.write_text(json.dumps(PUZZLES[:2]))
    out = tmp_path / "report.json"
    code = cli.main(
        [
            "solve",
            str(puzzles),
            "--samples",
            "3",
            "--k",
            "1",
            "3",
            "--max-tokens",
            "24",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["puzzles"] == 2 and summary["samples_per_puzzle"] == 3
    assert 0 <= summary["pass@1"] <= summary["pass@3"] <= 1
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["Double:0", "Double:1"]
    assert all(r["correct"] + sum(r["failures"].values()) == 3 for r in results)


def test_bad_puzzle_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"name": "a", "ans_type": "int"}]')
    assert cli.main(["solve", str(path)]) == 2
    assert "puzzle 0: key 'sat' is missing" in capsys.readouterr().err


def test_an_output_folder_made_with_other_settings_is_refused(tmp_path: Path, capsys) -> None:
    puzzles = tmp_path / "puzzles.json"
    puzzles.write_text(json.dumps(PUZZLES))
    out = tmp_path / "out"
    first = ImproveLoop(ImproveSettings(puzzles=puzzles, out_dir=out, held_out=0.5), log=print)
    first._save()
    ImproveLoop(ImproveSettings(puzzles=puzzles, out_dir=out, held_out=0.5), log=print)  # same
    code = cli.main(
        [
            "improve",
            "--puzzles",
            str(puzzles),
            "--out",
            str(out),
            "--held-out",
            "0.5",
            "--seed",
            "3",
        ]
    )
    assert code == 2
    assert "made with other settings (seed" in capsys.readouterr().err
