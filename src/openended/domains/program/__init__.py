"""Program evolution against a user's evaluator."""

from openended.domains.program.domain import ProgramConfig, ProgramDomain

__all__ = ["ProgramConfig", "ProgramDomain"]
