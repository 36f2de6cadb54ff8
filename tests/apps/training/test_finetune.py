"""Fine-tuning with TRL on the embedded model (slow), and the data file checks (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from openended import api
from openended.apps import cli
from openended.apps.training.finetune import (
    Example,
    FinetuneError,
    FinetuneSettings,
    Preference,
    finetune,
    read_examples,
)
from openended.config import ModelConfig
from openended.lm.base import GenerationRequest
from openended.lm.factory import build_language_model
from openended.lm.scripted import ScriptedLM
from openended.store.run_store import RunStore
from tests.domains.puzzles.test_generate import script


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a", "completion": "b"}\nnot json\n', "line 2: not JSON"),
        ('{"prompt": "a"}\n', "line 1: key 'completion'"),
        ("[1, 2]\n", "line 1: expected an object"),
    ],
)
def test_bad_data_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(FinetuneError, match=message):
        read_examples(path)


def test_solutions_need_a_puzzles_run(tmp_path: Path, small_config, scripted_lm) -> None:
    result = api.run(small_config(max_evaluations=10), lm=scripted_lm)
    out = tmp_path / "m"
    code = cli.main(["finetune", str(result.run_dir), "--pairs", "solutions", "--out", str(out)])
    assert code == 2
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_a_puzzles_run_into_a_model_that_runs(
    tmp_path: Path, embedded_model_dir: Path, method: str
) -> None:
    config = {
        "runs_dir": str(tmp_path),
        "name": "gen",
        "search": {"batch_size": 10},
        "budget": {"max_lm_calls": 2, "max_seconds": 0},
        "domain": {"name": "puzzles", "max_seeds": 6, "solver_attempts": 2},
    }
    run = api.run(config, lm=ScriptedLM(script))
    out = tmp_path / "tuned"
    code = cli.main(
        [
            "finetune",
            str(run.run_dir),
            "--pairs",
            "solutions",
            "--select",
            "valid",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--method",
            method,
        ]
    )
    assert code == 0
    info = json.loads((out / "openended_finetune.json").read_text())
    assert info["examples"] == 7  # six seeds and one new puzzle
    assert info["steps"] == 2 and all(loss > 0 for loss in info["losses"])
    # the update (LoRA: merged) is in the weights
    before = load_file(str(embedded_model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    name = next(k for k in after if k.endswith("q_proj.weight"))
    assert not (before[name] == after[name]).all()
    # and the folder is a model that --model accepts
    lm = build_language_model(ModelConfig(name=str(out)))
    result = lm.generate_sync(  # type: ignore[attr-defined]
        [GenerationRequest(prompt="def add(a, b):", max_tokens=8, seed=1)]
    )
    assert result[0].generations[0].completion_tokens > 0


@pytest.mark.slow
def test_finetune_any_run_on_its_verified_children(
    tmp_path: Path, small_config, scripted_lm, embedded_model_dir: Path
) -> None:
    """A symbolic regression run's valid children, with the prompts the operators wrote,
    train the embedded model (one LoRA epoch); the pairs are kept beside the model."""
    run = api.run(small_config(max_evaluations=40), lm=scripted_lm)
    out = tmp_path / "tuned"
    code = cli.main(
        [
            "finetune",
            str(run.run_dir),
            "--select",
            "valid",
            "--min-pairs",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    pairs = [json.loads(line) for line in (out / "training_pairs.jsonl").read_text().splitlines()]
    info = json.loads((out / "openended_finetune.json").read_text())
    assert info["examples"] == len(pairs) >= 2
    with RunStore(run.run_dir) as store:
        for pair in pairs:
            record = store.candidate(pair["source"])
            assert record is not None and record.status == "valid" and record.parents
            assert (record.prompt, record.completion) == (pair["prompt"], pair["completion"])
    lm = build_language_model(ModelConfig(name=str(out)))
    result = lm.generate_sync(  # type: ignore[attr-defined]
        [GenerationRequest(prompt=pairs[0]["prompt"], max_tokens=8, seed=1)]
    )
    assert result[0].generations[0].completion_tokens > 0


def completion_margin(model_dir: Path, preference: Preference) -> float:
    """log p(chosen | prompt) - log p(rejected | prompt) under the model in `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def logprob(completion: str) -> float:
        prompt = tokenizer(preference.prompt)["input_ids"]
        ids = torch.tensor([prompt + tokenizer(completion)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        picked = logits[torch.arange(len(targets)), targets]
        return float(picked[len(prompt) - 1 :].sum())

    return logprob(preference.chosen) - logprob(preference.rejected)


@pytest.mark.slow
def test_dpo_raises_the_chosen_over_the_rejected(tmp_path: Path, embedded_model_dir: Path) -> None:
    """Two DPO steps (LoRA, merged) on preference pairs move the model towards the chosen
    completions and away from the rejected ones, relative to the base model. Each batch of
    2 is accumulated over two passes of 1 (`micro_batch_size`): still 2 optimizer steps."""
    preferences = [
        Preference("def area(r):\n", "    return 3.14159 * r * r\n", "    return area(r)\n"),
        Preference("def double(x):\n", "    return 2 * x\n", "    return double(x)\n"),
    ]
    result = finetune(
        embedded_model_dir,
        preferences,
        tmp_path / "dpo",
        FinetuneSettings(
            objective="dpo",
            epochs=2,
            batch_size=2,
            micro_batch_size=1,
            learning_rate=1e-3,
            convert=False,
        ),
    )
    assert result.steps == 2 and result.examples == 2
    for preference in preferences:
        before = completion_margin(embedded_model_dir, preference)
        assert completion_margin(result.model_dir, preference) > before
    with pytest.raises(FinetuneError, match="objective dpo trains on Preference pairs"):
        finetune(embedded_model_dir, [Example("a", "b")], tmp_path / "x",
                 FinetuneSettings(objective="dpo"))  # fmt: skip
