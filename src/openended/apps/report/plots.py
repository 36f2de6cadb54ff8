"""PNG plots of a run: the archive heatmap and the search curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator, PercentFormatter

from openended.archive.archive import Archive


def plot_heatmap(archive: Archive, path: Path) -> bool:
    """Fitness over the descriptor space (1 or 2 axes). Returns False when not drawable."""
    from ribs.visualize import cvt_archive_heatmap, grid_archive_heatmap

    if len(archive.axes) not in (1, 2) or len(archive) < 2:
        return False  # (one cell says nothing a table does not)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if archive.kind == "grid":
        grid_archive_heatmap(archive.ribs, ax=ax, cmap="viridis", aspect="auto")  # type: ignore[arg-type]
    else:
        cvt_archive_heatmap(archive.ribs, ax=ax, cmap="viridis", aspect="auto")  # type: ignore[arg-type]
    ax.set_xlabel(archive.axes[0].name)
    if len(archive.axes) == 2:
        ax.set_ylabel(archive.axes[1].name)
    for axis, spec in zip((ax.xaxis, ax.yaxis), archive.axes, strict=False):
        if _counts(spec.low, spec.high):  # a count (branches, lines): whole-number ticks
            axis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Archive: best fitness per cell")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_progress(batches: pd.DataFrame, path: Path) -> None:
    """QD-score, coverage and best fitness against evaluations."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, column, title in zip(
        axes,
        ("qd_score", "coverage", "best_fitness"),
        ("QD-score", "Coverage", "Best fitness"),
        strict=True,
    ):
        values = batches[column] * (100 if column == "coverage" else 1)
        ax.plot(batches["evaluations"], values, marker=".", lw=1.5)
        ax.set_xlabel("evaluations")
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if column == "coverage":  # the share of cells filled, as the summary gives it
            ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _counts(low: float, high: float) -> bool:
    """Whether an axis looks like a count: whole-number bounds at least 4 apart (a share
    in [0, 1] does not)."""
    return float(low).is_integer() and float(high).is_integer() and high - low >= 4
