"""Looking into a run: `show`, `report`, `export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from openended.apps.cli.common import console


def cmd_report(args: argparse.Namespace) -> int:
    from openended.apps.report import write_report

    if not args.serve:
        print(write_report(args.run_dir))
        return 0
    import uvicorn

    from openended.apps.report.live import create_live_app
    from openended.run_dir import RunDir

    RunDir(args.run_dir).config()  # a clear error for a folder that is not a run
    app = create_live_app(args.run_dir)
    console.print(
        f"live report: http://{args.host}:{args.port}/ (refreshes as batches commit; "
        "Ctrl-C to stop)",
        markup=False,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from openended.apps.export import export_run

    print(export_run(args.run_dir, fmt=args.format, output=args.out, elites_only=args.elites))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.syntax import Syntax

    from openended.apps.generalisation import cached_generalisation
    from openended.apps.show import candidate_view, refine_summary

    view = candidate_view(args.run_dir, args.candidate_id)
    r = view.record
    out = Console(soft_wrap=True, highlight=False)
    state = "in the archive" if view.elite else str(r.status)
    fitness = "-" if r.fitness is None else f"{r.fitness:.6g}"
    out.print(f"[bold]candidate {r.id}[/bold]  batch {r.batch}  operator {r.operator}  {state}")
    out.print(f"fitness {fitness}  descriptors {list(r.descriptors or ())}", markup=False)
    for key, value in sorted((r.metrics or {}).items()):
        out.print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    timings = [f"generate {r.t_generate:.2f}s" if r.t_generate is not None else ""]
    timings.append(f"evaluate {r.t_evaluate:.2f}s" if r.t_evaluate is not None else "")
    out.print(
        f"tokens: prompt {r.prompt_tokens}, completion {r.completion_tokens}   "
        + "  ".join(t for t in timings if t),
        markup=False,
    )
    out.print(f"parents: {list(r.parents) or 'none'}   children: {view.children or 'none'}")
    held_out = cached_generalisation(args.run_dir)
    if held_out is not None and r.id in (held_out.best.candidate_id, held_out.seed.candidate_id):
        out.print(f"held-out instances: {held_out.line()}", markup=False)
    sections = [
        ("prompt", r.prompt),
        ("completion", r.completion),
        ("proposed (before the domain's fitting)", r.proposed),
        ("genome", r.genome),
    ]
    for title, text in sections:
        if text:
            out.rule(title)
            out.print(text, markup=False)
    for parent, diff in view.diffs.items():
        out.rule(f"diff against parent {parent}")
        if not diff:
            out.print("(the same genome)")
        elif out.is_terminal:  # highlighted; plain text into a pipe or a file
            out.print(Syntax(diff.rstrip("\n"), "diff", background_color="default"))
        else:
            out.print(diff.rstrip("\n"), markup=False)
    fitted = refine_summary(r.details or {})
    if fitted:
        out.rule("fitted by the refine stage")
        out.print(fitted, markup=False)
    if r.details:
        out.rule("details")
        for key, value in sorted(r.details.items()):
            out.print(f"{key}: {value}", markup=False)
    if r.error:
        out.rule("error / feedback")
        out.print(r.error, markup=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    show = sub.add_parser(
        "show",
        help="show one candidate: prompt, completion, diff against its parents, error",
        epilog="examples:\n  openended show runs/my-run        (the best)\n"
        "  openended show runs/my-run 17",
    )
    show.add_argument("run_dir", type=Path)
    show.add_argument(
        "candidate_id", type=int, nargs="?", help="a candidate's id (default: the best)"
    )
    show.set_defaults(func=cmd_show)
    report = sub.add_parser(
        "report",
        help="write report.html, its plots and candidate pages for a run (--serve: live)",
        epilog="examples:\n  openended report runs/my-run\n"
        "  openended report runs/my-run --serve     (follow a run while it goes)",
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--serve", action="store_true", help="serve it on --host and refresh it as batches commit"
    )
    report.add_argument("--host", default="127.0.0.1")
    report.add_argument("--port", type=int, default=8766)
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="export candidates as jsonl or parquet")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    export.add_argument("--out", type=Path, help="the file (default: RUN_DIR/exports/NAME.FORMAT)")
    export.add_argument("--elites", action="store_true", help="only the archive's elites")
    export.set_defaults(func=cmd_export)
