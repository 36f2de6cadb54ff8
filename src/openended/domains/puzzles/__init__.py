"""Programming puzzles (P3): solve mode (pass@k) and generate mode (new verified puzzles)."""

from openended.domains.puzzles.domain import PuzzlesConfig, PuzzlesDomain
from openended.domains.puzzles.p3 import Puzzle, PuzzleFileError, load_puzzles
from openended.domains.puzzles.solve import SolveReport, pass_at_k, solve_puzzles
from openended.domains.puzzles.verify import PuzzleVerifier, Verdict

__all__ = [
    "Puzzle",
    "PuzzleFileError",
    "PuzzleVerifier",
    "PuzzlesConfig",
    "PuzzlesDomain",
    "SolveReport",
    "Verdict",
    "load_puzzles",
    "pass_at_k",
    "solve_puzzles",
]
