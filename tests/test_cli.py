"""The `openended` command: errors, report and export on real run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import openended
from openended.apps.cli import main


@pytest.fixture
def run_dir(small_config, scripted_lm) -> Path:
    return openended.run(small_config(), lm=scripted_lm).run_dir


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[search]\nbatch = 4\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "search.batch: unknown key" in " ".join(err.split())
    assert main(["run", "--set", "archive.kind=hex"]) == 2
    assert "archive.kind" in capsys.readouterr().err


def test_bad_csv_exits_2_naming_the_line(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n2,oops\n")
    code = main(
        ["run", "--runs-dir", str(tmp_path), "--set", "domain.data=" + json.dumps(str(data))]
    )
    assert code == 2
    assert "line 3, column 2 (y): 'oops' is not a number" in " ".join(
        capsys.readouterr().err.split()
    )
    assert not list(tmp_path.glob("*/run.sqlite"))  # failed before anything was created


def test_resume_of_a_non_run(tmp_path: Path, capsys) -> None:
    assert main(["resume", str(tmp_path)]) == 2
    assert "not an openended run directory" in capsys.readouterr().err


def test_report_writes_html_and_plots(run_dir: Path, capsys) -> None:
    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text()
    assert (run_dir / "progress.png").stat().st_size > 1000
    assert (run_dir / "heatmap.png").stat().st_size > 1000
    assert "m * (v ** 2 + u ** 2 + w ** 2)" in html  # the fitted best, shown
    assert "QD-score" in html and "Most common failures" in html
    assert "target = I.13.4" in html  # what the run was for, with the domain's defaults
    assert "session 1: budget: evaluations (60)" in html  # why it stopped
    assert "beats the best seed" in html and "resolved config.toml" in html


def test_the_report_says_when_no_child_beat_the_seed(small_config) -> None:
    from openended.apps.report import write_report
    from openended.lm.scripted import ScriptedLM

    result = openended.run(small_config(max_evaluations=30), lm=ScriptedLM([" u", " w"]))
    html = write_report(result.run_dir).read_text()
    assert "no child beat the best seed" in " ".join(html.split())


def test_export_jsonl_and_parquet(run_dir: Path) -> None:
    assert main(["export", str(run_dir)]) == 0
    lines = (run_dir / "exports" / "candidates.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["id"] == 1 and first["operator"] == "seed" and first["parents"] == []
    out = run_dir / "elites.parquet"
    assert main(["export", str(run_dir), "--format", "parquet", "--elites", "--out", str(out)]) == 0
    elites = pd.read_parquet(out)
    assert elites["status"].eq("valid").all()
    assert len(elites) == len(set(elites["id"])) > 1


def test_version_and_help_with_defaults_and_an_example(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert (
        stop.value.code == 0 and capsys.readouterr().out == f"openended {openended.__version__}\n"
    )
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "examples: openended run openended run --max-evaluations 200" in text
    assert "--seed SEED the run's seed (default: 0)" in text
    with pytest.raises(SystemExit):
        main(["improve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "completions per search and arm (default: 128)" in text


def test_budget_flags_are_the_budget_keys() -> None:
    from openended.apps.cli import build_parser
    from openended.apps.cli.common import flag_overrides
    from openended.config import load_config

    for command in (["run"], ["evolve", "a.py", "b.py"], ["resume", "runs/x"]):
        args = build_parser().parse_args(
            [*command, "--max-seconds", "90", "--target-score", "-0.5"]
        )
        budget = load_config(None, flag_overrides(args)).budget
        assert budget.max_seconds == 90 and budget.target_score == -0.5
        assert budget.max_evaluations == 0  # a budget set is the only one


def test_a_run_stops_at_its_target_score(small_config, scripted_lm) -> None:
    config = small_config(max_evaluations=200)
    config["budget"]["target_score"] = -0.5
    result = openended.run(config, lm=scripted_lm)
    assert result.outcome.stopped_by.startswith("target score reached: best ")
    assert result.outcome.ok and result.best is not None and result.best["fitness"] >= -0.5
    assert result.outcome.metrics is not None and result.outcome.metrics.evaluations < 200
