"""Search domains, registered under the entry point group ``openended.domains``."""

from __future__ import annotations

from importlib.metadata import entry_points

from openended.domains.base import Axis, Domain, Evaluation
from openended.errors import UserError

ENTRY_POINT_GROUP = "openended.domains"


class UnknownDomainError(UserError, LookupError):
    """No domain is registered under the requested name."""


def available_domains() -> list[str]:
    """Names of all registered domains."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def domain_class(name: str) -> type[Domain]:
    """The domain class registered as `name`."""
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
]
