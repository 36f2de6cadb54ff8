"""The collapse experiment on the n-gram model: the known qualitative results at small
scale (replace degrades, accumulate stays bounded), resume without recomputation, and
settings that cannot mix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from openended.apps.experiments.collapse import CollapseSettings, run_collapse
from openended.apps.experiments.models import NGramModel
from openended.apps.experiments.results import ExperimentError

SMALL = CollapseSettings(
    generations=5, seeds=2, real_lines=400, heldout_lines=300, prompts=40, embedding_sample=0
)


def _run(settings: CollapseSettings, out: Path, log: list[str] | None = None) -> list[dict]:
    return run_collapse(
        settings,
        out,
        lambda: NGramModel(settings.world.vocabulary, order=settings.order),
        progress=(log.append if log is not None else lambda _: None),
    )


def _at(rows: list[dict], policy: str, generation: int, metric: str) -> float:
    values = [r[metric] for r in rows if r["policy"] == policy and r["generation"] == generation]
    return sum(values) / len(values)


@pytest.mark.slow  # generations of training
def test_replace_collapses_and_accumulate_stays_bounded(tmp_path: Path) -> None:
    rows = _run(SMALL, tmp_path)
    assert len(rows) == 2 * 4 * 6
    start = _at(rows, "replace", 0, "perplexity")
    assert _at(rows, "accumulate", 0, "perplexity") == start  # generation 0 is shared
    assert _at(rows, "replace", 5, "perplexity") > 2 * start
    assert _at(rows, "accumulate", 5, "perplexity") < 1.6 * start
    assert _at(rows, "replace", 5, "tail_survival") < 0.5 * _at(rows, "replace", 0, "tail_survival")
    assert _at(rows, "replace", 5, "pass@1") < _at(rows, "accumulate-verify", 5, "pass@1")
    # verified data is correct data: the verified loop's samples are more often right
    assert _at(rows, "accumulate-verify", 5, "valid") > _at(rows, "accumulate", 5, "valid")
    # curation keeps the tail that verification alone loses
    assert _at(rows, "qd-curated", 5, "tail_survival") > _at(
        rows, "accumulate-verify", 5, "tail_survival"
    )
    train = {r["policy"]: r["train_lines"] for r in rows if r["generation"] == 5}
    assert train["replace"] == 400 and train["accumulate"] == 400 * 6


def test_a_stopped_run_resumes_to_the_same_rows(tmp_path: Path) -> None:
    settings = CollapseSettings(
        policies=("replace", "qd-curated"),
        generations=3,
        seeds=1,
        real_lines=200,
        heldout_lines=100,
        prompts=10,
        embedding_sample=0,
    )
    full = _run(settings, tmp_path / "full")
    partial = tmp_path / "partial"
    _run(settings, partial)
    results = partial / "results.jsonl"
    lines = results.read_text().splitlines()
    # as if stopped during qd-curated generation 2 (the row's line cut off mid-write)
    kept = [json.loads(x) for x in lines[:6]]
    assert kept[-1]["policy"] == "qd-curated" and kept[-1]["generation"] == 1
    results.write_text("".join(json.dumps(r) + "\n" for r in kept) + lines[6][:20])
    (partial / "samples" / "seed0-qd-curated-g3.txt").unlink()
    log: list[str] = []
    resumed = _run(settings, partial, log)
    assert len(log) == 2  # generations 2 and 3 of qd-curated, nothing else
    assert resumed == full
    assert _run(settings, partial) == full  # a finished run adds nothing


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path) -> None:
    settings = CollapseSettings(
        policies=("replace",),
        generations=1,
        seeds=1,
        real_lines=50,
        prompts=5,
        heldout_lines=20,
        embedding_sample=0,
    )
    _run(settings, tmp_path)
    with pytest.raises(ExperimentError, match=r"settings.json.*generations: 1 -> 2"):
        _run(dataclasses.replace(settings, generations=2), tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("policies", ("replace", "keep-all"), "policies must be among"),
        ("k", 11, r"k must be in 1..samples_per_prompt \(10\)"),
        ("model", "gpt", "model must be one of ngram, embedded"),
        ("generations", 0, "generations must be >= 1"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollapseSettings(**{field: value})


@pytest.mark.slow
def test_the_embedded_model_runs_a_generation(tmp_path: Path, embedded_model_dir: Path) -> None:
    """The 135M model as the self-trained model: fine-tuned on the real equations, its
    held-out perplexity on them falls below the released model's."""
    from openended.apps.experiments.models import EmbeddedModel

    settings = CollapseSettings(
        model="embedded",
        policies=("accumulate-verify",),
        generations=1,
        seeds=1,
        real_lines=32,
        heldout_lines=24,
        prompts=4,
        samples_per_prompt=2,
        k=2,
        embedding_sample=0,
    )
    model = EmbeddedModel(tmp_path / "work", epochs=3, learning_rate=1e-4)
    from openended.apps.experiments.collapse import RealData

    before = model.perplexity(RealData.draw(settings, 0).heldout)
    rows = run_collapse(settings, tmp_path / "out", lambda: model, progress=lambda _: None)
    assert [r["generation"] for r in rows] == [0, 1]
    assert rows[0]["perplexity"] < before
    samples = (tmp_path / "out" / "samples" / "seed0-g0.txt").read_text().split("\n")
    assert len(samples) == 32
