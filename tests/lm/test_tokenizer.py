"""The tokenizer without transformers gives transformers' tokens, text and chat prompts on
the embedded model, and keeps torch out of a CTranslate2 process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openended.lm.tokenizer import FastTokenizer, generation_eos_ids

TEXTS = [
    "def f(x):\n    return x + 1\n",
    'def sat(s: str, n=7):\n    """Find a string with n vowels."""\n    return len(s) == n',
    "  indented\n\ttabs\t and  double  spaces \n\n",
    "ünïcödé — “quotes” 数学 🙂 and a long-ish sentence, with punctuation: yes! no? maybe.",
    "<|im_start|>user\nHi<|im_end|>\n",
    "",
]
CHATS = [
    [{"role": "user", "content": "Write a haiku."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3 + 3?"},
    ],
]


@pytest.mark.slow
def test_same_tokens_text_and_chat_prompts_as_transformers(embedded_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(embedded_model_dir)
    light = FastTokenizer(embedded_model_dir)
    for text in TEXTS:
        ids = reference(text, add_special_tokens=False)["input_ids"]
        assert light(text, add_special_tokens=False)["input_ids"] == ids
        assert light.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
        for skip in (True, False):
            assert light.decode(ids, skip_special_tokens=skip) == reference.decode(
                ids, skip_special_tokens=skip
            )
    rng = np.random.default_rng(0)
    for _ in range(50):  # arbitrary id sequences, special tokens among them
        ids = [int(i) for i in rng.integers(0, reference.vocab_size, 12)] + [2, 0, 1]
        rng.shuffle(ids)
        for skip in (True, False):
            assert light.decode(ids, skip_special_tokens=skip) == reference.decode(
                ids, skip_special_tokens=skip
            )
    for chat in CHATS:
        for generation_prompt in (True, False):
            assert light.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=generation_prompt
            ) == reference.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=generation_prompt
            )
    assert light.eos_token_id == reference.eos_token_id
    expected = json.loads((embedded_model_dir / "generation_config.json").read_text())
    assert generation_eos_ids(embedded_model_dir) == {expected["eos_token_id"]}


@pytest.mark.slow
def test_a_ctranslate2_process_imports_neither_torch_nor_transformers(
    embedded_model_dir: Path,
) -> None:
    script = (
        "import sys, asyncio\n"
        "from openended.lm.ctranslate import CTranslate2LM\n"
        "from openended.lm.base import GenerationRequest\n"
        f"lm = CTranslate2LM({str(embedded_model_dir)!r}, threads=1)\n"
        "request = GenerationRequest(messages=[{'role': 'user', 'content': 'Hi'}], n=1,"
        " max_tokens=4, seed=0)\n"
        "asyncio.run(lm.generate([request]))\n"
        "heavy = ('torch', 'transformers', 'ribs', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
