"""`report.html`: a self-contained summary of a run with its plots."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from openended.apps.generalisation import held_out_line
from openended.apps.report.lineage import (
    candidate_link,
    improvement_rows,
    improvements,
    lineage_svg,
)
from openended.apps.report.pages import write_candidate_pages
from openended.apps.report.plots import plot_heatmap, plot_progress
from openended.config import Config
from openended.run_dir import RunDir

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
code { font-family: ui-monospace, monospace; white-space: pre-wrap; }
img { max-width: 100%; }
"""


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column, value in row.items():
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            text = html.escape(text)
            if column == "candidate_id":
                text = candidate_link(int(value))
            cells.append(
                f"<td><code>{text}</code></td>" if column == "genome" else f"<td>{text}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _describe_sandbox(session: dict) -> str:
    text = str(session.get("isolation", "?"))
    if session.get("seccomp"):
        text += " + seccomp"
    if session.get("from_batch"):
        text += f" (from batch {session['from_batch']})"
    return text


def _failure_kind(error: str) -> str:
    """What a failure was, in one line: a traceback's last line (the exception), else
    the first line."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "?"
    if lines[0].startswith("Traceback") or any(x.startswith("Traceback") for x in lines[1:]):
        return lines[-1][:200]
    return lines[0][:200]


def _common_failures(candidates: pd.DataFrame, most: int = 10) -> str:
    """The commonest kinds of failure, each with a count and one whole example."""
    failed = candidates[candidates["error"].notna()]
    if failed.empty:
        return ""
    kinds = failed["error"].map(_failure_kind)
    rows = []
    for kind, count in kinds.value_counts().head(most).items():
        example = failed.loc[kinds == kind].iloc[0]
        rows.append(
            f"<tr><td>{count}</td><td><code>{html.escape(str(kind))}</code><details><summary>"
            f"the whole message of one ({candidate_link(int(example['id']))})</summary><pre><code>"
            f"{html.escape(str(example['error']))}</code></pre></details></td></tr>"
        )
    return "<table><tr><th>count</th><th>failure</th></tr>" + "".join(rows) + "</table>"


def _what_happened(config: Config, candidates: pd.DataFrame, sessions: list, model_id: str) -> str:
    """The task, the model, why the run stopped, and whether anything beat the seeds."""
    options = config.domain_options().model_dump(mode="json", exclude_none=True)
    task = ", ".join(f"{k} = {v}" for k, v in options.items() if not isinstance(v, dict))
    task = task if len(task) < 400 else task[:400] + " …"
    backend = "a server" if config.model.is_remote else f"{config.model.local_backend()} backend"
    stops = [str(s.get("stopped_by", "?")) for s in sessions] or ["(still running, or killed)"]
    lines = [
        f"<b>Task</b>: the {html.escape(config.domain_name)} domain"
        + (f" ({html.escape(task)})" if task else ""),
        f"<b>Model</b>: {html.escape(str(model_id))} (configured: model.name = "
        f"{html.escape(config.model.name)}, {html.escape(backend)})",
        "<b>Stopped</b>: "
        + "; then ".join(f"session {i + 1}: {html.escape(s)}" for i, s in enumerate(stops)),
        f"<b>Best against the seeds</b>: {html.escape(_against_seeds(candidates))}",
    ]
    return "<h2>What happened</h2><ul>" + "".join(f"<li>{x}</li>" for x in lines) + "</ul>"


def _against_seeds(candidates: pd.DataFrame) -> str:
    valid = candidates[(candidates["status"] == "valid") & candidates["fitness"].notna()]
    seeds = valid[valid["operator"] == "seed"]
    children = valid[valid["operator"] != "seed"]
    if seeds.empty:
        return "no valid seed"
    best_seed = float(seeds["fitness"].max())
    if children.empty or float(children["fitness"].max()) <= best_seed:
        return (
            f"no child beat the best seed (fitness {best_seed:.6g}); "
            f"{len(children)} valid children of {int((candidates['operator'] != 'seed').sum())}"
        )
    best = children.loc[children["fitness"].idxmax()]
    better = int((children["fitness"] > best_seed).sum())
    return (
        f"the best child (candidate {int(best['id'])}, fitness {float(best['fitness']):.6g}) "
        f"beats the best seed ({best_seed:.6g}) by {float(best['fitness']) - best_seed:.6g}; "
        f"{better} children beat it"
    )


def write_report(run_dir: Path, *, top: int = 15, score_held_out: bool = True) -> Path:
    """Write ``report.html`` and its PNG plots into `run_dir`; returns the HTML path.
    `score_held_out`: run the evaluator's held-out test on the best program where it is not
    scored yet (False: show the kept scores only, as a live report does mid-run)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    config = run.config()
    with run.store() as store:
        archive = run.archive(store)
        batches = store.frame("batches")
        candidates = store.frame("candidates")
        model_id = store.get_meta("model_id", "?")
        usage = store.get_meta("usage", {})
        sandbox = store.get_meta("sandbox", [])
        sessions = store.get_meta("sessions", [])
        records = {r.id or 0: r for r in store.candidates()}
    elite_ids = {e.candidate_id for e in archive.elites()}
    pages = write_candidate_pages(run_dir / "candidates", records, elites=elite_ids)
    parts = [f"<h1>openended run: {html.escape(run_dir.name)}</h1>"]
    parts.append(_what_happened(config, candidates, sessions, model_id))
    stats = archive.stats()
    summary = {
        "model": model_id,
        "candidates": len(candidates),
        "evaluations": usage.get("evaluations", 0),
        "LM calls": usage.get("lm_calls", 0),
        "LM tokens": usage.get("tokens", 0),
        "wall time (s)": round(float(usage.get("elapsed", 0.0)), 1),
        "elites": stats.num_elites,
        "coverage": f"{stats.coverage:.1%}",
        "QD-score": f"{stats.qd_score:.4g} (offset {archive.qd_score_offset:g})",
        "best fitness": "-" if stats.best_fitness is None else f"{stats.best_fitness:.4g}",
        "candidate pages": f"{pages} (candidates/ID.html)",
    }
    if sandbox:
        summary["sandbox"] = "; ".join(_describe_sandbox(s) for s in sandbox)
    held_out = held_out_line(run_dir, compute=score_held_out)
    if held_out is not None:
        summary["best program on held-out instances"] = held_out
    parts.append(_table(pd.DataFrame({"": list(summary), "value": list(summary.values())})))
    if not batches.empty:
        plot_progress(batches, run_dir / "progress.png")
        parts.append('<h2>Search progress</h2><img src="progress.png" alt="progress">')
    if plot_heatmap(archive, run_dir / "heatmap.png"):
        parts.append('<h2>Archive</h2><img src="heatmap.png" alt="archive heatmap">')
    best = archive.best()
    if best is not None:
        parts.append(
            f"<h2>Where the best came from</h2><p>The ancestry of the best, "
            f"{candidate_link(best.candidate_id)} (each arrow: the operator and the change in "
            "fitness; a node opens the candidate's page):</p>"
            f"<div style='overflow-x:auto'>{lineage_svg(records, best.candidate_id)}</div>"
        )
    parts.append(
        "<h2>What improved</h2><p>The children that beat their best parent:</p>"
        + improvement_rows(improvements(records))
    )
    elites = archive.to_frame().head(top)
    if not elites.empty:
        by_id = candidates.set_index("id")
        elites["operator"] = [by_id.loc[i, "operator"] for i in elites["candidate_id"]]
        elites["parents"] = [by_id.loc[i, "parents"] for i in elites["candidate_id"]]
        parts.append(f"<h2>Best {len(elites)} elites</h2>" + _table(elites))
    if not candidates.empty:
        ops = candidates.groupby("operator").agg(
            candidates=("id", "count"),
            valid=("status", lambda s: float((s == "valid").mean())),
            entered_archive=("added", "mean"),
        )
        parts.append("<h2>Operators</h2>" + _table(ops.reset_index()))
        status = candidates["status"].value_counts().rename_axis("status").reset_index()
        parts.append("<h2>Outcomes</h2>" + _table(status))
        failures = _common_failures(candidates)
        if failures:
            parts.append("<h2>Most common failures</h2>" + failures)
    parts.append(
        "<h2>Configuration</h2><details><summary>the resolved config.toml</summary>"
        f"<pre><code>{html.escape(config.to_toml())}</code></pre></details>"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_dir.name)}"
        f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = run_dir / "report.html"
    out.write_text(page)
    return out
