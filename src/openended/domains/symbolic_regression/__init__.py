"""The default domain: symbolic regression."""

from openended.domains.symbolic_regression.domain import (
    SymbolicRegressionConfig,
    SymbolicRegressionDomain,
)

__all__ = ["SymbolicRegressionConfig", "SymbolicRegressionDomain"]
