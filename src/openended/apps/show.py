"""One candidate of a run, everything about it: what the model was asked and wrote, the
genome, a diff against each parent, the evaluation and its full error, the operator,
timings, tokens, and its parents and children (`openended show`, the report's pages)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from openended.run_dir import RunDir
from openended.store.run_store import CandidateRecord, StoreError


@dataclass
class CandidateView:
    """A candidate with its family: parents (as stored), children's ids, and a unified
    diff from each parent's genome to its own."""

    record: CandidateRecord
    parents: list[CandidateRecord] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    diffs: dict[int, str] = field(default_factory=dict)
    """Parent id -> unified diff (parent genome -> this genome); '' when they are equal."""
    elite: bool = False
    """In the archive now."""


def genome_diff(old: str, new: str, *, old_name: str, new_name: str) -> str:
    """A unified diff of two genomes (whole lines; a one-line genome diffs as one line)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def candidate_view(run_dir: Path, candidate_id: int | None = None) -> CandidateView:
    """The candidate `candidate_id` of the run (default: the archive's best)."""
    run = RunDir(run_dir)
    with run.store() as store:
        elites = run.elite_ids(store)
        if candidate_id is None:
            best = run.archive(store).best()
            if best is None:
                raise StoreError(f"{run_dir}: the archive is empty; give a candidate id")
            candidate_id = best.candidate_id
        record = store.candidate(candidate_id)
        if record is None:
            last = store.next_id() - 1
            raise StoreError(f"{run_dir}: no candidate {candidate_id} (ids run 1..{last})")
        parents = [p for p in (store.candidate(i) for i in record.parents) if p is not None]
        children = [c.id for c in store.candidates() if candidate_id in c.parents]
    view = CandidateView(
        record=record,
        parents=parents,
        children=[c for c in children if c is not None],
        elite=candidate_id in elites,
    )
    for parent in parents:
        if parent.genome is not None and record.genome is not None:
            view.diffs[parent.id or 0] = genome_diff(
                parent.genome,
                record.genome,
                old_name=f"candidate {parent.id}",
                new_name=f"candidate {record.id}",
            )
    return view


def refine_summary(details: dict) -> str | None:
    """What the refine stage did to a program child, in words (None when it did not run):
    the values proposed, the values fitted, the gain and the evaluator calls it took."""
    refine = details.get("refine")
    if not isinstance(refine, dict):
        return None
    target = "PARAMS" if refine.get("target", "floats") == "params" else "float literals"
    proposed = refine.get("proposed_values")
    fitted = refine.get("fitted_values")
    gain = float(refine.get("gain", 0.0))
    calls = refine.get("evaluations", 0)
    if proposed is None:  # a run from before the values were stored
        return f"{target}: {refine.get('literals', 0)} tuned, gain {gain:+.6g} in {calls} calls"
    if not proposed:
        return f"{target}: none declared, nothing fitted"
    outcome = (
        f"fitted {fitted}, score {gain:+.6g}"
        if gain > 0
        else "kept (no fitted setting scored higher)"
    )
    return (
        f"{target}: proposed {proposed}, {outcome}; {calls} evaluator calls "
        f"({refine.get('method', '?')})"
    )
