"""Where a candidate came from: its ancestry as a static SVG graph (no script, no CDN: the
page works offline), and the children that beat their parents."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openended.store.run_store import CandidateRecord, Status, best_parent, valid_fitness

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 38, 24, 46


def ancestry(records: Mapping[int, CandidateRecord], start: int) -> list[int]:
    """`start` and every candidate it descends from, in id order."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        if current in seen or current not in records:
            continue
        seen.add(current)
        todo.extend(records[current].parents)
    return sorted(seen)


@dataclass(frozen=True)
class Improvement:
    """A valid child that beat its best parent."""

    id: int
    operator: str
    parents: tuple[int, ...]
    fitness: float
    gain: float


def improvements(records: Mapping[int, CandidateRecord]) -> list[Improvement]:
    """Every valid child whose fitness beats its best parent's, in id order."""
    fitness = valid_fitness(records.values())
    found = []
    for record in records.values():
        if record.status != Status.VALID or record.fitness is None:
            continue
        best = best_parent(record, fitness)
        if best is not None and record.fitness > best[1]:
            found.append(
                Improvement(
                    record.id or 0,
                    record.operator,
                    record.parents,
                    record.fitness,
                    record.fitness - best[1],
                )
            )
    return sorted(found, key=lambda i: i.id)


def lineage_svg(
    records: Mapping[int, CandidateRecord], start: int, *, link: str = "candidates/{id}.html"
) -> str:
    """The ancestry of `start` as an SVG: one row per generation (seeds at the top), an
    arrow from each parent to its child labelled with the operator and the fitness
    change; each node links to its candidate page (`link`)."""
    ids = ancestry(records, start)
    depth: dict[int, int] = {}
    for i in ids:  # ids ascend, so parents come first
        parents = [p for p in records[i].parents if p in depth]
        depth[i] = 1 + max((depth[p] for p in parents), default=-1)
    rows: dict[int, list[int]] = {}
    for i in ids:
        rows.setdefault(depth[i], []).append(i)
    widest = max(len(r) for r in rows.values())
    width = widest * (NODE_W + GAP_X) + GAP_X + 110  # (room for the last edge labels)
    height = len(rows) * (NODE_H + GAP_Y) + GAP_Y
    where: dict[int, tuple[float, float]] = {}
    for level, members in rows.items():
        offset = (width - len(members) * (NODE_W + GAP_X) + GAP_X) / 2
        for k, i in enumerate(members):
            where[i] = (offset + k * (NODE_W + GAP_X), GAP_Y / 2 + level * (NODE_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" class="lineage" font-family="sans-serif" '
        'font-size="11"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 '
        'L 0 10 z" fill="#777"/></marker></defs>'
    ]
    for i in ids:
        child = records[i]
        for p in child.parents:
            if p not in where:
                continue
            (px, py), (cx, cy) = where[p], where[i]
            x1, y1, x2, y2 = px + NODE_W / 2, py + NODE_H, cx + NODE_W / 2, cy
            change = _change(child, records[p])
            parts.append(
                f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#999" '
                'marker-end="url(#arrow)"/>'
                f'<text x="{(x1 + x2) / 2 + 4:.0f}" y="{(y1 + y2) / 2 + 4:.0f}" fill="#555">'
                f"{html.escape(child.operator)} {html.escape(change)}</text>"
            )
    for i in ids:
        x, y = where[i]
        r = records[i]
        fitness = "-" if r.fitness is None else f"{r.fitness:.4g}"
        fill = "#ffe9a8" if i == start else ("#e3eefc" if r.operator == "seed" else "#f4f4f4")
        parts.append(
            f'<a href="{html.escape(link.format(id=i))}"><rect x="{x:.0f}" y="{y:.0f}" '
            f'width="{NODE_W}" height="{NODE_H}" rx="5" fill="{fill}" stroke="#888"/>'
            f'<text x="{x + 8:.0f}" y="{y + 15:.0f}">#{i} {html.escape(r.operator)}</text>'
            f'<text x="{x + 8:.0f}" y="{y + 30:.0f}">fitness {html.escape(fitness)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _change(child: CandidateRecord, parent: CandidateRecord) -> str:
    if child.fitness is None or parent.fitness is None:
        return ""
    return f"{child.fitness - parent.fitness:+.3g}"


def improvement_rows(found: Sequence[Improvement], link: str = "candidates/{id}.html") -> str:
    """The "what improved" table."""
    if not found:
        return "<p>No child beat its best parent.</p>"
    rows = "".join(
        f"<tr><td>{candidate_link(i.id, link)}</td><td>{html.escape(i.operator)}</td>"
        f"<td>{', '.join(candidate_link(p, link) for p in i.parents)}</td>"
        f"<td>{i.fitness:.6g}</td><td>{i.gain:+.4g}</td></tr>"
        for i in found
    )
    return (
        "<table><tr><th>child</th><th>operator</th><th>parents</th><th>fitness</th>"
        f"<th>gain over its best parent</th></tr>{rows}</table>"
    )


def candidate_link(candidate_id: int, link: str = "candidates/{id}.html") -> str:
    return f'<a href="{html.escape(link.format(id=candidate_id))}">#{candidate_id}</a>'
