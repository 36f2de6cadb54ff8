"""The search engine: the async loop, budgets, metrics."""

from openended.engine.budget import Budget, Usage
from openended.engine.search import Search, SearchError, SearchOutcome, build_operators

__all__ = ["Budget", "Search", "SearchError", "SearchOutcome", "Usage", "build_operators"]
