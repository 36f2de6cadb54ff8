"""Progress display for long searches: a rich live bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from openended.config import BudgetConfig
from openended.store.run_store import BatchMetrics


def describe(m: BatchMetrics) -> str:
    best = "-" if m.best_fitness is None else f"{m.best_fitness:.4g}"
    rate = "-" if m.tokens_per_second is None else f"{m.tokens_per_second:.0f}"
    return (
        f"batch {m.batch:>3}  evals {m.evaluations:>5}  QD {m.qd_score:9.2f}  "
        f"cov {m.coverage:6.1%}  best {best:>10}  valid {m.valid_rate:5.1%}  tok/s {rate:>5}"
    )


def describe_short(m: BatchMetrics) -> str:
    best = "-" if m.best_fitness is None else f"{m.best_fitness:.3g}"
    rate = "" if m.tokens_per_second is None else f" {m.tokens_per_second:.0f} tok/s"
    return f"QD {m.qd_score:.1f} cov {m.coverage:.0%} best {best} valid {m.valid_rate:.0%}{rate}"


def budget_progress(budget: BudgetConfig, metrics: BatchMetrics | None) -> tuple[float, str]:
    """(fraction of the budget closest to stopping the run, "37/60 evaluations · ...")."""
    used = {
        "evaluations": metrics.evaluations if metrics else 0,
        "LM calls": metrics.lm_calls if metrics else 0,
        "tokens": metrics.tokens if metrics else 0,
        "seconds": metrics.elapsed if metrics else 0.0,
    }
    parts, fraction = [], 0.0
    for name, limit in budget.active().items():
        parts.append(f"{used[name]:.0f}/{limit:.0f} {name}")
        fraction = max(fraction, min(1.0, used[name] / limit))
    return fraction, " · ".join(parts)


class SearchProgress:
    """Context manager whose `update` is the search's `on_batch` callback. The bar follows
    whichever budget is closest to stopping the run, and the line shows every budget."""

    def __init__(self, budget: BudgetConfig, *, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.budget = budget
        self.live = self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> SearchProgress:
        if self.live:
            self._progress = Progress(
                BarColumn(bar_width=16),
                TextColumn("{task.fields[budgets]}"),
                TextColumn("{task.fields[line]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.start()
            _, budgets = budget_progress(self.budget, None)
            self._task = self._progress.add_task("search", total=1.0, line="", budgets=budgets)
        return self

    def update(self, metrics: BatchMetrics) -> None:
        fraction, budgets = budget_progress(self.budget, metrics)
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=fraction, budgets=budgets, line=describe_short(metrics)
            )
        else:
            print(f"{describe(metrics)}  [{budgets}]", file=self.console.file, flush=True)

    def say(self, line: str) -> None:
        """A message above the bar (or a plain line)."""
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.console.file, flush=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
