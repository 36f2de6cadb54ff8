"""A thin wrapper over pyribs archives holding text genomes as object solutions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from openended.archive.elite import Elite
from openended.domains.base import Axis

if TYPE_CHECKING:
    from ribs.archives import ArchiveBase


@dataclass(frozen=True)
class ArchiveStats:
    """Summary statistics; `qd_score` is the sum of (fitness - offset) over elites."""

    num_elites: int
    coverage: float
    qd_score: float
    best_fitness: float | None


class Archive:
    """MAP-Elites archive of text genomes (Mouret & Clune 2015, arXiv 1504.04909).

    Backed by `ribs.archives.GridArchive` (one bin grid over the domain's axes) or
    `ribs.archives.CVTArchive` (Vassiliades et al. 2017, arXiv 1610.05729) with
    ``solution_dim=()`` and ``solution_dtype=object``. The candidate id of each elite is
    an extra field, so that metrics and lineage can be looked up in the run store.

    Args:
        axes: the descriptor space.
        kind: ``"grid"`` or ``"cvt"``.
        qd_score_offset: subtracted from every fitness in the QD-score (use the domain's
            lowest fitness, so that every elite counts positively).
        cells: number of CVT centroids (``kind="cvt"`` only).
        seed: seeds the CVT centroids.
    """

    def __init__(
        self,
        *,
        axes: Sequence[Axis],
        kind: Literal["grid", "cvt"] = "grid",
        qd_score_offset: float = 0.0,
        cells: int = 64,
        seed: int = 0,
    ) -> None:
        self.axes = tuple(axes)
        self.kind = kind
        self.qd_score_offset = qd_score_offset
        ranges = [(a.low, a.high) for a in self.axes]
        common = dict(
            solution_dim=(),
            solution_dtype=object,
            ranges=ranges,
            qd_score_offset=qd_score_offset,
            seed=seed,
            extra_fields={"candidate_id": ((), np.int64)},
        )
        # imported here: pyribs imports torch and scikit-learn when they are installed (450 MB
        # of memory and seconds of start-up that `solve`, `show` and the rest do not need)
        from ribs.archives import CVTArchive, GridArchive

        self._ribs: ArchiveBase
        if kind == "grid":
            self._ribs = GridArchive(dims=[a.bins for a in self.axes], **common)  # type: ignore[arg-type]
        elif kind == "cvt":
            self._ribs = CVTArchive(centroids=cells, samples=max(20 * cells, 2000), **common)  # type: ignore[arg-type]
        else:
            raise ValueError(f"archive kind must be 'grid' or 'cvt', got {kind!r}")
        self._metrics: dict[int, Mapping[str, float]] = {}

    @property
    def ribs(self) -> ArchiveBase:
        """The underlying pyribs archive."""
        return self._ribs

    @property
    def cells(self) -> int:
        return int(self._ribs.cells)

    def __len__(self) -> int:
        return len(self._ribs)

    def clip(self, descriptors: Sequence[float]) -> np.ndarray:
        """Descriptors clipped into the axes' ranges (out-of-range values go to edge bins)."""
        lows = np.array([a.low for a in self.axes])
        highs = np.array([a.high for a in self.axes])
        return np.clip(np.asarray(descriptors, dtype=np.float64), lows, np.nextafter(highs, lows))

    def add(
        self,
        candidate_ids: Sequence[int],
        genomes: Sequence[str],
        fitness: Sequence[float],
        descriptors: Sequence[Sequence[float]],
        metrics: Sequence[Mapping[str, float]] | None = None,
    ) -> np.ndarray:
        """Insert a batch; returns the pyribs add status per candidate (0: not added,
        1: new cell, 2: improved an elite)."""
        if not candidate_ids:
            return np.zeros(0, dtype=np.int32)
        solutions = np.empty(len(genomes), dtype=object)
        solutions[:] = list(genomes)
        result = self._ribs.add(
            solutions,
            np.asarray(fitness, dtype=np.float64),
            np.stack([self.clip(d) for d in descriptors]),
            candidate_id=np.asarray(candidate_ids, dtype=np.int64),
        )
        status = np.asarray(result["status"])
        for cid, m, s in zip(
            candidate_ids, metrics or [{}] * len(candidate_ids), status, strict=True
        ):
            if s > 0:
                self._metrics[int(cid)] = m
        return status

    def elites(self) -> list[Elite]:
        """All elites, in cell order."""
        if len(self._ribs) == 0:
            return []
        data = self._ribs.data()
        return [
            Elite(
                candidate_id=int(cid),
                genome=str(sol),
                fitness=float(obj),
                descriptors=tuple(float(x) for x in meas),
                metrics=self._metrics.get(int(cid), {}),
            )
            for sol, obj, meas, cid in zip(
                data["solution"],
                data["objective"],
                data["measures"],
                data["candidate_id"],
                strict=True,
            )
        ]

    def best(self) -> Elite | None:
        elites = self.elites()
        return max(elites, key=lambda e: e.fitness) if elites else None

    def stats(self) -> ArchiveStats:
        stats = self._ribs.stats
        return ArchiveStats(
            num_elites=int(stats.num_elites),
            coverage=float(stats.coverage),
            qd_score=float(stats.qd_score) if stats.num_elites else 0.0,
            best_fitness=float(stats.obj_max) if stats.num_elites else None,
        )

    def to_frame(self) -> pd.DataFrame:
        """The elites as a DataFrame: candidate_id, genome, fitness, one column per axis."""
        rows: list[Mapping[str, object]] = []
        for elite in self.elites():
            row: dict[str, object] = {
                "candidate_id": elite.candidate_id,
                "genome": elite.genome,
                "fitness": elite.fitness,
            }
            row.update({a.name: d for a, d in zip(self.axes, elite.descriptors, strict=True)})
            rows.append(row)
        columns = ["candidate_id", "genome", "fitness", *[a.name for a in self.axes]]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.sort_values("fitness", ascending=False, ignore_index=True)
