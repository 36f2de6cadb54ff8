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


class SearchProgress:
    """Context manager whose `update` is the search's `on_batch` callback."""

    def __init__(self, budget: BudgetConfig, *, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.budget = budget
        self.live = self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None

    def _fraction_total(self) -> tuple[str, float | None]:
        if self.budget.max_evaluations:
            return "evaluations", float(self.budget.max_evaluations)
        if self.budget.max_seconds:
            return "seconds", float(self.budget.max_seconds)
        return "batches", None

    def __enter__(self) -> SearchProgress:
        if self.live:
            self._progress = Progress(
                BarColumn(bar_width=16),
                TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[unit]}"),
                TextColumn("{task.fields[line]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.start()
            unit, total = self._fraction_total()
            self._task = self._progress.add_task("search", total=total, line="", unit=unit)
        return self

    def update(self, metrics: BatchMetrics) -> None:
        line = describe(metrics)
        if self._progress is not None and self._task is not None:
            unit, _ = self._fraction_total()
            done = {"evaluations": metrics.evaluations, "seconds": metrics.elapsed}.get(
                unit, metrics.batch
            )
            self._progress.update(self._task, completed=done, line=describe_short(metrics))
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
