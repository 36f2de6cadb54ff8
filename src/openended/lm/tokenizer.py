"""A model folder's tokenizer and chat template without transformers.

`transformers.AutoTokenizer` imports torch: 250 MB of resident memory before the tokenizer
loads, and seconds of start-up, in processes that decode with CTranslate2 and never touch a
tensor. For a folder with a fast tokenizer (``tokenizer.json``) this class gives the same
tokens, text and chat prompts from the `tokenizers` library and jinja2, with the few methods
the CTranslate2 backend uses; `load_tokenizer` falls back to transformers otherwise, and
for chat templates that use transformers' ``{% generation %}`` extension.
The chat template is rendered as transformers renders it (a sandboxed jinja2 environment
with ``trim_blocks``, ``lstrip_blocks``, loop controls, ``tojson`` and
``raise_exception``), from ``chat_template.jinja`` or ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


class TemplateError(ValueError):
    """A chat template raised (``raise_exception``) or is missing."""


def _token_text(value: Any) -> str | None:
    """A special token as the config writes it: a string or ``{"content": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


class FastTokenizer:
    """The `tokenizers` tokenizer of a model folder, with transformers' calling conventions
    for what the CTranslate2 backend needs (``__call__``, ``decode``,
    ``convert_ids_to_tokens``, ``apply_chat_template``, ``eos_token_id``)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.special_tokens = {
            name: text for name in SPECIAL_TOKENS if (text := _token_text(config.get(name)))
        }
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces"))
        template_file = folder / "chat_template.jinja"
        template = (
            template_file.read_text() if template_file.is_file() else config.get("chat_template")
        )
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        self.chat_template: str | None = template if isinstance(template, str) else None
        self._compiled: Any = None

    @property
    def eos_token_id(self) -> int | None:
        eos = self.special_tokens.get("eos_token")
        return None if eos is None else self._tokenizer.token_to_id(eos)

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": list(encoding.ids)}

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return _clean_up(text) if self.clean_up_tokenization_spaces else text

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
    ) -> str:
        if tokenize:
            raise NotImplementedError("apply_chat_template(tokenize=True): encode the text")
        if self.chat_template is None:
            raise TemplateError("this model folder has no chat template")
        if self._compiled is None:
            self._compiled = _environment().from_string(self.chat_template)
        return str(
            self._compiled.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                tools=None,
                documents=None,
                **self.special_tokens,
            )
        )


def _environment() -> Any:
    """The jinja2 environment transformers renders chat templates in."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment


def _clean_up(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and
    contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def load_tokenizer(folder: str | Path) -> Any:
    """`FastTokenizer` for a folder with ``tokenizer.json``, else transformers'
    `AutoTokenizer` (slow tokenizers, remote code, templates with ``{% generation %}``)."""
    if (Path(folder) / "tokenizer.json").is_file():
        fast = FastTokenizer(folder)
        if "{% generation" not in (fast.chat_template or ""):
            return fast
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def generation_eos_ids(folder: str | Path) -> set[int]:
    """The end-of-sequence ids of ``generation_config.json`` (none when absent)."""
    path = Path(folder) / "generation_config.json"
    try:
        configured = json.loads(path.read_text()).get("eos_token_id")
    except (OSError, ValueError):
        return set()
    if configured is None:
        return set()
    return {int(i) for i in (configured if isinstance(configured, list) else [configured])}
