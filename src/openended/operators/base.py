"""Variation operators: build a prompt from archive members; the LM writes the child."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np

from openended.archive.elite import Elite
from openended.errors import UserError
from openended.lm.base import GenerationRequest

DEFAULT_TEMPLATE_DIR = Path(__file__).parent / "templates"


class TemplateError(UserError, ValueError):
    """A prompt template is missing or does not render; the message names the file."""


@dataclass(frozen=True)
class Parsed:
    """What an operator made of a completion: a genome, or why there is none.

    `status` is ``"ok"``, ``"parse_error"`` or ``"search_not_found"`` (a diff whose
    SEARCH text is not in the parent)."""

    genome: str | None
    status: str = "ok"
    error: str | None = None

    @classmethod
    def failed(cls, error: str, status: str = "parse_error") -> Parsed:
        return cls(genome=None, status=status, error=error)


@dataclass(frozen=True)
class SamplingSettings:
    """How an operator's requests are sampled."""

    temperature: float = 0.9
    top_p: float = 0.95
    max_tokens: int = 48
    stop: tuple[str, ...] = ("\n",)


def load_template(name: str, *, override: Path | None, domain_dir: Path | None) -> jinja2.Template:
    """Find `<name>.jinja`: the config's override first, then the domain's prompt folder,
    then the operator's default beside this module."""
    candidates = [override] if override is not None else []
    if domain_dir is not None:
        candidates.append(domain_dir / f"{name}.jinja")
    candidates.append(DEFAULT_TEMPLATE_DIR / f"{name}.jinja")
    for path in candidates:
        if path is not None and path.is_file():
            environment = jinja2.Environment(
                undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
            )
            try:
                template = environment.from_string(path.read_text())
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"{path}: line {exc.lineno}: {exc.message}") from exc
            template.filename = str(path)
            return template
        if path is override and path is not None:
            raise TemplateError(f"prompt template not found: {path}")
    raise TemplateError(f"no template named {name}.jinja")


class OperatorDomainError(UserError, ValueError):
    """An operator was configured for a domain it cannot work with."""


def pick_one(elites: Sequence[Elite], rng: np.random.Generator) -> Elite:
    """One elite, uniformly at random."""
    return elites[int(rng.integers(len(elites)))]


def pick_sorted(elites: Sequence[Elite], k: int, rng: np.random.Generator) -> list[Elite]:
    """Up to `k` distinct elites, uniformly at random, worst first (the order LMX and
    FunSearch's prompts show them in: the model continues towards the best)."""
    picks = rng.choice(len(elites), size=min(k, len(elites)), replace=False)
    return sorted((elites[int(i)] for i in picks), key=lambda e: e.fitness)


class Operator:
    """Base class: choose parents, render the template, return a `GenerationRequest`, and
    turn the completion into a genome (by default with the domain's `parse`)."""

    name: ClassVar[str]
    template_name: ClassVar[str | None] = None
    """The prompt template's name when it is not the operator's (an ablation that shares
    its operator's prompt)."""
    default_parents: ClassVar[int] = 1
    default_stop: ClassVar[tuple[str, ...]] = ("\n",)
    default_max_tokens: ClassVar[int] = 40
    copies_parent: ClassVar[bool] = False
    """The completion repeats much of the parent: requests ask for speculative sampling."""

    def __init__(
        self,
        *,
        template: jinja2.Template,
        domain: Any,
        sampling: SamplingSettings,
        parents: int | None = None,
    ) -> None:
        self.template = template
        self.domain = domain
        self.context: Mapping[str, Any] = domain.prompt_context()
        self.sampling = sampling
        self.parents = parents or self.default_parents
        if self.parents < 1:
            raise ValueError(f"{self.name} needs at least 1 parent, got {self.parents}")

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        genome = self.domain.parse(completion)
        if genome is None:
            return Parsed.failed(f"could not parse: {completion.strip()[:120]!r}")
        return Parsed(genome)

    def parse_reply(
        self, completion: str, parents: Sequence[Elite], request: GenerationRequest
    ) -> Parsed:
        """The child of one completion of `request` (by default `parse`, which needs no more
        than the completion; an operator whose prompt depends on the request's seed, as a
        menu of options does, overrides this)."""
        return self.parse(completion, parents)

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        """Choose this operator's parents from the archive's elites (by default one,
        uniformly: MAP-Elites' selection, Mouret & Clune 2015)."""
        return [pick_one(elites, rng)]

    def render(self, parents: Sequence[Elite], **more: Any) -> str:
        """The prompt: the template with the domain, the parents, `extra_context` and
        `more`."""
        try:
            return self.template.render(
                domain=self.context,
                parents=parents,
                parent=parents[0],
                **self.extra_context(parents),
                **more,
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(
                f"{getattr(self.template, 'filename', self.name)}: cannot render: {exc}"
            ) from exc

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        """More template variables (for subclasses)."""
        return {}

    def request(self, parents: Sequence[Elite], *, seed: int) -> GenerationRequest:
        return self.request_for(self.render(parents), seed=seed)

    def request_for(self, prompt: str, *, seed: int) -> GenerationRequest:
        """The request that samples a completion of `prompt` with this operator's
        settings."""
        return GenerationRequest(
            prompt=prompt,
            n=1,
            max_tokens=self.sampling.max_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            stop=self.sampling.stop,
            seed=seed,
            speculate=self.copies_parent,
        )
