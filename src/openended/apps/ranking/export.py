"""Exports of a ranking session: preference pairs for TRL, raw events, Bradley-Terry
scores per candidate, and the quality-control report."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openended.apps.ranking.quality import quality_report
from openended.apps.ranking.session import RankingSession


def fits(session: RankingSession) -> list[dict[str, Any]]:
    """`RankingSession.scores` of every prompt (one Bradley-Terry fit each)."""
    return [session.scores(k) for k in range(len(session.prompts))]


def preferences(
    session: RankingSession,
    *,
    report: dict[str, Any] | None = None,
    fitted: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per pairwise preference, in TRL's preference format (``prompt``,
    ``chosen``, ``rejected``) plus ``prompt_id``, ``margin``, ``rater``, the candidate ids,
    whether it was a QC repeat, and whether QC flagged the rater.

    A decisive pair gives one row; a best-of-K answer K - 1 rows (the best over each other
    item shown), a best-worst answer K - 2 more (each other item over the worst).
    ``screen_id`` names the answer a row comes from and ``screen`` its type: rows of one
    screen come from one decision, so a downstream user should not treat them as
    independent (group or weight by ``screen_id``).

    ``margin`` is how much higher the pooled Bradley-Terry fit (every rater's judgments of
    the prompt) scores the chosen candidate than the rejected one, and 0 where the fit
    disagrees with this judgment: a reward model trained with a margin term
    (``-log sigmoid(r_chosen - r_rejected - margin)``, Llama 2) then asks for clear gaps
    only where everyone's judgments show one. `report` (from `qc`) and `fitted` (from
    `fits`) are computed when not given."""
    report = report if report is not None else qc(session)
    fitted = fitted if fitted is not None else fits(session)
    flagged = {name for name, entry in report["raters"].items() if entry["flagged"]}
    rows = []
    for prompt_idx, prompt in enumerate(session.prompts):
        mean = fitted[prompt_idx]["mean"]
        for j in session.store.judgments(prompt_idx=prompt_idx):
            for winner, loser in j.implied_pairs():
                rows.append(
                    {
                        "prompt": prompt.prompt,
                        "chosen": prompt.candidates[winner].text,
                        "rejected": prompt.candidates[loser].text,
                        "prompt_id": prompt.id,
                        "margin": round(max(0.0, float(mean[winner] - mean[loser])), 4),
                        "rater": j.rater,
                        "chosen_id": prompt.candidates[winner].id,
                        "rejected_id": prompt.candidates[loser].id,
                        "screen_id": j.id,
                        "screen": j.screen,
                        "repeat": j.kind == "repeat",
                        "rater_flagged": j.rater in flagged,
                    }
                )
    return rows


def scores(
    session: RankingSession, *, fitted: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Score (posterior mean and sd), P(best), wins, item views and comparisons implied of
    every candidate, best first within each prompt (`fitted` from `fits`, computed if not given)."""
    fitted = fitted if fitted is not None else fits(session)
    rows = []
    for prompt_idx, prompt in enumerate(session.prompts):
        fit = fitted[prompt_idx]
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
                    "views": int(fit["views"][k]),
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
    report, fitted = qc(session), fits(session)  # each computed once for all four files
    paths = {
        "preferences": _write_jsonl(
            out / "preferences.jsonl", preferences(session, report=report, fitted=fitted)
        ),
        "events": _write_jsonl(out / "events.jsonl", session.store.events()),
        "scores": _write_jsonl(out / "scores.jsonl", scores(session, fitted=fitted)),
    }
    paths["qc"] = out / "qc.json"
    paths["qc"].write_text(json.dumps(report, indent=2) + "\n")
    return paths


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text(jsonl_text(rows))
    return path


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
