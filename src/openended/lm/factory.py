"""Build a language model from the ``[model]`` table of a config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from openended.config import ModelConfig
from openended.errors import UserError
from openended.lm.base import LanguageModel

if TYPE_CHECKING:
    from openended.lm.local import TransformersLM


class ModelNotFoundError(UserError, ValueError):
    """`model.name` names neither the embedded model nor a local model directory."""


def build_language_model(config: ModelConfig, *, seed: int | None = None) -> LanguageModel:
    """The model the ``[model]`` table names, wrapped in the completion cache when
    ``cache = true``."""
    lm = _build(config, seed=seed)
    return with_cache(lm, config) if config.cache else lm


def with_cache(lm: LanguageModel, config: ModelConfig) -> LanguageModel:
    """`lm` behind the SQLite completion cache at ``cache_path`` (default: user cache dir)."""
    from openended.lm.cache import cached
    from openended.lm.embedded import cache_root

    return cached(lm, config.cache_path or cache_root() / "completions.sqlite")


def _build(config: ModelConfig, *, seed: int | None) -> LanguageModel:
    """``"embedded"`` -> the embedded SmolLM2; ``http(s)://...`` -> an OpenAI-compatible
    server; a directory or HF id -> a local transformers model."""
    if config.is_remote:
        from openended.lm.openai_client import OpenAICompatibleLM

        return OpenAICompatibleLM(
            config.name,
            model=config.model_name,
            api_key_env=config.api_key_env,
            endpoint=config.endpoint,
            max_concurrency=config.max_concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            seed=seed,
        )
    if config.local_backend() == "ctranslate2":
        return _ctranslate2_model(config)
    options: dict[str, object] = dict(
        max_batch_size=config.max_batch_size,
        max_batch_tokens=config.max_batch_tokens,
        max_batch_mib=config.max_batch_mib,
        dtype=config.dtype,
        device=config.device,
        threads=config.threads,
    )
    if config.speculative == "draft-model":
        assert config.draft_model is not None  # ModelConfig checks
        draft = _local_model(config.draft_model, "model.draft_model", options)
        options["draft_model"] = draft
    return _local_model(config.name, "model.name", {**options, "speculative": config.speculative})


def _ctranslate2_model(config: ModelConfig) -> LanguageModel:
    from openended.lm.ctranslate import CTranslate2LM

    options: dict[str, object] = dict(
        compute_type=config.compute_type,
        threads=config.threads,
        top_p_candidates=config.top_p_candidates,
        max_batch_size=config.max_batch_size,
        max_batch_tokens=config.max_batch_tokens,
        max_batch_mib=config.max_batch_mib,
    )
    if config.name == "embedded":
        return CTranslate2LM.embedded(**options)
    path = local_folder(config.name, "model.name")
    return CTranslate2LM(path, model_id=config.name, **options)  # type: ignore[arg-type]


def local_folder(name: str, key: str) -> Path:
    """A local model folder, or the local Hugging Face cache's copy of a model id (no
    downloads at run time)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{key}: {path} has no config.json (not a model folder)")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        raise ModelNotFoundError(
            f"{key}: {name!r} is not 'embedded', not a local model folder, and not a "
            "model in the local Hugging Face cache"
        ) from None


def _local_model(name: str, key: str, options: dict[str, object]) -> TransformersLM:
    """'embedded', a local model folder, or a model id in the local Hugging Face cache."""
    from openended.lm.local import TransformersLM

    if name == "embedded":
        return TransformersLM.embedded(**options)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{key}: {path} has no config.json (not a model folder)")
        return TransformersLM(path, **options)  # type: ignore[arg-type]
    # a Hugging Face id: only models already in the local HF cache (no downloads at run time)
    try:
        return TransformersLM(name, model_id=name, **options)  # type: ignore[arg-type]
    except OSError as exc:
        raise ModelNotFoundError(
            f"{key}: {name!r} is not 'embedded', not a local model folder, and not a "
            f"model in the local Hugging Face cache ({exc.__class__.__name__})"
        ) from None
