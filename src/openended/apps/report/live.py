"""The live view of a run: `openended report RUN --serve` serves the report on 127.0.0.1
and writes it again whenever a batch has been committed since; the page asks for the last
committed batch every two seconds and reloads when it changed (no CDN, no build step)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from openended.apps.report.html import write_report
from openended.store.run_store import RunStore

POLL_SCRIPT = """<script>
const shown = {batch};
setInterval(async () => {{
  try {{
    const answer = await (await fetch("/api/batch", {{cache: "no-store"}})).json();
    if (answer.batch !== shown) location.reload();
  }} catch (e) {{}}
}}, 2000);
</script>"""


def last_batch(run_dir: Path) -> int | None:
    """The last committed batch (read-only; the run may be writing meanwhile)."""
    path = Path(run_dir) / RunStore.DB_NAME
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT MAX(batch) FROM batches").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def create_live_app(run_dir: Path) -> FastAPI:
    """The app serving `run_dir`'s report, rewritten when a new batch is committed."""
    run_dir = Path(run_dir).resolve()
    app = FastAPI(title="openended report", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    written: dict[str, int | None] = {}

    def current_report() -> str:
        with lock:
            batch = last_batch(run_dir)
            if written.get("batch", -1) != batch or not (run_dir / "report.html").exists():
                write_report(run_dir, score_held_out=False)  # no test runs mid-search
                written["batch"] = batch
            page = (run_dir / "report.html").read_text()
        script = POLL_SCRIPT.format(batch="null" if batch is None else batch)
        return page.replace("</body>", script + "</body>")

    @app.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/report.html")

    @app.get("/report.html", response_class=HTMLResponse)
    def report() -> str:
        return current_report()

    @app.get("/api/batch")
    def batch() -> dict[str, int | None]:
        return {"batch": last_batch(run_dir)}

    @app.get("/{path:path}")
    def files(path: str) -> FileResponse:
        target = (run_dir / path).resolve()
        allowed = target.suffix in (".png", ".html") and target.is_relative_to(run_dir)
        if not allowed or not target.is_file():
            raise HTTPException(404, f"{path}: not part of the report")
        return FileResponse(target)

    return app
