"""Exports of a ranking session: preference pairs for TRL, raw events, Bradley-Terry
scores per candidate, and the quality-control report."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openended.ranking.quality import quality_report
from openended.ranking.session import RankingSession


def preferences(session: RankingSession) -> list[dict[str, Any]]:
    """One row per decisive judgment, in TRL's preference format (``prompt``, ``chosen``,
    ``rejected``) plus ``prompt_id``, ``margin`` (the difference of the two candidates'
    Bradley-Terry scores fitted to every rater's judgments of the prompt; larger = a
    clearer preference), ``rater``, the candidate ids and whether it was a QC repeat."""
    rows = []
    for prompt_idx, prompt in enumerate(session.prompts):
        mean = session.scores(prompt_idx)["mean"]
        for j in session.store.judgments(prompt_idx=prompt_idx):
            if j.winner is None or j.loser is None:
                continue
            rows.append(
                {
                    "prompt": prompt.prompt,
                    "chosen": prompt.candidates[j.winner].text,
                    "rejected": prompt.candidates[j.loser].text,
                    "prompt_id": prompt.id,
                    "margin": round(float(mean[j.winner] - mean[j.loser]), 4),
                    "rater": j.rater,
                    "chosen_id": prompt.candidates[j.winner].id,
                    "rejected_id": prompt.candidates[j.loser].id,
                    "repeat": j.kind == "repeat",
                }
            )
    return rows


def scores(session: RankingSession) -> list[dict[str, Any]]:
    """Bradley-Terry score (posterior mean and sd), P(best), wins and comparisons of every
    candidate, best first within each prompt."""
    rows = []
    for prompt_idx, prompt in enumerate(session.prompts):
        fit = session.scores(prompt_idx)
        order = sorted(range(len(prompt.candidates)), key=lambda k: -fit["mean"][k])
        for rank, k in enumerate(order, 1):
            rows.append(
                {
                    "prompt_id": prompt.id,
                    "candidate_id": prompt.candidates[k].id,
                    "rank": rank,
                    "score": round(float(fit["mean"][k]), 4),
                    "sd": round(float(fit["sd"][k]), 4),
                    "p_best": round(float(fit["p_best"][k]), 4),
                    "wins": int(fit["wins"][k]),
                    "comparisons": int(fit["comparisons"][k]),
                }
            )
    return rows


def qc(session: RankingSession) -> dict[str, Any]:
    sizes = [len(p.candidates) for p in session.prompts]
    return quality_report(session.store.judgments(), session.store.raters(), sizes)


def write_exports(session: RankingSession, out_dir: str | Path) -> dict[str, Path]:
    """preferences.jsonl, events.jsonl, scores.jsonl and qc.json in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "preferences": _write_jsonl(out / "preferences.jsonl", preferences(session)),
        "events": _write_jsonl(out / "events.jsonl", session.store.events()),
        "scores": _write_jsonl(out / "scores.jsonl", scores(session)),
    }
    paths["qc"] = out / "qc.json"
    paths["qc"].write_text(json.dumps(qc(session), indent=2) + "\n")
    return paths


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text(jsonl_text(rows))
    return path


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
