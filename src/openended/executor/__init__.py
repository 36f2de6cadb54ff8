"""Where evaluations (and, optionally, local-model LM calls) run: in this process (the
default: asyncio and the domain's sandbox pool) or on a Ray cluster (Moritz et al. 2018,
"Ray: A Distributed Framework for Emerging AI Applications", OSDI). The search state and
the run store stay in the driver either way: workers return evaluations, the driver
alone writes them."""

from openended.executor.base import Evaluator, ExecutorError, LocalEvaluator

__all__ = ["Evaluator", "ExecutorError", "LocalEvaluator"]
