"""Looking at a finished run: `report`, `export`."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    from openended.apps.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from openended.apps.export import export_run

    print(export_run(args.run_dir, fmt=args.format, output=args.out, elites_only=args.elites))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    report = sub.add_parser("report", help="write report.html and plots for a run")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="export candidates as jsonl or parquet")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    export.add_argument("--out", type=Path, help="the file (default: RUN_DIR/exports/NAME.FORMAT)")
    export.add_argument("--elites", action="store_true", help="only the archive's elites")
    export.set_defaults(func=cmd_export)
