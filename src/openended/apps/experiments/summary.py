"""Means with 95% confidence intervals over seeds (Student's t), Markdown tables and
plots of the experiments' result rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The mean and the half-width of its t confidence interval (0 for one value)."""
    data = np.asarray([v for v in values if v == v], dtype=np.float64)  # drop NaN
    if len(data) == 0:
        return float("nan"), float("nan")
    if len(data) == 1:
        return float(data[0]), 0.0
    sem = float(np.std(data, ddof=1) / np.sqrt(len(data)))
    return float(data.mean()), float(stats.t.ppf(0.5 + level / 2, len(data) - 1) * sem)


def aggregate(
    rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per distinct value of the `by` fields: n (seeds), and for each metric its
    mean and CI half-width (`metric`, `metric_ci`)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in by)].append(row)
    out = []
    for key, members in groups.items():
        summary: dict[str, Any] = dict(zip(by, key, strict=True))
        summary["n"] = len(members)
        for metric in metrics:
            mean, half = mean_ci([m[metric] for m in members if metric in m])
            summary[metric], summary[f"{metric}_ci"] = mean, half
        out.append(summary)
    return out


def markdown_table(
    summary: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]
) -> str:
    """A Markdown table, "mean ± ci" per metric (the mean alone for a single seed)."""
    lines = [
        "| " + " | ".join([*by, *metrics]) + " |",
        "|" + "---|" * (len(by) + len(metrics)),
    ]
    for row in summary:
        cells = [str(row[k]) for k in by]
        if row.get("n", 2) > 1:
            cells += [f"{row[m]:.3f} ± {row[f'{m}_ci']:.3f}" for m in metrics]
        else:  # one seed: no interval
            cells += [f"{row[m]:.3f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_lines(
    summary: Sequence[dict[str, Any]],
    *,
    x: str,
    series: str,
    metrics: Sequence[str],
    path: Path,
    title: str,
    panel: str | None = None,
    log_scale: Sequence[str] = (),
) -> Path:
    """One subplot per metric (per metric and `panel` value when given): a line per
    value of `series` against `x`, with its confidence band; `log_scale` metrics on a
    log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({row[panel] for row in summary}) if panel else [None]
    columns = len(metrics) if panel else min(4, len(metrics))
    grid_rows = len(panels) if panel else -(-len(metrics) // columns)
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(3.6 * columns, 3.0 * grid_rows), squeeze=False
    )
    cells = [
        (p, m, axes[p][m] if panel else axes[m // columns][m % columns])
        for p in range(len(panels))
        for m in range(len(metrics))
    ]
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    names = list(dict.fromkeys(row[series] for row in summary))
    for p, m, ax in cells:
        panel_value, metric = panels[p], metrics[m]
        for name in names:
            chosen = sorted(
                (
                    r
                    for r in summary
                    if r[series] == name and (panel is None or r[panel] == panel_value)
                ),
                key=lambda r: r[x],
            )
            if not chosen:
                continue
            xs = np.array([r[x] for r in chosen], dtype=float)
            ys = np.array([r[metric] for r in chosen])
            half = np.array([r[f"{metric}_ci"] for r in chosen])
            ax.plot(xs, ys, marker="o", markersize=3, label=str(name))
            ax.fill_between(xs, ys - half, ys + half, alpha=0.2)
        if metric in log_scale:
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(metric if panel is None else f"{metric} ({panel}: {panel_value})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
