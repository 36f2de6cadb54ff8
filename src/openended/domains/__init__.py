"""Search domains, registered under the entry point group ``openended.domains`` (an
installed package), or in this process with `register_domain` (a class defined in a
notebook or a script)."""

from __future__ import annotations

from importlib.metadata import entry_points

from openended.domains.base import Axis, Domain, Evaluation
from openended.errors import UserError

ENTRY_POINT_GROUP = "openended.domains"


class UnknownDomainError(UserError, LookupError):
    """No domain is registered under the requested name."""


_IN_PROCESS: dict[str, type[Domain]] = {}


def register_domain(cls: type[Domain]) -> type[Domain]:
    """Register a domain class in this process under its ``name`` (it wins over an
    installed one of the same name); returns it, so it can decorate the class."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise UnknownDomainError(f"{cls.__name__} has no `name` (a class attribute, a str)")
    for member in ("Config", "seeds", "parse", "evaluate", "prompt_context"):
        if not hasattr(cls, member):
            raise UnknownDomainError(
                f"{cls.__name__} is not a Domain: it has no `{member}` "
                "(see openended.domains.base.Domain)"
            )
    _IN_PROCESS[name] = cls
    return cls


def available_domains() -> list[str]:
    """Names of all registered domains."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_IN_PROCESS))


def domain_class(name: str) -> type[Domain]:
    """The domain class registered as `name`."""
    if name in _IN_PROCESS:
        return _IN_PROCESS[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise UnknownDomainError(
        f"unknown domain {name!r}; registered domains: {', '.join(available_domains()) or 'none'}"
    )


__all__ = [
    "Axis",
    "Domain",
    "Evaluation",
    "UnknownDomainError",
    "available_domains",
    "domain_class",
    "register_domain",
]
