"""Puzzles: `solve` (sample and verify solutions; pass@k)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openended.apps.cli.common import BACKEND_HELP, BACKENDS, COMPUTE_TYPE_HELP, console
from openended.config import ConfigError
from openended.lm.conversion import COMPUTE_TYPES


def cmd_solve(args: argparse.Namespace) -> int:
    import asyncio

    from openended.config import ModelConfig
    from openended.domains.puzzles import PuzzleVerifier, load_puzzles, solve_puzzles
    from openended.lm.factory import build_language_model

    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: give at least 1")
    args.k = args.k or sorted({1, args.samples})
    too_many = [k for k in args.k if k > args.samples or k < 1]
    if too_many:
        raise ConfigError(
            f"--k {' '.join(map(str, too_many))}: pass@k needs 1 <= k <= samples per puzzle "
            f"and --samples is {args.samples}; raise --samples or lower --k"
        )
    puzzles = load_puzzles(args.puzzles)[: args.limit]
    lm = build_language_model(
        ModelConfig(
            name=args.model,
            model_name=args.model_name,
            backend=args.backend or "auto",
            compute_type=args.compute_type,
        )
    )

    def progress(done: int, total: int) -> None:
        console.print(f"solved for {done}/{total} puzzles", highlight=False)

    async def go() -> object:
        with PuzzleVerifier() as verifier:
            return await solve_puzzles(
                lm,
                puzzles,
                verifier,
                samples=args.samples,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                seed=args.seed,
                progress=progress,
            )

    report = asyncio.run(go())
    summary = report.summary(args.k)  # type: ignore[attr-defined]
    print(json.dumps(summary, indent=1))
    if args.out:
        report.write(args.out, args.k)  # type: ignore[attr-defined]
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    solve = sub.add_parser("solve", help="sample and verify solutions to P3 puzzles; pass@k")
    solve.add_argument("puzzles", type=Path, help="P3-format JSON (or JSONL) of puzzles")
    solve.add_argument("--model", default="embedded")
    solve.add_argument("--model-name", help="the server's model name")
    solve.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    solve.add_argument(
        "--compute-type", choices=COMPUTE_TYPES, default="int8", help=COMPUTE_TYPE_HELP
    )
    solve.add_argument("--samples", type=int, default=10, help="solutions per puzzle")
    solve.add_argument(
        "--k", type=int, nargs="+", help="pass@k to report (default: 1 and --samples)"
    )
    solve.add_argument("--limit", type=int, help="only the first N puzzles")
    solve.add_argument("--temperature", type=float, default=0.8)
    solve.add_argument("--max-tokens", type=int, default=128)
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--out", type=Path, help="write per-puzzle results to this JSON file")
    solve.set_defaults(func=cmd_solve)
