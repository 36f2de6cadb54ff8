"""RunDir: the one way to read a run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import openended
from openended.engine.restore import archive_from_store
from openended.lm.scripted import ScriptedLM
from openended.run_dir import RunDir
from openended.store import RunStore, StoreError


def test_a_finished_run_reads_back_config_store_archive_and_elites(
    small_config: Callable[..., dict[str, Any]], scripted_lm: ScriptedLM
) -> None:
    result = openended.run(openended.Config.model_validate(small_config()), lm=scripted_lm)
    run = RunDir(result.run_dir)
    assert run.state == "run"
    assert run.config() == result.config
    assert run.config(["budget.max_evaluations=99"]).budget.max_evaluations == 99
    elites = set(result.archive["candidate_id"])
    assert run.elite_ids() == elites and len(elites) > 1
    with run.store() as store:
        assert run.elite_ids(store) == elites
        assert run.archive(store).stats() == archive_from_store(store).stats()


def test_states_and_the_errors_that_name_them(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "nothing")
    assert run.state == "free"
    with pytest.raises(StoreError, match="not an openended run directory"):
        run.config()
    store_only = tmp_path / "store-only"
    RunStore(store_only, create=True).close()
    assert RunDir(store_only).state == "store only"
    with pytest.raises(StoreError, match=r"holds a run store but no config\.toml"):
        RunDir(store_only).config()
