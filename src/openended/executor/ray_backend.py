"""Evaluations as Ray tasks, and local models as Ray actors.

Each task evaluates a chunk of genomes with the domain built from the run's ``[domain]``
table on the worker (cached per worker process, so its sandbox pool stays warm), i.e. the
sandbox runs on the worker's node. A task whose worker dies is retried by Ray
(`max_retries`) on any live worker; the driver receives each chunk's evaluations once,
and only the driver writes the store, so nothing is lost or counted twice. Domains that
judge with the run's language model (the text domain) are refused: their evaluation
needs the driver's model.

Ray is an optional dependency: ``pip install openended[ray]``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from openended.domains.base import ClosableDomain, Domain, Evaluation, ModelUsingDomain
from openended.errors import UserError
from openended.executor.base import ExecutorError
from openended.lm.base import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from openended.config import Config, ModelConfig


class RayUnavailableError(UserError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


def connect(address: str) -> Any:
    """`ray.init` once per process: "auto" (a running cluster, `ray start`), "host:port",
    "ray://host:port" (Ray Client) or "local" (a private cluster in this process)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "executor.kind = 'ray' needs Ray: pip install 'openended[ray]'"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(
                address=None if address == "local" else address,
                ignore_reinit_error=True,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailableError(
                f"executor.address = {address!r}: cannot reach a Ray cluster ({exc})"
            ) from None
    return ray


_DOMAINS: OrderedDict[str, Domain] = OrderedDict()
_KEEP = 4  # domains kept per worker process (runs sharing a long-lived cluster)


def _domain_on_worker(key: str, name: str, options: dict[str, Any]) -> Domain:
    """The domain of one `RayEvaluator` (`key`), built once per worker process. A new
    evaluator gets a new domain, so a worker never scores a run with files (an edited
    evaluator) read for an earlier one; the least recently used beyond `_KEEP` close."""
    from openended.domains import domain_class

    domain = _DOMAINS.get(key)
    if domain is None:
        cls = domain_class(name)
        domain = cls(cls.Config.model_validate(options))  # type: ignore[attr-defined,call-arg]
        _DOMAINS[key] = domain
        while len(_DOMAINS) > _KEEP:
            _, old = _DOMAINS.popitem(last=False)
            if isinstance(old, ClosableDomain):
                old.close()
    _DOMAINS.move_to_end(key)
    return domain


def evaluate_chunk(
    key: str, name: str, options: dict[str, Any], genomes: list[str]
) -> list[Evaluation]:
    """Run on a Ray worker: evaluate genomes with the worker's domain for `key`."""
    domain = _domain_on_worker(key, name, options)
    return list(asyncio.run(domain.evaluate(genomes)))  # type: ignore[arg-type]


class RayEvaluator:
    """Evaluations as Ray tasks of `chunk_size` genomes, at most `max_retries` retries
    each after a worker dies.

    Args:
        config: the run's configuration (its ``[executor]`` and ``[domain]`` tables).
        domain: the driver's domain (checked: it must not need the driver's LM).
    """

    def __init__(self, config: Config, domain: Domain) -> None:
        if isinstance(domain, ModelUsingDomain):
            raise RayUnavailableError(
                f"domain {config.domain_name!r} judges with the run's language model; "
                "its evaluations cannot run on Ray workers (use executor.kind = 'local')"
            )
        settings = config.executor
        self.ray = connect(settings.address)
        self.name = config.domain_name
        self.options = config.domain_options().model_dump(mode="json")
        self.chunk_size = settings.chunk_size
        self.key = uuid.uuid4().hex
        self._task = self.ray.remote(evaluate_chunk).options(
            num_cpus=settings.task_cpus,
            max_retries=settings.max_retries,
            retry_exceptions=False,
            name="openended.evaluate_chunk",
        )

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        chunks = [
            list(genomes[i : i + self.chunk_size]) for i in range(0, len(genomes), self.chunk_size)
        ]
        refs = [self._task.remote(self.key, self.name, self.options, chunk) for chunk in chunks]
        results = await asyncio.gather(*refs, return_exceptions=True)
        out: list[Evaluation] = []
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, self.ray.exceptions.RayTaskError):
                # the domain's own code raised: these genomes are invalid, as in-process
                reason = f"evaluation failed on Ray: {type(result).__name__}: {result}"
                out += [Evaluation.invalid(reason[:2000])] * len(chunk)
            elif isinstance(result, BaseException):
                # retries exhausted, node or object lost, cluster gone: stop, resumable
                for ref in refs:
                    self.ray.cancel(ref, force=True)
                raise ExecutorError(
                    f"Ray could not run an evaluation task ({type(result).__name__}: {result}); "
                    "nothing of this batch was stored: fix the cluster and resume the run"
                ) from result
            else:
                out += result
        return out

    def close(self) -> None:
        """The cluster belongs to whoever started it; this process just disconnects."""


class _ModelHost:
    """A Ray actor holding a local model (built from the run's ``[model]`` table)."""

    def __init__(self, model: dict[str, Any], seed: int | None) -> None:
        from openended.config import ModelConfig
        from openended.lm.factory import build_language_model

        self.lm = build_language_model(ModelConfig.model_validate(model), seed=seed)

    def model_id(self) -> str:
        return str(self.lm.model_id)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return asyncio.run(self.lm.generate(requests))


class RayActorLM:
    """A `LanguageModel` whose calls go to `actors` Ray actors hosting the local model,
    each call's requests split across them; an actor that dies is restarted and the call
    retried.

    Args:
        model: the ``[model]`` table (a local model; a server needs no actors).
        actors: how many model replicas.
        cpus: CPUs reserved per actor.
        address: the Ray cluster.
        seed: the run's seed.
    """

    def __init__(
        self,
        model: ModelConfig,
        *,
        actors: int,
        cpus: float,
        address: str,
        seed: int | None,
        max_restarts: int = 3,
    ) -> None:
        ray = connect(address)
        host = ray.remote(_ModelHost).options(
            num_cpus=cpus, max_restarts=max_restarts, max_task_retries=max_restarts
        )
        data = model.model_dump(mode="json", exclude_none=True)
        data["cache"] = False  # the completion cache, if any, wraps this object in the driver
        self.ray = ray
        self._actors = [host.remote(data, seed) for _ in range(actors)]
        self.model_id = str(ray.get(self._actors[0].model_id.remote()))

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """The requests split evenly across the actors (a seeded request's output does
        not depend on what it is batched with), in order."""
        requests = list(requests)
        share = -(-len(requests) // len(self._actors))
        parts = [requests[i : i + share] for i in range(0, len(requests), share)]
        done = await asyncio.gather(
            *(actor.generate.remote(part) for actor, part in zip(self._actors, parts, strict=False))
        )
        return [result for part in done for result in part]

    def close(self) -> None:
        """Stop the model actors (they hold CPUs and memory on the cluster)."""
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []
