"""PNG plots of a run: the archive heatmap and the search curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from openended.archive.archive import Archive


def plot_heatmap(archive: Archive, path: Path) -> bool:
    """Fitness over the descriptor space (1 or 2 axes). Returns False when not drawable."""
    from ribs.visualize import cvt_archive_heatmap, grid_archive_heatmap

    if len(archive.axes) not in (1, 2) or len(archive) == 0:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if archive.kind == "grid":
        grid_archive_heatmap(archive.ribs, ax=ax, cmap="viridis", aspect="auto")  # type: ignore[arg-type]
    else:
        cvt_archive_heatmap(archive.ribs, ax=ax, cmap="viridis", aspect="auto")  # type: ignore[arg-type]
    ax.set_xlabel(archive.axes[0].name)
    if len(archive.axes) == 2:
        ax.set_ylabel(archive.axes[1].name)
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
        ax.plot(batches["evaluations"], batches[column], marker=".", lw=1.5)
        ax.set_xlabel("evaluations")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
