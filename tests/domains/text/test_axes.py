"""Axes files: good ones load, bad ones name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from openended.domains.text.axes import AxesFileError, load_task

GOOD = """
task = "questions about photosynthesis"
quality = "clear and answerable"

[[axes]]
name = "difficulty"
description = "how hard it is"
levels = ["easy", "hard"]

[[axes]]
name = "topic"
description = "what it is about"
labels = ["light reactions", "Calvin cycle", "leaves"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "axes.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, GOOD))
    assert [a.name for a in task.axes] == ["difficulty", "topic"]
    assert task.axes[0].ordinal and not task.axes[1].ordinal
    assert task.axes[1].bins == ["light reactions", "Calvin cycle", "leaves"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('levels = ["easy", "hard"]', 'levels = ["easy"]'),
            "axes[0]: an axis needs at least 2 bins",
        ),
        (('levels = ["easy", "hard"]', 'levels = ["a", "a"]'), "axes[0]: bins must be distinct"),
        (
            ('labels = ["light reactions", "Calvin cycle", "leaves"]', ""),
            "axes[1]: give exactly one of 'levels'",
        ),
        (
            ('levels = ["easy", "hard"]', 'levels = ["easy", "hard"]\nlabels = ["x", "y"]'),
            "axes[0]: give exactly one",
        ),
        (('description = "how hard it is"', ""), "axes[0].description: Field required"),
        (('name = "topic"', 'name = "difficulty"'), "axis names must be distinct"),
        (('task = "questions about photosynthesis"', ""), "task: Field required"),
        (('quality = "clear and answerable"', 'qualty = "x"'), "qualty: Extra inputs"),
        (
            (
                'levels = ["easy", "hard"]',
                "levels = [" + ", ".join(f'"l{i}"' for i in range(10)) + "]",
            ),
            "at most 9 bins",
        ),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(AxesFileError) as info:
        load_task(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AxesFileError, match="not valid TOML"):
        load_task(write(tmp_path, "task = "))
    with pytest.raises(AxesFileError, match=r"nope\.toml: no such axes file"):
        load_task(tmp_path / "nope.toml")
