"""Variation operators, registered under the entry point group ``openended.operators``
(like domains): a package adds an operator by registering its class there."""

from __future__ import annotations

from importlib.metadata import entry_points

from openended.errors import UserError
from openended.operators.base import (
    Operator,
    OperatorDomainError,
    Parsed,
    SamplingSettings,
    TemplateError,
    load_template,
)
from openended.operators.lmx import LMXCrossover
from openended.operators.mutation import InstructionMutation

ENTRY_POINT_GROUP = "openended.operators"


class UnknownOperatorError(UserError, LookupError):
    """No operator is registered under the requested name."""


def available_operators() -> list[str]:
    """Names of the registered operators, sorted. (A search draws among a domain's
    operators in the order of its ``default_operator_weights``, then the others by name:
    `openended.engine.build_operators`.)"""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def operator_class(name: str) -> type[Operator]:
    """The operator class registered as `name`."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise UnknownOperatorError(
        f"unknown operator {name!r}; registered: {', '.join(available_operators()) or 'none'}"
    )


__all__ = [
    "ENTRY_POINT_GROUP",
    "InstructionMutation",
    "LMXCrossover",
    "Operator",
    "OperatorDomainError",
    "Parsed",
    "SamplingSettings",
    "TemplateError",
    "UnknownOperatorError",
    "available_operators",
    "load_template",
    "operator_class",
]
