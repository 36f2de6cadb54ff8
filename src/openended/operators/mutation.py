"""Instruction mutation: "improve this ... so that ...", from one archive member.

The ELM style of mutation (Lehman et al. 2022, arXiv 2206.08896) with a natural-language
instruction instead of a diff.
"""

from __future__ import annotations

from typing import ClassVar

from openended.operators.base import Operator


class InstructionMutation(Operator):
    """Rewrite one parent, chosen uniformly from the archive."""

    name: ClassVar[str] = "mutation"
