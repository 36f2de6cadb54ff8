"""The verifiable toy world of the self-training experiments: lines "a + b = c" whose
operands follow a Zipf law, so that some equations are common and many are rare (the
tails that collapse removes first). Generated from a seed, so the "real data" ships with
the code. A line is correct when it parses and c = a + b: the verifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LINE = re.compile(r"^(\d+) \+ (\d+) = (\d+)$")


@dataclass(frozen=True)
class EquationWorld:
    """Operands in 0..size-1 with P(a) proportional to 1 / (a + 1) ** zipf.

    Args:
        size: operands are 0..size-1.
        zipf: the Zipf exponent of the operands (0: uniform).
    """

    size: int = 30
    zipf: float = 1.1

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"size must be >= 2, got {self.size}")
        if self.zipf < 0:
            raise ValueError(f"zipf must be >= 0, got {self.zipf}")

    @property
    def vocabulary(self) -> list[str]:
        """Operands, sums and one more (an off-by-one answer to the largest sum)."""
        return [str(v) for v in range(2 * self.size)] + ["+", "="]

    def operand_probabilities(self) -> np.ndarray:
        weights = 1.0 / np.arange(1, self.size + 1) ** self.zipf
        return weights / weights.sum()

    def sample_pairs(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` operand pairs (a, b), shape (count, 2)."""
        return rng.choice(self.size, size=(count, 2), p=self.operand_probabilities())

    def lines(self, count: int, rng: np.random.Generator) -> list[str]:
        """`count` correct equations, the "real data"."""
        return [f"{a} + {b} = {a + b}" for a, b in self.sample_pairs(count, rng)]

    def prompt(self, a: int, b: int) -> str:
        return f"{a} + {b} ="

    @staticmethod
    def parse(line: str) -> tuple[int, int, int] | None:
        """(a, b, c) of a well-formed line, else None."""
        match = LINE.match(line.strip())
        return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]

    def verify(self, line: str) -> bool:
        """Is the line a well-formed, true equation?"""
        parsed = self.parse(line)
        return parsed is not None and parsed[0] + parsed[1] == parsed[2]

    def descriptors(self, line: str) -> tuple[int, int] | None:
        """The archive cell of a well-formed line: its operands."""
        parsed = self.parse(line)
        if parsed is None or not (parsed[0] < self.size and parsed[1] < self.size):
            return None
        return parsed[0], parsed[1]
