"""The experiments' reports: ``summary.md`` (means ± 95% CI over seeds) and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openended.apps.experiments.summary import aggregate, markdown_table, plot_lines

COLLAPSE_METRICS = (
    "perplexity",
    "valid",
    "distinct_3",
    "dispersion",
    "tail_survival",
    "pass@1",
)
ATTACK_METRICS = {
    "wrong-answers": ("pass@1", "attack_rate", "wrong_in_data"),
    "initial-errors": ("pass@1", "attack_rate", "wrong_in_data"),
    "vacuous-puzzles": ("vacuous_rate", "useful_distinct", "vacuous_in_data"),
    "flipped-raters": ("label_accuracy", "top_is_best", "adversaries_flagged", "honest_flagged"),
}


def collapse_report(rows: Sequence[dict[str, Any]], out_dir: Path, k: int) -> Path:
    """summary.md and collapse.png; returns summary.md."""
    metrics = [m for m in (*COLLAPSE_METRICS, f"pass@{k}") if any(m in r for r in rows)]
    summary = aggregate(rows, ("policy", "generation"), metrics)
    plot_lines(
        summary,
        x="generation",
        series="policy",
        metrics=metrics,
        path=out_dir / "collapse.png",
        log_scale=("perplexity",),
        title="Self-training: held-out real data, diversity, tails, pass@k (mean, 95% CI)",
    )
    last = max(r["generation"] for r in rows)
    seeds = len({r["seed"] for r in rows})
    text = [
        f"# Collapse: {seeds} seeds, generations 0..{last}\n",
        "Generation 0 (trained on the real data):\n",
        markdown_table([s for s in summary if s["generation"] == 0][:1], ("generation",), metrics),
        f"\nGeneration {last}:\n",
        markdown_table([s for s in summary if s["generation"] == last], ("policy",), metrics),
        "\nEvery generation: results.jsonl; plot: collapse.png\n",
    ]
    path = out_dir / "summary.md"
    path.write_text("\n".join(text))
    return path


def poison_report(rows: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """summary.md and one plot per attack (the last generation against p, defence off and
    on); for initial errors also the error rate across generations."""
    text = ["# Poisoning: the last generation, mean ± 95% CI over seeds\n"]
    for attack, metrics in ATTACK_METRICS.items():
        chosen = [r for r in rows if r["attack"] == attack]
        if not chosen:
            continue
        last = max(r["generation"] for r in chosen)
        final = [r for r in chosen if r["generation"] == last]
        summary = sorted(
            aggregate(final, ("defence", "fraction"), metrics),
            key=lambda s: (s["defence"], s["fraction"]),
        )
        for s in summary:
            s["defence"] = "on" if s["defence"] else "off"
        plot_lines(
            summary,
            x="fraction",
            series="defence",
            metrics=metrics,
            path=out_dir / f"poison-{attack}.png",
            title=f"{attack}: against the poisoned share p (generation {last})",
        )
        text += [f"## {attack}\n", markdown_table(summary, ("defence", "fraction"), metrics)]
        if attack in ("initial-errors", "wrong-answers") and last > 0:
            over_time = aggregate(chosen, ("defence", "fraction", "generation"), metrics)
            for s in over_time:
                s["defence"] = "on" if s["defence"] else "off"
            plot_lines(
                over_time,
                x="generation",
                series="fraction",
                metrics=metrics,
                panel="defence",
                path=out_dir / f"poison-{attack}-generations.png",
                title=f"{attack}: across generations, per poisoned share p",
            )
    path = out_dir / "summary.md"
    path.write_text("\n".join(text))
    return path
