"""Dense menu labels: every option a search's model was shown, evaluated in the real sandbox
with the run's own domain; the training answers name the best option whatever its letter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import openended
from openended.apps.training.finetune import FinetuneSettings
from openended.apps.training.menu_labels import label_menus, menu_examples, menu_options
from openended.apps.training.search_loop import (
    LABEL_ORDERS,
    LoopError,
    LoopSettings,
    SearchImproveLoop,
)
from openended.lm.scripted import ScriptedLM
from openended.operators.menu import LABELS
from tests.apps.training.test_search_loop import RecordingTrainer
from tests.operators.conftest import menu_run_config

pytestmark = pytest.mark.slow  # each option is a sandboxed evaluation with a refine scan


@pytest.fixture
def menu_run(tmp_path: Path) -> Path:
    config = menu_run_config(tmp_path, lm_calls=1)
    return openended.run(config, lm=ScriptedLM([" B.", " E"]), run_dir=tmp_path / "run").run_dir


def test_every_option_is_labelled_as_the_search_would_score_it(
    menu_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    labels = label_menus(menu_run, cache=tmp_path / "labels.json", log=lines.append)
    assert len(labels.menus) == 4 and lines
    for menu in labels.menus:
        assert menu.options == menu_options(menu.prompt) and len(menu.options) == 8
        assert len(menu.fitness) == 8 and menu.picked in (1, 4)
        # options are ranked by their fitted child's fitness, better than the parent only
        improving = menu.improving()
        values = [menu.fitness[i] for i in improving]
        assert values == sorted(values, reverse=True)
        assert all(v > menu.parent_fitness for v in values)  # type: ignore[operator]
    # the option the model picked is labelled as the search found it (same domain, refine)
    assert labels.agreement == (4, 4)
    distinct = len({(m.prompt, o) for m in labels.menus for o in m.options})
    assert labels.evaluations >= distinct  # each child: its evaluation and the refine scan
    assert sum(len(m.improving()) for m in labels.menus) > 0
    # a rerun reads the saved labels: no domain is built, nothing is evaluated again
    monkeypatch.setattr(openended.api, "build_domain", lambda config: pytest.fail("rebuilt"))
    again = label_menus(menu_run, cache=tmp_path / "labels.json", log=lines.append)
    assert [m.fitness for m in again.menus] == [m.fitness for m in labels.menus]
    assert again.evaluations == labels.evaluations


def test_each_menu_is_answered_with_its_best_option_in_every_order(menu_run: Path) -> None:
    labels = label_menus(menu_run, log=lambda line: None)
    examples = menu_examples(labels, orders=4, seed=0)
    answerable = [m for m in labels.menus if m.improving()]
    assert len(examples) == 4 * len(answerable) > 0
    letters = set()
    for k, example in enumerate(examples):
        menu = answerable[k // 4]
        letter = re.fullmatch(r" ([A-Z])\.", example.completion).group(1)  # type: ignore[union-attr]
        letters.add(letter)
        shown = menu_options(example.prompt)
        assert sorted(shown) == sorted(menu.options)  # the same options, reordered
        assert shown[LABELS.index(letter)] == menu.options[menu.improving()[0]]
        assert example.prompt.split("# Options")[0] == menu.prompt.split("# Options")[0]
        if k % 4 == 0:
            assert example.prompt == menu.prompt  # its own order first
    assert len(letters) > 1  # the answer's position varies: only content predicts it


def test_the_loop_trains_on_the_labelled_menus_and_counts_their_evaluations(
    tmp_path: Path,
) -> None:
    config = menu_run_config(tmp_path, lm_calls=1)
    path = tmp_path / "run.toml"
    path.write_text(openended.config.load_config(config).to_toml())
    trainer = RecordingTrainer()
    settings = LoopSettings(
        config=path, out_dir=tmp_path / "loop", completions=4, select="labelled", min_pairs=1
    )
    loop = SearchImproveLoop(
        settings,
        log=lambda line: None,
        language_model=lambda name: ScriptedLM([" B.", " E"]),
        trainer=trainer,
    )
    loop.run()
    ((examples, _),) = trainer.calls
    step = loop.train_step(1)
    assert step is not None and step.evaluations > 0 and step.pairs == len(examples) > 0
    labels = label_menus(tmp_path / "loop" / "tuned" / "iter1", log=lambda line: None)
    assert examples == menu_examples(labels, orders=LABEL_ORDERS, seed=1)
    assert (tmp_path / "loop" / "tuned" / "labels1.json").is_file()
    with pytest.raises(LoopError, match="labelled"):
        SearchImproveLoop(
            LoopSettings(
                config=path,
                out_dir=tmp_path / "other",
                select="labelled",
                finetune=FinetuneSettings(objective="dpo"),
            )
        )


def test_a_text_menu_is_answered_with_its_best_options_text(menu_run: Path) -> None:
    labels = label_menus(menu_run, log=lambda line: None)
    for menu in labels.menus:
        menu.operator = "menu_text"
    examples = menu_examples(labels, orders=2, seed=0)
    answerable = [m for m in labels.menus if m.improving()]
    assert len(examples) == 2 * len(answerable) > 0
    for k, example in enumerate(examples):
        menu = answerable[k // 2]
        assert example.completion == f" {menu.options[menu.improving()[0]]}"
