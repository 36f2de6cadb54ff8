"""The one way to read a run directory: its config, its store, its archive and elites.

A run directory holds ``config.toml`` (the resolved configuration) and ``run.sqlite``
(every candidate, `RunStore`); the archive is not stored but rebuilt from the candidates
(`archive_from_store`), exactly as a resume rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from openended.archive import Archive
from openended.config import Config, load_config
from openended.engine.restore import archive_from_store
from openended.store.run_store import RunStore, StoreError

RunState = Literal["free", "created", "run", "store only"]


class RunDir:
    """A run directory at `path` (nothing is opened until asked)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def state(self) -> RunState:
        """``"free"`` (nothing there), ``"created"`` (config, no store: nothing
        committed), ``"run"`` (config and store), ``"store only"`` (a store without its
        config)."""
        config = (self.path / RunStore.CONFIG_NAME).is_file()
        store = (self.path / RunStore.DB_NAME).exists()
        if config:
            return "run" if store else "created"
        return "store only" if store else "free"

    def config(self, overrides: Sequence[str] = ()) -> Config:
        """The config the run was started with (its ``config.toml``), plus `overrides`."""
        state = self.state
        if state == "free":
            raise StoreError(f"{self.path} is not an openended run directory (no config.toml)")
        if state == "store only":
            raise StoreError(
                f"{self.path} holds a run store but no config.toml (an older openended was "
                "stopped while creating it): it cannot be resumed; start a new run"
            )
        return load_config(self.path / RunStore.CONFIG_NAME, overrides)

    def store(self) -> RunStore:
        """The run's store, opened (use it as a context manager to close it)."""
        return RunStore(self.path)

    def archive(self, store: RunStore | None = None) -> Archive:
        """The archive as it stood after the last committed batch (read through `store`
        when one is open already)."""
        if store is not None:
            return archive_from_store(store)
        with self.store() as opened:
            return archive_from_store(opened)

    def elite_ids(self, store: RunStore | None = None) -> set[int]:
        """The ids of the candidates in the archive."""
        return {int(i) for i in self.archive(store).to_frame()["candidate_id"]}
