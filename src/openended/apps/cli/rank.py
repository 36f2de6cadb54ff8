"""Human feedback: `rank` (the ranking page)."""

from __future__ import annotations

import argparse
from pathlib import Path

from openended.apps.cli.common import console
from openended.config import ConfigError


def cmd_rank(args: argparse.Namespace) -> int:
    from openended.apps.ranking.session import open_session, rater_names

    session, tokens = open_session(
        args.input,
        db=args.db,
        raters=rater_names(args.raters) if args.raters else [],
        create=args.export is None,  # exporting never starts an empty database
        mode=args.mode,
        screen=args.screen,
        budget=args.budget,
        threshold=args.threshold,
        repeat_rate=args.repeat_rate,
        seed=args.seed,
    )
    settings = session.settings()
    sizes = sorted({len(p.candidates) for p in session.prompts})
    console.print(
        f"{len(session.prompts)} prompt(s), {'/'.join(map(str, sizes))} candidates each, "
        f"mode {settings['mode']}, screen {settings['screen']}; judgments in "
        f"{session.store.path}",
        markup=False,
    )
    if args.export is not None:
        from openended.apps.ranking.export import write_exports

        for name, path in write_exports(session, args.export).items():
            print(f"{name}: {path}")
        return 0
    if not session.store.raters():
        raise ConfigError("no raters yet: give --raters 3 or --raters alice,bob")
    import uvicorn

    from openended.apps.ranking.app import create_app

    base = f"http://{args.host}:{args.port}"
    for name, token in tokens.items():
        if name == "admin":
            console.print(
                f"  admin (progress, QC, exports): {base}/admin?token={token}", markup=False
            )
        else:
            console.print(f"  {name}: {base}/?token={token}", markup=False)
    uvicorn.run(create_app(session), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    rank = sub.add_parser(
        "rank",
        help="find the best outputs by pairwise or multi-way comparisons in a local web page",
    )
    rank.add_argument(
        "input", type=Path, help="JSONL of prompts with candidate outputs, or a run directory"
    )
    rank.add_argument(
        "--raters", help="a number (rater1..N) or comma-separated names; added to those known"
    )
    rank.add_argument(
        "--mode",
        choices=("best", "full"),
        help="best: knockout + BT top-up (default); full: a full ranking by merge-insertion",
    )
    rank.add_argument(
        "--screen",
        help="pair (default), best-of-K (pick the best of K) or best-worst-K (pick the best "
        "and the worst of K), K = 3..6; best-worst-4 finds the best with the fewest item views",
    )
    rank.add_argument(
        "--budget",
        type=int,
        help="screens per prompt and rater (best mode; default: 150 pairs for 64 candidates, "
        "or as many K-way screens as show 300 items)",
    )
    rank.add_argument("--threshold", type=float, help="stop at this P(leader is best) (0.9)")
    rank.add_argument("--repeat-rate", type=float, help="share of screens re-shown for QC (0.05)")
    rank.add_argument("--seed", type=int, help="bracket order, sides and repeats (0)")
    rank.add_argument("--db", type=Path, help="the ranking database (default beside INPUT)")
    rank.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    rank.add_argument("--port", type=int, default=8765)
    rank.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write preferences.jsonl, events.jsonl, scores.jsonl and qc.json to DIR; no server",
    )
    rank.add_argument("--log-level", default="warning")
    rank.set_defaults(func=cmd_rank)
