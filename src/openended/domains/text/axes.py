"""User-defined axes of diversity for text: ordinal levels or categorical labels.

An axes file (TOML) declares the generation task, the quality criterion and the axes:

    task = "questions that test understanding of photosynthesis"
    quality = "a clear, self-contained question with one correct answer"

    [[axes]]
    name = "difficulty"
    description = "how hard the question is for a high-school student"
    levels = ["easy", "medium", "hard"]          # ordinal

    [[axes]]
    name = "topic"
    description = "what part of photosynthesis it is about"
    labels = ["light reactions", "Calvin cycle", "leaf structure"]   # categorical
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openended.errors import UserError
from openended.textfiles import read_text


class AxesFileError(UserError, ValueError):
    """An axes file that cannot be used; the message names the file and the field."""


class TextAxis(BaseModel):
    """One axis: a name, what it measures, and its bins."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    levels: list[str] | None = Field(None, description="ordinal bins, lowest first")
    labels: list[str] | None = Field(None, description="categorical bins")

    @model_validator(mode="after")
    def _one_kind(self) -> TextAxis:
        if (self.levels is None) == (self.labels is None):
            raise ValueError("give exactly one of 'levels' (ordinal) or 'labels' (categorical)")
        bins = self.bins
        if len(bins) < 2:
            raise ValueError("an axis needs at least 2 bins")
        if len(bins) > 9:
            raise ValueError("an axis has at most 9 bins (options are numbered 1-9 for judges)")
        if len(set(bins)) != len(bins):
            raise ValueError("bins must be distinct")
        return self

    @property
    def bins(self) -> list[str]:
        return list(self.levels if self.levels is not None else self.labels or [])

    @property
    def ordinal(self) -> bool:
        return self.levels is not None


class TextTask(BaseModel):
    """What to generate, how to judge quality, and the axes."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(
        min_length=1, description="what the texts are, e.g. 'questions that test ...'"
    )
    quality: str = Field(
        "well written, specific and on task", description="the quality criterion for judges"
    )
    axes: list[TextAxis] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _distinct_names(self) -> TextTask:
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"axis names must be distinct: {names}")
        return self


def parse_task(data: Any, *, source: str) -> TextTask:
    """A `TextTask` from a dict; errors name `source` and the field (``axes[1].levels``)."""
    try:
        return TextTask.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
            ).lstrip(".")
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where or 'file'}: {message}")
        raise AxesFileError(f"{source}: " + "; ".join(problems)) from None


def load_task(path: str | Path) -> TextTask:
    """Read an axes file (TOML)."""
    path = Path(path)
    text = read_text(path, what="axes file", error=AxesFileError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AxesFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_task(data, source=str(path))
