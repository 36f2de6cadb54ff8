"""Language models: the protocol, the embedded default, local transformers models."""

from openended.lm.base import Generation, GenerationRequest, GenerationResult, LanguageModel
from openended.lm.scripted import ScriptedLM

__all__ = ["Generation", "GenerationRequest", "GenerationResult", "LanguageModel", "ScriptedLM"]
