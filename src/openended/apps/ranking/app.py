"""The ranking web app: FastAPI plus one plain HTML/JS page (no front-end build step).

Raters open ``/?token=...``; the page asks ``GET /api/screen`` (or its older name
``/api/pair``) for the screen due and posts each answer, a pair's to ``POST
/api/judgments``, a multi-way screen's (best, or best and worst) to ``POST /api/choices``;
the answer carries the next screen, so a screen is only shown once the previous answer is
committed. Admin endpoints (QC, exports, human cost) need the admin token.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from openended.apps.ranking import export
from openended.apps.ranking.render import highlight_css, render
from openended.apps.ranking.session import Due, RankingSession, RankRequestError
from openended.apps.ranking.store import StoredJudgment


class JudgmentIn(BaseModel):
    """A choice on the pair shown: ids of the left and right candidates, as shown."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: str
    step: int = Field(ge=0)
    left: str
    right: str
    result: Literal["left", "right", "tie", "both_bad"]
    seconds: float | None = Field(
        None, ge=0, le=86400, allow_inf_nan=False, description="time the rater took"
    )


class ChoiceIn(BaseModel):
    """The answer to a multi-way screen: the ids shown, in their slots, and the ids
    picked as best (and worst, where the screen asks)."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: str
    step: int = Field(ge=0)
    shown: list[str]
    best: str
    worst: str | None = None
    seconds: float | None = Field(
        None, ge=0, le=86400, allow_inf_nan=False, description="time the rater took"
    )


class UndoIn(BaseModel):
    """Which judgment to withdraw: it must be the rater's latest."""

    model_config = ConfigDict(extra="forbid")

    judgment_id: int


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = request.query_params.get("token")
    if not token:
        raise HTTPException(401, "missing token: send 'Authorization: Bearer TOKEN' or ?token=")
    return token


def create_app(session: RankingSession) -> FastAPI:
    """The app for one ranking session."""
    store = session.store
    app = FastAPI(title="openended rank", docs_url=None, redoc_url=None)

    @app.exception_handler(RankRequestError)
    def _refused(_: Request, exc: RankRequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    def identify(request: Request) -> tuple[str, bool]:
        found = store.rater_for_token(_token(request))
        if found is None:
            raise HTTPException(401, "unknown token: ask the session's admin for your link")
        return found

    def rater(who: tuple[str, bool] = Depends(identify)) -> str:
        name, admin = who
        if admin:
            raise HTTPException(403, "the admin token cannot judge; open a rater's link")
        return name

    def admin(who: tuple[str, bool] = Depends(identify)) -> str:
        name, is_admin = who
        if not is_admin:
            raise HTTPException(403, "this needs the admin token")
        return name

    def pair_view(name: str, due: Due | None) -> dict[str, Any]:
        progress = session.progress(name, due)
        last = session.last_judgment(name)
        undoable = last.id if last is not None else None
        if due is None:
            choices = []
            for k, prompt in enumerate(session.prompts):
                best = prompt.candidates[session.rater_choice(name, k)]
                choices.append(
                    {
                        "prompt_id": prompt.id,
                        "prompt": prompt.prompt,
                        "candidate_id": best.id,
                        "html": render(best.text, prompt.language),
                    }
                )
            return {
                "done": True,
                "rater": name,
                "progress": progress,
                "choices": choices,
                "last_judgment_id": undoable,
            }
        prompt = session.prompts[due.prompt_idx]
        items = [
            {"id": c.id, "html": render(c.text, prompt.language)}
            for c in (prompt.candidates[k] for k in due.shown)
        ]
        screen = session.screen
        view = {
            "done": False,
            "rater": name,
            "prompt_id": prompt.id,
            "prompt": prompt.prompt,
            "step": due.step,
            "screen": {
                "kind": "pair" if len(items) == 2 else screen.kind,
                "k": len(items),
                "asks_worst": screen.asks_worst and len(items) > 2,
            },
            "items": items,
            "progress": progress,
            "last_judgment_id": undoable,
        }
        if len(items) == 2:
            view |= {"left": items[0], "right": items[1]}
        return view

    def judgment_view(j: StoredJudgment) -> dict[str, Any]:
        ids = [c.id for c in session.prompts[j.prompt_idx].candidates]
        view = {
            "id": j.id,
            "prompt_id": session.prompts[j.prompt_idx].id,
            "step": j.step,
            "shown": [ids[k] for k in j.shown],
            "result": j.result,
            "created": j.created,
            "undone": j.undone,
        }
        if j.is_choice:
            worst = ids[j.worst_idx] if j.worst_idx is not None else None
            return view | {"best": ids[j.best_idx], "worst": worst}  # type: ignore[index]
        return view | {"left": ids[j.left_idx], "right": ids[j.right_idx]}

    def answered(name: str, judgment: StoredJudgment) -> dict[str, Any]:
        """The answer just stored, and the screen due next."""
        return {"judgment": judgment_view(judgment), "next": pair_view(name, session.due(name))}

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        token = request.query_params.get("token", "")
        found = store.rater_for_token(token) if token else None
        if found is None:
            return HTMLResponse(_no_link_page(bool(token)), status_code=401)
        if found[1]:  # the admin's link opens the admin page
            return HTMLResponse(_admin_page(session, token))
        return HTMLResponse(
            resources.files("openended.apps.ranking").joinpath("page.html").read_text()
        )

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request, _: str = Depends(admin)) -> HTMLResponse:
        return HTMLResponse(_admin_page(session, _token(request)))

    @app.get("/highlight.css")
    def css() -> Response:
        return Response(highlight_css(), media_type="text/css")

    @app.get("/api/screen")
    @app.get("/api/pair")
    def screen(name: str = Depends(rater)) -> dict[str, Any]:
        return pair_view(name, session.due(name))

    @app.post("/api/judgments", status_code=201)
    def judge(body: JudgmentIn, name: str = Depends(rater)) -> dict[str, Any]:
        judgment = session.submit(
            name,
            prompt_id=body.prompt_id,
            step=body.step,
            left_id=body.left,
            right_id=body.right,
            result=body.result,
            seconds=body.seconds,
        )
        return answered(name, judgment)

    @app.post("/api/choices", status_code=201)
    def choose(body: ChoiceIn, name: str = Depends(rater)) -> dict[str, Any]:
        judgment = session.submit_choice(
            name,
            prompt_id=body.prompt_id,
            step=body.step,
            shown_ids=body.shown,
            best_id=body.best,
            worst_id=body.worst,
            seconds=body.seconds,
        )
        return answered(name, judgment)

    @app.post("/api/undo")
    def undo(body: UndoIn, name: str = Depends(rater)) -> dict[str, Any]:
        undone = session.undo(name, body.judgment_id)
        return {"undone": judgment_view(undone), "next": pair_view(name, session.due(name))}

    @app.get("/api/judgments")
    def mine(name: str = Depends(rater)) -> list[dict[str, Any]]:
        return [judgment_view(j) for j in store.judgments(rater=name, include_undone=True)]

    @app.get("/api/admin/status")
    def status(_: str = Depends(admin)) -> dict[str, Any]:
        return _status(session)

    @app.get("/api/admin/qc")
    def qc(_: str = Depends(admin)) -> dict[str, Any]:
        return export.qc(session)

    @app.get("/api/admin/scores")
    def scores(_: str = Depends(admin)) -> list[dict[str, Any]]:
        return export.scores(session)

    @app.get("/api/admin/preferences.jsonl", response_class=PlainTextResponse)
    def preferences(_: str = Depends(admin)) -> str:
        return export.jsonl_text(export.preferences(session))

    @app.get("/api/admin/events.jsonl", response_class=PlainTextResponse)
    def events(_: str = Depends(admin)) -> str:
        return export.jsonl_text(store.events())

    return app


