"""One HTML page per candidate (``candidates/<id>.html`` beside ``report.html``): what the
model was asked and wrote, the genome, a highlighted diff against each parent, the
evaluation and its whole error, operator, timings, tokens, links to parents and children."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path

from openended.apps.report.lineage import candidate_link, lineage_svg
from openended.apps.show import genome_diff, refine_summary
from openended.store.run_store import CandidateRecord, best_parent, valid_fitness

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; white-space: pre-wrap; }
.diff .add { background: #e6ffec; display: block; }
.diff .del { background: #ffebe9; display: block; }
.diff .hunk { color: #6a737d; display: block; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
.error { background: #fff5f5; }
"""

LINK = "{id}.html"


def write_candidate_pages(
    folder: Path,
    records: Mapping[int, CandidateRecord],
    *,
    elites: set[int],
    ids: Iterable[int] | None = None,
) -> int:
    """Write the pages of `ids` (default: every candidate) into `folder`; the count."""
    folder.mkdir(parents=True, exist_ok=True)
    children: dict[int, list[int]] = {}
    for record in records.values():
        for parent in record.parents:
            children.setdefault(parent, []).append(record.id or 0)
    fitness = valid_fitness(records.values())
    count = 0
    for candidate_id in ids if ids is not None else records:
        page = candidate_page(records[candidate_id], records, children, elites, fitness)
        (folder / f"{candidate_id}.html").write_text(page)
        count += 1
    return count


def candidate_page(
    r: CandidateRecord,
    records: Mapping[int, CandidateRecord],
    children: Mapping[int, list[int]],
    elites: set[int],
    valid: Mapping[int | None, float | None],
) -> str:
    """`valid`: the valid candidates' fitness by id (`valid_fitness`)."""
    state = "in the archive" if r.id in elites else str(r.status)
    fitness = "-" if r.fitness is None else f"{r.fitness:.6g}"
    parent_best = best_parent(r, valid)
    change = (
        f" ({r.fitness - parent_best[1]:+.4g} over its best parent)"
        if r.fitness is not None and parent_best is not None
        else ""
    )
    facts = {
        "status": state,
        "operator": r.operator,
        "batch": r.batch,
        "fitness": fitness + change,
        "descriptors": ", ".join(f"{d:.4g}" for d in r.descriptors or ()) or "-",
        "tokens": f"prompt {r.prompt_tokens}, completion {r.completion_tokens}",
        "generate (s)": "-" if r.t_generate is None else f"{r.t_generate:.3f}",
        "evaluate (s)": "-" if r.t_evaluate is None else f"{r.t_evaluate:.3f}",
        "parents": ", ".join(candidate_link(p, LINK) for p in r.parents) or "none (a seed)",
        "children": ", ".join(candidate_link(c, LINK) for c in children.get(r.id or 0, []))
        or "none",
        **{
            f"metric {k}": f"{v:.6g}" if isinstance(v, float) else str(v)
            for k, v in r.metrics.items()
        },
    }
    linked = ("parents", "children")  # (already HTML)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v if k in linked else html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    parts = [
        f"<p><a href='../report.html'>the run's report</a></p><h1>Candidate {r.id}</h1>",
        f"<table>{rows}</table>",
    ]
    if r.error:
        parts.append(f"<h2>Error / feedback</h2><pre class='error'>{html.escape(r.error)}</pre>")
    for title, text in (
        ("Prompt", r.prompt),
        ("Completion", r.completion),
        ("Proposed (before the domain fitted it)", r.proposed),
        ("Genome", r.genome),
    ):
        if text:
            parts.append(f"<h2>{title}</h2><pre>{html.escape(text)}</pre>")
    for parent in r.parents:
        other = records.get(parent)
        if other is None or other.genome is None or r.genome is None:
            continue
        diff = genome_diff(
            other.genome, r.genome, old_name=f"candidate {parent}", new_name=f"candidate {r.id}"
        )
        parts.append(
            f"<h2>Diff against parent {candidate_link(parent, LINK)}</h2>"
            + (
                f"<pre class='diff'>{_highlight(diff)}</pre>"
                if diff
                else "<p>(the same genome)</p>"
            )
        )
    fitted = refine_summary(r.details or {})
    if fitted:
        parts.append(f"<h2>Fitted by the refine stage</h2><p>{html.escape(fitted)}</p>")
    if r.details:
        details = "\n".join(f"{k}: {v}" for k, v in sorted(r.details.items()))
        parts.append(f"<h2>Details</h2><pre>{html.escape(details)}</pre>")
    if r.id in elites and r.parents:
        parts.append(
            "<h2>Where it came from</h2><div style='overflow-x:auto'>"
            f"{lineage_svg(records, r.id or 0, link=LINK)}</div>"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>candidate {r.id}</title>"
        f"<style>{PAGE_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def _highlight(diff: str) -> str:
    """A unified diff with added, removed and hunk lines marked for the page's style."""
    out = []
    for line in diff.splitlines():
        text = html.escape(line)
        if line.startswith("+") and not line.startswith("+++"):
            out.append(f"<span class='add'>{text}</span>")
        elif line.startswith("-") and not line.startswith("---"):
            out.append(f"<span class='del'>{text}</span>")
        elif line.startswith("@@"):
            out.append(f"<span class='hunk'>{text}</span>")
        else:
            out.append(text + "\n")
    return "".join(out)
