"""Helpers for program-evolution runs: the best program as a file."""

from __future__ import annotations

from pathlib import Path

from openended.domains.program.region import find_region
from openended.run_dir import RunDir
from openended.textfiles import read_text


def write_best_program(run_dir: Path) -> Path:
    """Write the best evolved program (the whole file) to ``RUN_DIR/best_program.py``, with
    a header comment giving its held-out test score beside the seed's (where the evaluator
    has ``evaluate_test``)."""
    from openended.apps.generalisation import held_out_line

    run_dir = Path(run_dir)
    config = RunDir(run_dir).config()
    options = config.domain_options()
    region = find_region(read_text(options.initial, what="initial program"), options.function)  # type: ignore[attr-defined]
    best = RunDir(run_dir).archive().best()
    if best is None:
        raise ValueError(f"{run_dir}: the archive is empty")
    path = run_dir / "best_program.py"
    program = region.assemble(best.genome)
    path.write_text(program)  # first: whatever the held-out scoring does
    held_out = held_out_line(run_dir)
    if held_out is not None:
        header = f"# openended: best program of {run_dir.name} (candidate {best.candidate_id}): "
        path.write_text(f"{header}held-out {held_out}\n{program}")
    return path
