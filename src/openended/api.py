"""The Python API: `run(config)` and `resume(run_dir)`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from openended.config import Config, load_config
from openended.domains import domain_class
from openended.domains.base import Domain
from openended.engine.search import Search, SearchOutcome
from openended.executor import Evaluator, build_evaluator
from openended.lm.base import LanguageModel
from openended.store.run_store import BatchMetrics, RunStore, StoreError


@dataclass
class RunResult:
    """What a run produced."""

    run_dir: Path
    config: Config
    outcome: SearchOutcome
    archive: pd.DataFrame
    """The elites: candidate_id, genome, fitness and one column per descriptor axis."""

    @property
    def best(self) -> pd.Series | None:
        return None if self.archive.empty else self.archive.iloc[0]

    @property
    def metrics(self) -> pd.DataFrame:
        with RunStore(self.run_dir) as store:
            return store.frame("batches")


def build_domain(config: Config) -> Domain:
    cls = domain_class(config.domain_name)
    return cls(config.domain_options())  # type: ignore[call-arg]


def _language_model(config: Config) -> LanguageModel:
    """The run's model: in this process, or hosted by Ray actors (`executor.lm_actors`)."""
    executor = config.executor
    if executor.kind == "ray" and executor.lm_actors > 0 and not config.model.is_remote:
        from openended.executor.ray_backend import RayActorLM

        hosted = RayActorLM(
            config.model,
            actors=executor.lm_actors,
            cpus=executor.lm_actor_cpus,
            address=executor.address,
            seed=config.seed,
        )
        if config.model.cache:
            from openended.lm.factory import with_cache

            return with_cache(hosted, config.model)
        return hosted
    from openended.lm.factory import build_language_model

    return build_language_model(config.model, seed=config.seed)


def _new_run_dir(config: Config) -> Path:
    name = config.name or f"{config.domain_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.runs_dir) / name
    if (run_dir / RunStore.DB_NAME).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; use `openended resume {run_dir}` or another name"
        )
    return run_dir


def _execute(
    config: Config,
    run_dir: Path,
    *,
    lm: LanguageModel | None,
    on_batch: Callable[[BatchMetrics], None] | None,
    create: bool,
) -> RunResult:
    domain = build_domain(config)
    evaluator: Evaluator | None = None
    built_lm: LanguageModel | None = None
    try:
        evaluator = build_evaluator(config, domain)
        if lm is None:
            lm = built_lm = _language_model(config)
        elif config.model.cache:
            from openended.lm.factory import with_cache

            lm = with_cache(lm, config.model)
        use_language_model = getattr(domain, "use_language_model", None)
        if use_language_model is not None:
            use_language_model(lm)
        with RunStore(run_dir, create=create) as store:
            if create:
                store.write_config(config.to_toml())
                store.set_meta("model_id", lm.model_id)
            search = Search(
                config=config,
                domain=domain,
                lm=lm,
                store=store,
                on_batch=on_batch,
                evaluator=evaluator,
            )
            outcome = asyncio.run(search.run())
            store.set_meta("model_id", lm.model_id)  # a server's model name is known by now
            archive = search.archive.to_frame()
    finally:
        if evaluator is not None:
            evaluator.close()
        close_lm = getattr(built_lm, "close", None)  # Ray's model actors, a cache file
        if close_lm is not None and not asyncio.iscoroutinefunction(close_lm):
            close_lm()
        close = getattr(domain, "close", None)
        if close is not None:
            close()
    return RunResult(run_dir=run_dir, config=config, outcome=outcome, archive=archive)


def run(
    config: Config | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    lm: LanguageModel | None = None,
    run_dir: Path | None = None,
    on_batch: Callable[[BatchMetrics], None] | None = None,
) -> RunResult:
    """Run a search from a config (a `Config`, a dict, a TOML path, or None for the
    default symbolic-regression search) in a new run directory.

    Args:
        config: the configuration.
        overrides: ``KEY=VALUE`` strings applied on top.
        lm: a language model to use instead of the one the config names.
        run_dir: where to write (default: ``<runs_dir>/<name>``).
        on_batch: called with metrics after each batch.
    """
    resolved = load_config(config, overrides)
    directory = Path(run_dir) if run_dir is not None else _new_run_dir(resolved)
    if (directory / RunStore.DB_NAME).exists():
        raise FileExistsError(f"{directory} already holds a run; resume it instead")
    return _execute(resolved, directory, lm=lm, on_batch=on_batch, create=True)


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> Config:
    """The config a run was started with (from its ``config.toml``), plus overrides."""
    path = Path(run_dir) / RunStore.CONFIG_NAME
    if not path.is_file():
        raise StoreError(f"{run_dir} is not an openended run directory (no {path.name})")
    return load_config(path, overrides)


def resume(
    run_dir: Path | str,
    *,
    overrides: Sequence[str] = (),
    lm: LanguageModel | None = None,
    on_batch: Callable[[BatchMetrics], None] | None = None,
) -> RunResult:
    """Continue a run: rebuild the archive from its store and search until the budget
    (possibly raised with `overrides`, e.g. ``budget.max_evaluations=800``) is spent."""
    directory = Path(run_dir)
    with RunStore(directory) as store:  # raises StoreError when it is not a run
        config = load_run_config(directory, overrides)
        if overrides:
            store.write_config(config.to_toml())
    return _execute(config, directory, lm=lm, on_batch=on_batch, create=False)
