"""Diverse text along user-defined axes (QDAIF)."""

from openended.domains.text.axes import AxesFileError, TextAxis, TextTask, load_task
from openended.domains.text.domain import TextConfig, TextDomain
from openended.domains.text.judge import Judge, Judgement

__all__ = [
    "AxesFileError",
    "Judge",
    "Judgement",
    "TextAxis",
    "TextConfig",
    "TextDomain",
    "TextTask",
    "load_task",
]
