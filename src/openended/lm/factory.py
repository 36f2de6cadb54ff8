"""Build a language model from the ``[model]`` table of a config."""

from __future__ import annotations

from pathlib import Path

from openended.config import ModelConfig
from openended.lm.base import LanguageModel


class ModelNotFoundError(ValueError):
    """`model.name` names neither the embedded model nor a local model directory."""


def build_language_model(config: ModelConfig) -> LanguageModel:
    """``"embedded"`` -> the embedded SmolLM2; a directory -> a local transformers model."""
    from openended.lm.local import TransformersLM

    options = dict(max_batch_size=config.max_batch_size, dtype=config.dtype, device=config.device)
    if config.name == "embedded":
        return TransformersLM.embedded(**options)
    path = Path(config.name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model.name: {path} has no config.json (not a model folder)")
        return TransformersLM(path, **options)  # type: ignore[arg-type]
    # a Hugging Face id: only models already in the local HF cache (no downloads at run time)
    try:
        return TransformersLM(config.name, model_id=config.name, **options)  # type: ignore[arg-type]
    except OSError as exc:
        raise ModelNotFoundError(
            f"model.name: {config.name!r} is not 'embedded', not a local model folder, and not a "
            f"model in the local Hugging Face cache ({exc.__class__.__name__})"
        ) from None
