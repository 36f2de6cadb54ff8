"""The search population: a global archive, optional islands with migration, the last error
of each parent, and fingerprints for near-duplicate rejection.

Islands follow FunSearch (Romera-Paredes et al. 2024, Nature 625): each prompt is built from
one island's members and its children return to that island, so islands evolve apart; every
`migration_interval` batches each island's best elite is copied to the next island (a ring).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from openended.archive.archive import Archive
from openended.archive.elite import Elite
from openended.domains.base import Axis
from openended.engine.restore import group_by_batch, insert_records
from openended.store.run_store import CandidateRecord, Status

FAILED = (Status.INVALID, Status.PARSE_ERROR, Status.SEARCH_NOT_FOUND)


class Population:
    """Everything the search selects parents from.

    Args:
        axes, kind, qd_score_offset, cells, seed: archive settings.
        islands: number of islands (1: no islands).
        migration_interval: batches between migrations (0: never).
        fingerprint: genome -> key for near-duplicate rejection (None: no rejection).
    """

    def __init__(
        self,
        *,
        axes: Sequence[Axis],
        kind: str,
        qd_score_offset: float,
        cells: int,
        seed: int,
        islands: int = 1,
        migration_interval: int = 0,
        fingerprint: Callable[[str], str | None] | None = None,
    ) -> None:
        def archive(offset_seed: int) -> Archive:
            return Archive(
                axes=axes,
                kind=kind,
                qd_score_offset=qd_score_offset,  # type: ignore[arg-type]
                cells=cells,
                seed=seed + offset_seed,
            )

        self.archive = archive(0)
        self.islands = [self.archive] if islands <= 1 else [archive(0) for _ in range(islands)]
        self.migration_interval = migration_interval
        self.fingerprint = fingerprint
        self.last_error: dict[int, str] = {}
        self.fingerprints: dict[str, int] = {}
        self.migrations = 0

    @property
    def island_count(self) -> int:
        return len(self.islands)

    def island_of(self, request_index: int) -> int:
        return request_index % len(self.islands)

    def absorb(self, batch: int, records: Sequence[CandidateRecord]) -> None:
        """Insert a committed batch (ids assigned): archives, errors, fingerprints, and the
        migration due after this batch."""
        insert_records(self.archive, records)
        if len(self.islands) > 1:
            for index, island in enumerate(self.islands):
                members = [r for r in records if r.island is None or r.island == index]
                present = [r.added for r in members]
                insert_records(island, members)
                for r, added in zip(members, present, strict=True):
                    r.added = added  # `added` reports the global archive
        for record in records:
            if record.status in FAILED and len(record.parents) == 1 and record.error:
                self.last_error[record.parents[0]] = record.error
            if self.fingerprint is not None and record.genome and record.id is not None:
                key = self.fingerprint(record.genome)
                if key is not None:
                    self.fingerprints.setdefault(key, record.id)
        if (
            len(self.islands) > 1
            and self.migration_interval
            and batch > 0
            and batch % self.migration_interval == 0
        ):
            self.migrate()

    def absorb_all(self, records: Iterable[CandidateRecord]) -> None:
        """Absorb stored records batch by batch, as the search did."""
        for batch in group_by_batch(records):
            self.absorb(batch[0].batch, batch)

    def migrate(self) -> None:
        """Copy each island's best elite to the next island (ring)."""
        bests = [island.best() for island in self.islands]
        for index, best in enumerate(bests):
            if best is None:
                continue
            target = self.islands[(index + 1) % len(self.islands)]
            target.add(
                [best.candidate_id],
                [best.genome],
                [best.fitness],
                [best.descriptors],
                [best.metrics],
            )
        self.migrations += 1

    def elites(self, island: int = 0) -> list[Elite]:
        """The members of `island`, each with the last error of its children as feedback."""
        return [
            dataclasses.replace(e, feedback=self.last_error.get(e.candidate_id))
            for e in self.islands[island].elites()
        ]

    def duplicate_of(self, key: str | None) -> int | None:
        """The id of an earlier candidate with fingerprint `key`, if any."""
        return None if key is None else self.fingerprints.get(key)
