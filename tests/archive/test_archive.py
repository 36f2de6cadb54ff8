import numpy as np
import pytest

from openended.archive import Archive
from openended.domains import Axis

AXES = [Axis("size", 1, 41, 10), Axis("ops", 0, 8, 8)]


def test_grid_keeps_the_best_per_cell_and_reports_qd_with_offset() -> None:
    archive = Archive(axes=AXES, qd_score_offset=-10.0)
    archive.add([1, 2], ["m", "v"], [-3.0, -2.0], [(1, 0), (2, 0)])  # same cell
    archive.add([3], ["m*v"], [-1.0], [(5, 1)])
    elites = {e.genome: e for e in archive.elites()}
    assert set(elites) == {"v", "m*v"}
    assert elites["m*v"].candidate_id == 3
    stats = archive.stats()
    assert stats.num_elites == 2
    assert stats.qd_score == pytest.approx((-2.0 + 10) + (-1.0 + 10))
    assert stats.coverage == pytest.approx(2 / 80)
    assert stats.best_fitness == -1.0
    assert archive.best().genome == "m*v"  # type: ignore[union-attr]


def test_a_worse_genome_does_not_replace_an_elite() -> None:
    archive = Archive(axes=AXES)
    archive.add([1], ["a"], [-1.0], [(1, 0)])
    status = archive.add([2], ["b"], [-2.0], [(1, 0)])
    assert status.tolist() == [0]
    assert [e.genome for e in archive.elites()] == ["a"]


def test_out_of_range_descriptors_go_to_edge_cells() -> None:
    archive = Archive(axes=AXES)
    archive.add([1, 2], ["big", "small"], [-1.0, -1.0], [(500, 99), (-3, -1)])
    assert len(archive) == 2
    low, high = sorted(e.descriptors for e in archive.elites())
    assert low == (1.0, 0.0)
    assert high == pytest.approx((41.0, 8.0))


def test_cvt_archive_and_frame() -> None:
    archive = Archive(axes=AXES, kind="cvt", cells=16, seed=3)
    rng = np.random.default_rng(0)
    ids = list(range(1, 41))
    archive.add(
        ids,
        [f"g{i}" for i in ids],
        rng.uniform(-5, 0, 40).tolist(),
        rng.uniform([1, 0], [41, 8], (40, 2)).tolist(),
    )
    assert 1 < len(archive) <= 16
    frame = archive.to_frame()
    assert list(frame.columns) == ["candidate_id", "genome", "fitness", "size", "ops"]
    assert frame["fitness"].is_monotonic_decreasing


def test_empty_archive() -> None:
    archive = Archive(axes=AXES)
    assert archive.elites() == [] and archive.best() is None
    assert archive.stats().best_fitness is None and archive.stats().qd_score == 0.0