def _status(session: RankingSession) -> dict[str, Any]:
    raters = {}
    for name in session.store.raters():
        due = session.due(name)
        raters[name] = {
            "judgments": len(session.store.judgments(rater=name)),
            "done": due is None,
            "progress": session.progress(name, due),
            "cost": session.cost(name),
        }
    return {
        "settings": session.settings(),
        "prompts": len(session.prompts),
        "raters": raters,
        "cost": session.cost(),
    }


_STYLE = (
    "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
    "padding:0 1rem}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;"
    "padding:.3rem .8rem;text-align:left}.flag{color:#a40000}</style>"
)


def _no_link_page(had_token: bool) -> str:
    """What a person sees without a (valid) link: what this is and how to get in."""
    problem = (
        "This link's token is not one of this session's."
        if had_token
        else "This page needs your personal link."
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>openended rank</title>{_STYLE}"
        "<h1>Ranking page</h1>"
        f"<p>{problem} Each rater has a link of its own, ending in <code>?token=…</code>: "
        "ask the person who runs this session for yours.</p>"
        "<p>If you run the session: <code>openended rank</code> printed one link per rater, "
        "and one for you (the admin page) when it started; run it again on the same session "
        "folder to see them.</p>"
    )


def _admin_page(session: RankingSession, token: str) -> str:
    """Progress per rater and prompt, QC flags, and the export links."""
    status = _status(session)
    total = status["cost"]
    report = export.qc(session)
    rows = []
    for name, entry in status["raters"].items():
        progress = entry["progress"]
        where = (
            "done"
            if entry["done"]
            else f"prompt {progress['prompt']} of {progress['prompts']}, {progress['unit']} "
            f"{progress['comparison']} of about {progress['about']}"
        )
        cost = entry["cost"]
        flags = report["raters"].get(name, {}).get("flags", [])
        flag_text = "".join(f"<div class=flag>{html.escape(f)}</div>" for f in flags) or "none"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{cost['screens']}</td>"
            f"<td>{cost['item_views']}</td><td>{cost['comparisons_implied']}</td>"
            f"<td>{html.escape(where)}</td><td>{flag_text}</td></tr>"
        )
    links = " · ".join(
        f'<a href="/api/admin/{path}?token={html.escape(token)}">{label}</a>'
        for path, label in (
            ("preferences.jsonl", "preferences (TRL format)"),
            ("scores", "scores"),
            ("qc", "QC (JSON)"),
            ("events.jsonl", "events"),
        )
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>openended rank: admin</title>{_STYLE}"
        f"<h1>Ranking session</h1><p>{status['prompts']} prompts, "
        f"{len(status['raters'])} raters, screen {html.escape(status['settings']['screen'])}; "
        f"human cost so far: {total['screens']} screens, {total['item_views']} item views, "
        f"{total['comparisons_implied']} comparisons implied</p>"
        "<table><tr><th>rater</th><th>screens</th><th>item views</th>"
        "<th>comparisons implied</th><th>where</th><th>QC flags</th></tr>"
        + "".join(rows)
        + f"</table><p>Exports: {links}</p>"
    )
