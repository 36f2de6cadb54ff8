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
    ``rejected``) plus ``prompt_id``, ``margin``, ``rater``, the candidate ids, whether it
    was a QC repeat, and whether QC flagged the rater.

    ``margin`` is how much higher the pooled Bradley-Terry fit (every rater's judgments of
    the prompt) scores the chosen candidate than the rejected one, and 0 where the fit
    disagrees with this judgment: a reward model trained with a margin term
    (``-log sigmoid(r_chosen - r_rejected - margin)``, Llama 2) then asks for clear gaps
    only where everyone's judgments show one."""
    flagged = {name for name, entry in qc(session)["raters"].items() if entry["flagged"]}
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
                    "margin": round(max(0.0, float(mean[j.winner] - mean[j.loser])), 4),
                    "rater": j.rater,
                    "chosen_id": prompt.candidates[j.winner].id,
                    "rejected_id": prompt.candidates[j.loser].id,
                    "repeat": j.kind == "repeat",
                    "rater_flagged": j.rater in flagged,
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
