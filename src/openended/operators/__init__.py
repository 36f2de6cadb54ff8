"""Variation operators, by name."""

from openended.operators.base import (
    Operator,
    SamplingSettings,
    TemplateError,
    load_template,
)
from openended.operators.lmx import LMXCrossover
from openended.operators.mutation import InstructionMutation

OPERATORS: dict[str, type[Operator]] = {
    LMXCrossover.name: LMXCrossover,
    InstructionMutation.name: InstructionMutation,
}

__all__ = [
    "OPERATORS",
    "InstructionMutation",
    "LMXCrossover",
    "Operator",
    "SamplingSettings",
    "TemplateError",
    "load_template",
]
