"""The text domain with scripted writers and judges: placement, quality, provenance,
log-probability and parsed judging, seed data, export."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from openended import api
from openended.apps import cli
from openended.domains.text.axes import parse_task
from openended.domains.text.judge import Judge, parse_option
from openended.domains.text.seed_data import SeedDataError, read_seed_texts
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM

TASK = {
    "task": "questions about plants",
    "quality": "clear",
    "axes": [
        {"name": "difficulty", "description": "how hard", "levels": ["easy", "hard"]},
        {"name": "topic", "description": "about what", "labels": ["roots", "leaves", "seeds"]},
    ],
}
TEXTS = [
    "An easy question about roots: what do roots do?",
    "A hard question about leaves: why do leaves change colour in autumn?",
    "A hard question about seeds: how do seeds know when to germinate?",
    "An easy question about leaves: are leaves green?",
]


def answer_for(content: str) -> str:
    """The option number whose label the text mentions (quality: 5 if 'clear' text)."""
    text = content.split("Text:\n", 1)[1].split("\n\n", 1)[0].lower()
    options = re.findall(r"^(\d)\. (.+)$", content, re.MULTILINE)
    if "standard" in content:  # the quality question
        return "5" if "?" in text else "2"
    for number, label in options:
        if label.split()[0] in text:
            return number
    return "nothing"


def judge_script(request: GenerationRequest, sample: int) -> str:
    if request.messages is not None:
        return answer_for(request.messages[-1]["content"])
    # a writer request: the next unused text
    return TEXTS[(request.seed or 0) % len(TEXTS)]


class LogprobLM(ScriptedLM):
    """A scripted model that also gives next-token log-probabilities over options."""

    def render(self, request: GenerationRequest) -> str:
        assert request.messages is not None
        return request.messages[-1]["content"]

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        self.logprob_calls = getattr(self, "logprob_calls", 0) + 1
        out = []
        for prompt in prompts:
            chosen = answer_for(prompt)
            out.append([-0.1 if o == chosen else -5.0 for o in options])
        return out

    def next_token_top_logprobs(
        self, prompts: Sequence[str], k: int
    ) -> list[list[tuple[str, float]]]:
        return [[(answer_for(prompt), -0.1)][:k] for prompt in prompts]


def test_parse_option() -> None:
    assert parse_option("2", 3) == 1
    assert parse_option("Option 3.", 3) == 2
    assert parse_option("7", 3) is None
    assert parse_option("none", 3) is None


@pytest.mark.parametrize("lm_class", [ScriptedLM, LogprobLM])
def test_judge_places_texts_whatever_the_option_order(lm_class: type) -> None:
    task = parse_task(TASK, source="test")
    lm = lm_class(judge_script)
    judge = Judge(lm, task, repeats=3, seed=1)
    judgements = asyncio.run(judge.judge(TEXTS[:3]))
    assert [j.bins for j in judgements] == [(0, 0), (1, 1), (1, 2)]
    method = "logprobs" if lm_class is LogprobLM else "parsed"
    assert {j.method for j in judgements} == {method}
    assert all(j.quality > 0.9 for j in judgements)
    if lm_class is ScriptedLM:
        # categorical options are shuffled between repeats; ordinal ones are not
        prompts = [
            r.messages[-1]["content"]
            for r in lm.requests
            if "about what" in r.messages[-1]["content"]
        ]
        orders = {tuple(re.findall(r"^\d\. (\w+)", p, re.MULTILINE)) for p in prompts}
        assert len(orders) > 1
    else:
        assert not lm.requests  # nothing was sampled


def test_unparsed_answers_are_counted_and_do_not_place_the_text() -> None:
    task = parse_task(TASK, source="test")
    judge = Judge(ScriptedLM(["I cannot say"]), task)
    (judgement,) = asyncio.run(judge.judge(["A question about nothing in particular?"]))
    assert judgement.unparsed == 3  # two axes and quality
    assert judgement.distributions[1] == (0.3333, 0.3333, 0.3333)


def test_seed_data_formats(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"question": t}) for t in TEXTS))
    assert read_seed_texts(jsonl, field="question") == TEXTS
    table = tmp_path / "d.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question"])
        writer.writerows([[i, t] for i, t in enumerate(TEXTS)])
    assert read_seed_texts(table, field="question", limit=2) == TEXTS[:2]
    from datasets import Dataset

    Dataset.from_list([{"question": t} for t in TEXTS]).save_to_disk(str(tmp_path / "hf"))
    assert read_seed_texts(tmp_path / "hf", field="question") == TEXTS
    with pytest.raises(SeedDataError, match="line 1: no string field 'text'"):
        read_seed_texts(jsonl)
    with pytest.raises(SeedDataError, match="no column 'text'; columns: id, question"):
        read_seed_texts(table)
    with pytest.raises(SeedDataError, match="no column 'text'"):
        read_seed_texts(tmp_path / "hf")


def test_augment_fills_cells_and_exports_with_provenance(tmp_path: Path) -> None:
    data = tmp_path / "seeds.jsonl"
    data.write_text(json.dumps({"text": TEXTS[0]}) + "\n")
    axes = tmp_path / "axes.toml"
    axes.write_text(
        'task = "questions about plants"\nquality = "clear"\n'
        '[[axes]]\nname = "difficulty"\ndescription = "how hard"\nlevels = ["easy", "hard"]\n'
        '[[axes]]\nname = "topic"\ndescription = "about what"\n'
        'labels = ["roots", "leaves", "seeds"]\n'
    )
    from openended.apps.augment import augment_config, export_augmented

    config = augment_config(
        data, axes, runs_dir=tmp_path / "runs", name="aug", max_lm_calls=2, batch_size=6
    )
    result = api.run(config, lm=LogprobLM(judge_script))
    paths = export_augmented(result.run_dir)
    rows = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    cells = {(r["difficulty"], r["topic"]) for r in rows}
    assert cells == {("easy", "roots"), ("hard", "leaves"), ("hard", "seeds"), ("easy", "leaves")}
    seed = next(r for r in rows if r["source"] == "seed")
    assert seed["text"] == TEXTS[0] and seed["parents"] == []
    child = next(r for r in rows if r["source"] == "generated")
    assert child["operator"] in {"lmx", "evol", "contrast"} and child["parents"]
    assert child["judge_method"] == "logprobs" and child["model"] == "scripted"
    assert child["topic_probabilities"][child["topic"]] > 0.9
    from datasets import load_from_disk

    dataset = load_from_disk(str(paths["hf_dataset"]))
    assert dataset.num_rows == len(rows) and "text" in dataset.column_names
    card = paths["card"].read_text()
    assert "cells covered: 4 of 6 (the seed data alone: 1)" in card


def test_augment_command_rejects_a_bad_axes_file_before_loading_a_model(
    tmp_path: Path, capsys
) -> None:
    axes = tmp_path / "axes.toml"
    axes.write_text('task = "x"\n[[axes]]\nname = "a"\ndescription = "d"\nlevels = ["one"]\n')
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello there world"}\n')
    assert cli.main(["augment", str(data), "--axes", str(axes)]) == 2
    assert "axes[0]: an axis needs at least 2 bins" in capsys.readouterr().err


def embedding_run(tmp_path: Path) -> api.RunResult:
    """A short text run with embedding descriptors, three seeds, a scripted writer/judge."""
    config = {
        "runs_dir": str(tmp_path),
        "name": "emb",
        "search": {"batch_size": 4},
        "budget": {"max_lm_calls": 1, "max_seconds": 0},
        "domain": {"name": "text", **TASK, "seed_texts": TEXTS[:3], "descriptors": "embedding"},
    }
    return api.run(config, lm=LogprobLM(judge_script))


@pytest.mark.slow  # loads the sentence-embedding model
def test_embedding_descriptors_map_texts_on_the_seeds_principal_directions(tmp_path: Path) -> None:
    result = embedding_run(tmp_path)
    frame = result.archive
    assert {"semantic_1", "semantic_2"} <= set(frame.columns)
    assert len(frame) >= 3  # the three seeds land in different cells
    assert frame["semantic_1"].abs().max() > 0


@pytest.mark.slow
def test_a_2x2_grid_on_the_embedded_model(tmp_path: Path, embedded_lm) -> None:
    task = {
        "task": "questions about animals",
        "quality": "a clear question",
        "axes": [
            {"name": "difficulty", "description": "How hard is it", "levels": ["easy", "hard"]},
            {"name": "animal", "description": "Which animal", "labels": ["cats", "birds"]},
        ],
    }
    config = {
        "runs_dir": str(tmp_path),
        "name": "grid",
        "search": {"batch_size": 4},
        "budget": {"max_lm_calls": 2, "max_seconds": 0},
        "domain": {"name": "text", **task, "generated_seeds": 2},
    }
    result = api.run(config, lm=embedded_lm)
    import sqlite3

    rows = (
        sqlite3.connect(result.run_dir / "run.sqlite")
        .execute("select operator, status, fitness, descriptors, metrics from candidates")
        .fetchall()
    )
    valid = [r for r in rows if r[1] == "valid"]
    assert any(r[0] == "seed" for r in valid) and any(r[0] != "seed" for r in valid)
    for _, _, fitness, descriptors, metrics in valid:
        m = json.loads(metrics)
        assert 0 <= fitness <= 1 and m["judge_logprobs"] == 1.0  # the local model's logprobs
        assert abs(m["animal=cats"] + m["animal=birds"] - 1) < 1e-3
        assert all(d in (0.5, 1.5) for d in json.loads(descriptors))
    assert 1 <= len(result.archive) <= 4


class BiasedLogprobLM(LogprobLM):
    """Right most of the time, but with a strong pull towards option 1 whatever it reads."""

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        rows = await super().option_logprobs(prompts, options)
        return [[v + (6.0 if i == 0 else 0.0) for i, v in enumerate(row)] for row in rows]


def test_contextual_calibration_removes_a_position_bias() -> None:
    task = parse_task(TASK, source="test")
    raw = asyncio.run(Judge(BiasedLogprobLM(judge_script), task, calibrate=False).judge(TEXTS[:3]))
    assert {j.bins for j in raw} == {(0, 0)}  # every text pulled to option 1
    fixed = asyncio.run(Judge(BiasedLogprobLM(judge_script), task).judge(TEXTS[:3]))
    assert [j.bins for j in fixed] == [(0, 0), (1, 1), (1, 2)]


class NoTopLogprobsServer(ScriptedLM):
    """Like a server that accepts top_logprobs but returns none."""

    async def chat_option_logprobs(self, conversations, options):  # type: ignore[no-untyped-def]
        return None


def test_a_server_without_top_logprobs_falls_back_to_parsed_answers() -> None:
    task = parse_task(TASK, source="test")
    judge = Judge(NoTopLogprobsServer(judge_script), task)
    assert judge.method == "logprobs"  # it tries first
    judgements = asyncio.run(judge.judge(TEXTS[:2]))
    assert {j.method for j in judgements} == {"parsed"}
    assert [j.bins for j in judgements] == [(0, 0), (1, 1)]


def test_list_markers_are_stripped_but_leading_numbers_kept() -> None:
    from openended.domains.text.domain import TextConfig, TextDomain

    domain = TextDomain(TextConfig(**TASK, seed_texts=["x" * 20]))
    assert domain.parse("3. Why do leaves fall in autumn?") == "Why do leaves fall in autumn?"
    assert domain.parse("12) What do roots do?") == "What do roots do?"
    assert domain.parse("2024 saw record heat; why?") == "2024 saw record heat; why?"
    assert domain.parse("- short") is None  # under min_chars


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    from openended.jsonl import read_jsonl

    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n")
    assert read_jsonl(path, ValueError) == [(1, {"text": "a\u2028b"})]


def test_the_completion_cache_passes_log_probability_readers_through(tmp_path: Path) -> None:
    from openended.lm.base import LogprobModel
    from openended.lm.cache import cached

    judge = Judge(
        cached(LogprobLM(judge_script), tmp_path / "c.sqlite"), parse_task(TASK, source="test")
    )
    assert judge.method == "logprobs"
    assert not isinstance(cached(ScriptedLM(["x"]), tmp_path / "d.sqlite"), LogprobModel)


@pytest.mark.slow  # loads the sentence-embedding model
def test_augment_export_labels_come_from_the_judge_with_embedding_descriptors(
    tmp_path: Path,
) -> None:
    from openended.apps.augment import export_augmented

    result = embedding_run(tmp_path)
    rows = [
        json.loads(x)
        for x in export_augmented(result.run_dir)["jsonl"].read_text().split("\n")
        if x
    ]
    by_text = {r["text"]: r for r in rows}
    assert by_text[TEXTS[1]]["difficulty"] == "hard" and by_text[TEXTS[1]]["topic"] == "leaves"
    assert by_text[TEXTS[0]]["topic"] == "roots"
