"""The Python API: `run(config)` and `resume(run_dir)`.

A run directory is created in this order, under an exclusive lock (`RunLock`): the domain
is built and the model loaded first (bad inputs fail before anything is written), then
``config.toml`` is written, then ``run.sqlite`` is created. A folder with a config but no
store is a run that committed nothing yet: `resume` starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from openended.config import Config, load_config
from openended.domains import domain_class, register_domain
from openended.domains.base import ClosableDomain, Domain, ModelUsingDomain
from openended.engine.search import Search, SearchOutcome
from openended.executor import Evaluator, LocalEvaluator
from openended.lm.base import ClosableModel, LanguageModel
from openended.run_dir import RunDir
from openended.store.lock import RunLock
from openended.store.run_store import BatchMetrics, RunStore, StoreError, write_config

RESUMABLE = ("budget", "model", "executor")
"""What a resume may change: the rest defines the problem the stored candidates solved."""


T = TypeVar("T")


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


class RunInterrupted(Exception):
    """A second interrupt stopped the run at once; committed batches are kept."""

    def __init__(self, run_dir: Path, signal_name: str) -> None:
        super().__init__(f"{run_dir}: stopped by {signal_name}")
        self.run_dir = run_dir
        self.signal_name = signal_name


def build_domain(config: Config) -> Domain:
    cls = domain_class(config.domain_name)
    return cls(config.domain_options())  # type: ignore[call-arg]


DomainGiven = type[Domain] | Domain | None
"""A domain passed to `run` / `resume` directly: a class (built from the config's
``[domain]`` table like an installed one) or an instance (used as it is; the stored
config records the ``[domain]`` table given, not the instance's state)."""


def _with_domain(domain: DomainGiven, overrides: Sequence[str]) -> list[str]:
    """Register a domain given directly and name it in the config (unless the overrides
    name a domain already)."""
    if domain is None:
        return list(overrides)
    cls = domain if isinstance(domain, type) else type(domain)
    register_domain(cls)
    if any(o.split("=", 1)[0].strip() == "domain.name" for o in overrides):
        return list(overrides)
    return [f"domain.name={json.dumps(cls.name)}", *overrides]


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


# -- run directories -----------------------------------------------------------------------


def _new_run_dir(config: Config) -> Path:
    name = config.name or f"{config.domain_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(config.runs_dir) / name


def build_evaluator(config: Config, domain: Domain) -> Evaluator:
    """The evaluator that `[executor] kind` names (Ray's only imported when asked for)."""
    if config.executor.kind == "ray":
        from openended.executor.ray_backend import RayEvaluator

        return RayEvaluator(config, domain)
    return LocalEvaluator(domain)


def _check_free(run_dir: Path) -> None:
    state = RunDir(run_dir).state
    if state in ("run", "created"):
        raise StoreError(
            f"{run_dir} already holds a run; continue it with `openended resume {run_dir}`, "
            "or choose another name"
        )
    if state == "store only":
        raise StoreError(
            f"{run_dir} holds a run store but no config.toml (an older openended was stopped "
            "while creating it); remove the folder or choose another name"
        )


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    flat_old, flat_new = (
        _flatten(old.model_dump(mode="json")),
        _flatten(new.model_dump(mode="json")),
    )
    return sorted(
        k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k)
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# -- running -------------------------------------------------------------------------------


def _execute(
    config: Config,
    run_dir: Path,
    *,
    lm: LanguageModel | None,
    on_batch: Callable[[BatchMetrics], None] | None,
    create: bool,
    handle_signals: bool,
    on_event: Callable[[str], None] | None,
    locked: bool = False,
    domain: Domain | None = None,
) -> RunResult:
    """Build the domain (unless one is given: the caller's, not closed here) and the
    model, then (under the run's lock, unless the caller holds it: `locked`) create or
    open the store and search. `create`: a new run (the folder must be free)."""
    if create:
        _check_free(run_dir)  # before anything is loaded or written
    owned = domain is None
    domain = build_domain(config) if domain is None else domain
    evaluator: Evaluator | None = None
    built_lm: LanguageModel | None = None
    try:
        evaluator = build_evaluator(config, domain)
        if lm is None:
            lm = built_lm = _language_model(config)
        elif config.model.cache:
            from openended.lm.factory import with_cache

            lm = with_cache(lm, config.model)
        if isinstance(domain, ModelUsingDomain):
            domain.use_language_model(lm)
        with contextlib.nullcontext() if locked else RunLock(run_dir):
            if create:
                _check_free(run_dir)
                write_config(run_dir, config.to_toml())
            new_store = RunDir(run_dir).state == "created"
            with RunStore(run_dir, create=new_store) as store:
                if new_store:
                    store.set_meta("model_id", lm.model_id)
                search = Search(
                    config=config,
                    domain=domain,
                    lm=lm,
                    store=store,
                    on_batch=on_batch,
                    evaluator=evaluator,
                )
                outcome = _run_search(search, run_dir, handle_signals, on_event)
                store.set_meta("model_id", lm.model_id)  # a server's model name is known by now
                archive = search.archive.to_frame()
    finally:
        if evaluator is not None:
            evaluator.close()
        if isinstance(built_lm, ClosableModel) and not asyncio.iscoroutinefunction(built_lm.close):
            built_lm.close()  # Ray's model actors, a cache file
        if owned and isinstance(domain, ClosableDomain):
            domain.close()
    return RunResult(run_dir=run_dir, config=config, outcome=outcome, archive=archive)


def _run_search(
    search: Search,
    run_dir: Path,
    handle_signals: bool,
    on_event: Callable[[str], None] | None,
) -> SearchOutcome:
    """Run the search's event loop. With `handle_signals`, a first SIGINT or SIGTERM
    finishes the batches in flight (said at once through `on_event`), a second stops now
    (`RunInterrupted`)."""
    say = on_event or (lambda line: None)
    received: list[str] = []

    async def main() -> SearchOutcome:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def interrupted(name: str) -> None:
            received.append(name)
            if len(received) > 1:
                say(f"{name} again: stopping now; batches not yet committed are dropped")
                task.cancel()
                return
            batches = ", ".join(map(str, search.in_flight)) or "none"
            search.request_stop(f"interrupted ({name})")
            say(
                f"{name}: finishing the batches in flight ({batches}) and stopping; "
                f"{name} again to stop now"
            )

        signals = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"} if handle_signals else {}
        for number, name in signals.items():
            loop.add_signal_handler(number, interrupted, name)
        try:
            return await search.run()
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

    try:
        return _run_loop(main)  # (never on a running loop: see `off_the_loop`)
    except asyncio.CancelledError:
        raise RunInterrupted(run_dir, received[-1] if received else "a signal") from None


def off_the_loop(function: Callable[..., T]) -> Callable[..., T]:
    """Where this thread already runs an event loop (a notebook), call `function` in a
    helper thread and wait for it: the domain may run a loop of its own while it is built
    (the program domain scores its seed), and the search runs its own."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = function(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target, name="openended-run")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return wrapper


def _run_loop(main: Callable[[], Any]) -> Any:
    """`asyncio.run`, except that a cancelled run does not wait for executor threads."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
        return result
    finally:
        try:
            remaining = asyncio.all_tasks(loop)
            for task in remaining:
                task.cancel()
            if remaining:
                loop.run_until_complete(asyncio.gather(*remaining, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # after a cancellation: the executor is shut down without waiting


@off_the_loop
def run(
    config: Config | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    lm: LanguageModel | None = None,
    run_dir: Path | None = None,
    on_batch: Callable[[BatchMetrics], None] | None = None,
    handle_signals: bool = False,
    on_event: Callable[[str], None] | None = None,
    domain: DomainGiven = None,
) -> RunResult:
    """Run a search from a config (a `Config`, a dict, a TOML path, or None for the
    default symbolic-regression search) in a new run directory. Works inside a running
    event loop too (a notebook): the search then runs in a helper thread (or use `arun`).

    Args:
        config: the configuration.
        overrides: ``KEY=VALUE`` strings applied on top.
        domain: a Domain class or instance to search with, without an installed entry
            point (the config's ``domain.name`` becomes its name; its ``[domain]`` table
            configures a class).
        lm: a language model to use instead of the one the config names.
        run_dir: where to write (default: ``<runs_dir>/<name>``).
        on_batch: called with metrics after each batch.
        handle_signals: a first Ctrl-C / SIGTERM finishes the batches in flight, a second
            stops at once (`RunInterrupted`); for the command line.
        on_event: called with a line when a signal arrives.
    """
    resolved = load_config(config, _with_domain(domain, overrides))
    directory = Path(run_dir) if run_dir is not None else _new_run_dir(resolved)
    return _execute(
        resolved,
        directory,
        lm=lm,
        on_batch=on_batch,
        create=True,
        handle_signals=handle_signals and _main_thread_without_loop(),
        on_event=on_event,
        domain=None if domain is None or isinstance(domain, type) else domain,
    )


async def arun(
    config: Config | Mapping[str, Any] | str | Path | None = None, **kwargs: Any
) -> RunResult:
    """`run`, awaitable: the search runs in a worker thread with its own event loop, so
    the caller's loop (a notebook's) stays free while it runs."""
    return await asyncio.to_thread(run, config, **kwargs)


async def aresume(run_dir: Path | str, **kwargs: Any) -> RunResult:
    """`resume`, awaitable (see `arun`)."""
    return await asyncio.to_thread(resume, run_dir, **kwargs)


@off_the_loop
def resume(
    run_dir: Path | str,
    *,
    overrides: Sequence[str] = (),
    lm: LanguageModel | None = None,
    on_batch: Callable[[BatchMetrics], None] | None = None,
    fork: Path | str | None = None,
    handle_signals: bool = False,
    on_event: Callable[[str], None] | None = None,
    domain: DomainGiven = None,
) -> RunResult:
    """Continue a run: rebuild the archive from its store and search until the budget
    (possibly raised with `overrides`, e.g. ``budget.max_evaluations=800``) is spent.
    A run made with a domain given directly needs it again (`domain`).

    Only ``budget.*``, ``model.*`` and ``executor.*`` may change: the rest defines the
    problem the stored candidates were scored on, and a change is refused with the list
    of keys. With `fork` (a new run directory), the run is copied there first and the
    copy continues with any overrides; the original is left as it was."""
    directory = Path(run_dir)
    if domain is not None:
        register_domain(domain if isinstance(domain, type) else type(domain))
    if fork is not None:
        directory = fork_run(directory, Path(fork), overrides)
        overrides = ()
    stored = RunDir(directory).config()
    with RunLock(directory):
        if RunDir(directory).state == "run":
            with RunStore(directory):  # refuses a damaged store before anything is loaded
                pass
        config = RunDir(directory).config(overrides)
        refused = [k for k in changed_keys(stored, config) if not k.startswith(RESUMABLE)]
        if refused:
            raise StoreError(
                f"{directory}: a resume cannot change {', '.join(refused)} (the stored "
                "candidates were scored with the old values); only budget.*, model.* and "
                f"executor.* may change. To continue with new values in a copy: "
                f"openended resume {directory} --fork NEW_NAME --set ..."
            )
        if config != stored:
            write_config(directory, config.to_toml())
        return _execute(
            config,
            directory,
            lm=lm,
            on_batch=on_batch,
            create=False,
            handle_signals=handle_signals and _main_thread_without_loop(),
            on_event=on_event,
            locked=True,
            domain=None if domain is None or isinstance(domain, type) else domain,
        )


def fork_run(run_dir: Path, target: Path, overrides: Sequence[str] = ()) -> Path:
    """Copy a run (a consistent snapshot of its store, and its config with `overrides`)
    into `target`, a new run directory; returns `target`."""
    if not target.is_absolute() and target.parent == Path("."):
        target = Path(run_dir).parent / target
    config = RunDir(run_dir).config(overrides)
    _check_free(target)
    with RunLock(target):
        _check_free(target)
        write_config(target, config.model_copy(update={"name": target.name}).to_toml())
        if RunDir(run_dir).state == "run":
            with RunStore(run_dir) as source:
                try:
                    with sqlite3.connect(target / RunStore.DB_NAME) as copy:
                        source.db.backup(copy)
                    copy.close()
                except (sqlite3.Error, OSError) as exc:
                    shutil.rmtree(target, ignore_errors=True)
                    raise StoreError(f"{target}: could not copy the run: {exc}") from None
    return target


def _main_thread_without_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return threading.current_thread() is threading.main_thread()
    return False


__all__ = [
    "RunInterrupted",
    "RunResult",
    "aresume",
    "arun",
    "build_domain",
    "changed_keys",
    "fork_run",
    "resume",
    "run",
]
