"""Rebuild an archive from a run store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from openended.archive.archive import Archive
from openended.domains.base import Axis
from openended.store.run_store import CandidateRecord, RunStore, Status


def insert_records(archive: Archive, records: Iterable[CandidateRecord]) -> None:
    """Insert the valid records (in the given order) and mark which entered the archive."""
    valid = [r for r in records if r.status == Status.VALID and r.fitness is not None]
    if not valid:
        return
    archive.add(
        [r.id for r in valid],  # type: ignore[misc]
        [r.genome or "" for r in valid],
        [r.fitness for r in valid],  # type: ignore[misc]
        [r.descriptors or () for r in valid],
        [r.metrics for r in valid],
    )
    present = {e.candidate_id for e in archive.elites()}
    for r in valid:
        r.added = r.id in present


def archive_from_store(store: RunStore) -> Archive:
    """The archive as it stood after the last committed batch, from the axes, archive
    settings and candidates recorded in `store`."""
    layout = store.get_meta("archive")
    if layout is None:
        raise ValueError(f"{store.run_dir}: the store records no archive layout")
    archive = Archive(
        axes=[Axis(**a) for a in layout["axes"]],
        kind=layout["kind"],
        qd_score_offset=layout["qd_score_offset"],
        cells=layout["cells"],
        seed=layout["seed"],
    )
    insert_batches(archive, store.candidates())
    return archive


def group_by_batch(records: Iterable[CandidateRecord]) -> Iterator[list[CandidateRecord]]:
    """Consecutive records of the same batch, one list per batch (records in id order)."""
    current: list[CandidateRecord] = []
    for record in records:
        if current and record.batch != current[0].batch:
            yield current
            current = []
        current.append(record)
    if current:
        yield current


def insert_batches(archive: Archive, records: Iterable[CandidateRecord]) -> None:
    """Insert records batch by batch, as the search did (pyribs resolves competition for
    a cell within one batch differently from across batches)."""
    for batch in group_by_batch(records):
        insert_records(archive, batch)


def trailing_batches(
    records: Iterable[CandidateRecord], predicate: Callable[[list[CandidateRecord]], bool]
) -> int:
    """How many of the last child batches (batch 0, the seeds, aside) in a row satisfy
    `predicate`: the streaks a search's stopping rules count, as a resume finds them."""
    batches = [b for b in group_by_batch(records) if b[0].batch]
    count = 0
    for batch in reversed(batches):
        if not predicate(batch):
            break
        count += 1
    return count
