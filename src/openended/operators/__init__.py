"""Variation operators, by name."""

from openended.operators.base import (
    Operator,
    Parsed,
    SamplingSettings,
    TemplateError,
    load_template,
)
from openended.operators.lmx import LMXCrossover
from openended.operators.mutation import InstructionMutation
from openended.operators.program import DiffMutation, FullRewrite, FunSearchCrossover
from openended.operators.text import ContrastPrompt, EvolMutation

OPERATORS: dict[str, type[Operator]] = {
    LMXCrossover.name: LMXCrossover,
    InstructionMutation.name: InstructionMutation,
    DiffMutation.name: DiffMutation,
    FullRewrite.name: FullRewrite,
    FunSearchCrossover.name: FunSearchCrossover,
    EvolMutation.name: EvolMutation,
    ContrastPrompt.name: ContrastPrompt,
}

__all__ = [
    "OPERATORS",
    "InstructionMutation",
    "LMXCrossover",
    "Operator",
    "Parsed",
    "SamplingSettings",
    "TemplateError",
    "load_template",
]
