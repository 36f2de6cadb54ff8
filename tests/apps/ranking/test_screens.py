"""Multi-way screens through the HTTP API (FastAPI TestClient) on a real SQLite database:
the best of K, the best and the worst of K, with the same guarantees as pairs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openended.apps.cli import main
from openended.apps.ranking.app import create_app
from openended.apps.ranking.export import preferences, write_exports
from openended.apps.ranking.quality import quality_report
from openended.apps.ranking.session import open_session
from openended.apps.ranking.store import RankingStoreError
from tests.apps.ranking.test_app import Rater, count_judgments, honest, quality_of, write_input


class ScreenRater:
    """A client for one rater token that answers multi-way screens."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def screen(self) -> dict:
        response = self.client.get("/api/screen", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, view: dict, best: str, worst: str | None = None, **changes: object):
        body = {
            "prompt_id": view["prompt_id"],
            "step": view["step"],
            "shown": [item["id"] for item in view["items"]],
            "best": best,
            "worst": worst,
        } | changes
        return self.client.post("/api/choices", headers=self.headers, json=body)

    def answer(self, view: dict, pick_slot=None):
        """The honest answer (or the slot `pick_slot(view)` picks as best)."""
        by_quality = sorted(view["items"], key=lambda item: -quality_of(item["html"]))
        best = by_quality[0]["id"]
        if pick_slot is not None:
            best = view["items"][pick_slot(view)]["id"]
        worst = None
        if view["screen"]["asks_worst"]:
            worst = next(i["id"] for i in reversed(by_quality) if i["id"] != best)
        return self.post(view, best, worst)

    def finish(self, pick_slot=None, limit: int = 500) -> tuple[dict, int]:
        view, count = self.screen(), 0
        while not view["done"] and count < limit:
            response = self.answer(view, pick_slot)
            assert response.status_code == 201, response.text
            view, count = response.json()["next"], count + 1
        return view, count


def open_screens(tmp_path: Path, screen: str, *, prompts: int = 1, n: int = 8, **settings):
    source = tmp_path / "outputs.jsonl"
    write_input(source, prompts=prompts, n=n)
    session, tokens = open_session(source, raters=["alice", "bob"], screen=screen, **settings)
    return session, tokens, TestClient(create_app(session)), source


@pytest.mark.parametrize("screen", ["best-of-4", "best-worst-4", "best-of-3", "best-worst-6"])
def test_a_noiseless_rater_finds_the_best_with_every_screen(tmp_path: Path, screen: str) -> None:
    session, tokens, client, _ = open_screens(tmp_path, screen, prompts=2, n=12)
    rater = ScreenRater(client, tokens["alice"])
    first = rater.screen()
    k = int(screen.rsplit("-", 1)[1])
    assert first["screen"] == {
        "kind": screen.rsplit("-", 1)[0],
        "k": k,
        "asks_worst": screen.startswith("best-worst"),
    }
    assert len(first["items"]) == k and "left" not in first
    assert first["progress"]["unit"] == "screen"
    view, count = rater.finish()
    assert view["done"] and count == len(session.store.judgments(rater="alice"))
    assert [quality_of(c["html"]) for c in view["choices"]] == [11, 11]
    judged = session.store.judgments(rater="alice")
    assert all(j.is_choice and len(j.shown) == k for j in judged)
    # the human cost, counted three ways
    cost = session.cost("alice")
    per_screen = k - 1 + (k - 2 if screen.startswith("best-worst") else 0)
    assert cost == {
        "screens": count,
        "item_views": k * count,
        "comparisons_implied": per_screen * count,
    }
    session.store.close()


def test_malformed_answers_are_refused_naming_the_screen_due(tmp_path: Path) -> None:
    session, tokens, client, _ = open_screens(tmp_path, "best-worst-4")
    alice = ScreenRater(client, tokens["alice"])
    view = alice.screen()
    ids = [item["id"] for item in view["items"]]
    due = "the screen due is step 0 of prompt 'q0'"

    def refused(response, status: int, text: str) -> None:
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert text in detail and due in detail, detail

    refused(alice.post(view, "c0-99", ids[1]), 422, "the best ('c0-99') is not on the screen")
    refused(alice.post(view, ids[0], "c0-99"), 422, "the worst ('c0-99') is not on the screen")
    refused(alice.post(view, ids[0], ids[0]), 422, "the best and the worst are the same item")
    refused(alice.post(view, ids[0]), 422, "asks for the worst too")
    refused(alice.post(view, ids[0], ids[1], shown=ids[::-1]), 409, "not those shown")
    refused(alice.post(view, ids[0], ids[1], step=1), 409, "out of order")
    pair_answer = {"prompt_id": "q0", "step": 0, "left": ids[0], "right": ids[1], "result": "left"}
    refused(
        client.post("/api/judgments", headers=alice.headers, json=pair_answer), 422, "not a pair"
    )
    assert count_judgments(session.store.path) == 0  # refusals change nothing
    assert alice.screen() == view

    assert alice.post(view, ids[2], ids[3]).status_code == 201
    stale = alice.post(view, ids[2], ids[3])  # the same answer again: a replay
    assert stale.status_code == 409 and "already judged" in stale.json()["detail"]
    assert "the screen due is step 1 of prompt 'q0'" in stale.json()["detail"]
    session.store.close()


def test_best_of_k_refuses_a_worst(tmp_path: Path) -> None:
    session, tokens, client, _ = open_screens(tmp_path, "best-of-4")
    alice = ScreenRater(client, tokens["alice"])
    view = alice.screen()
    ids = [item["id"] for item in view["items"]]
    response = alice.post(view, ids[0], ids[1])
    assert response.status_code == 422 and "asks for the best only" in response.json()["detail"]
    session.store.close()


def test_undo_and_a_restart_resume_the_same_screens(tmp_path: Path) -> None:
    session, tokens, client, source = open_screens(tmp_path, "best-of-4", n=12)
    alice = ScreenRater(client, tokens["alice"])
    views = [alice.screen()]
    for _ in range(4):
        response = alice.answer(views[-1])
        views.append(response.json()["next"])
    last = session.last_judgment("alice")
    undone = client.post("/api/undo", headers=alice.headers, json={"judgment_id": last.id})
    assert undone.status_code == 200
    assert undone.json()["next"] == views[3]  # the undone screen is due again, same slots
    session.store.close()

    reopened, _ = open_session(source)
    again = ScreenRater(TestClient(create_app(reopened)), tokens["alice"])
    assert again.screen() == views[3]
    assert reopened.settings()["screen"] == "best-of-4"
    reopened.store.close()
    with pytest.raises(RankingStoreError, match="screen = 'best-of-4', not 'pair'"):
        open_session(source, screen="pair")


def test_a_qc_repeat_shows_an_earlier_screen_with_every_item_moved(tmp_path: Path) -> None:
    session, tokens, client, _ = open_screens(tmp_path, "best-worst-4", n=40, repeat_rate=0.3)
    alice = ScreenRater(client, tokens["alice"])
    alice.finish()
    judged = session.store.judgments(rater="alice")
    by_id = {j.id: j for j in judged}
    repeats = [j for j in judged if j.kind == "repeat"]
    assert len(repeats) >= 3
    for repeat in repeats:
        original = by_id[repeat.repeat_of]
        assert set(repeat.shown) == set(original.shown)
        assert all(a != b for a, b in zip(repeat.shown, original.shown, strict=True))
    sizes = [len(p.candidates) for p in session.prompts]
    entry = quality_report(judged, ["alice"], sizes)["raters"]["alice"]
    assert entry["repeats"] == len(repeats) and entry["self_consistency"] == 1.0
    assert entry["flags"] == []
    session.store.close()


def test_a_rater_who_always_picks_the_first_slot_is_flagged(tmp_path: Path) -> None:
    session, tokens, client, _ = open_screens(tmp_path, "best-of-4", n=40)
    ScreenRater(client, tokens["alice"]).finish(pick_slot=lambda view: 0)
    ScreenRater(client, tokens["bob"]).finish()
    sizes = [len(p.candidates) for p in session.prompts]
    report = quality_report(session.store.judgments(), ["alice", "bob"], sizes)
    alice, bob = report["raters"]["alice"], report["raters"]["bob"]
    assert alice["position"]["best_slot_shares"][0] == 1.0
    assert any("position bias" in flag for flag in alice["flags"])
    assert not any("position bias" in flag for flag in bob["flags"])
    session.store.close()


def test_export_expands_each_answer_into_pairs_with_its_screen_id(tmp_path: Path) -> None:
    session, tokens, client, _ = open_screens(tmp_path, "best-worst-4", n=8)
    alice = ScreenRater(client, tokens["alice"])
    view = alice.screen()
    ranked = sorted(view["items"], key=lambda item: -quality_of(item["html"]))
    assert alice.post(view, ranked[0]["id"], ranked[-1]["id"]).status_code == 201
    rows = preferences(session)
    assert len(rows) == 5  # the best over 3, and 2 more over the worst
    assert {row["screen_id"] for row in rows} == {session.last_judgment("alice").id}
    assert {row["screen"] for row in rows} == {"best-worst-4"}
    chosen = {(row["chosen_id"], row["rejected_id"]) for row in rows}
    ids = [item["id"] for item in ranked]
    assert chosen == {
        (ids[0], ids[1]),
        (ids[0], ids[2]),
        (ids[0], ids[3]),
        (ids[1], ids[3]),
        (ids[2], ids[3]),
    }
    for row in rows:  # TRL's preference format: the texts, chosen over rejected
        assert quality_of(row["chosen"] + "<") > quality_of(row["rejected"] + "<")
    paths = write_exports(session, tmp_path / "export")
    scores = [line for line in paths["scores"].read_text().splitlines() if line]
    assert len(scores) == 8 and '"views": 1' in scores[0]
    status = client.get(
        "/api/admin/status", headers={"Authorization": f"Bearer {tokens['admin']}"}
    ).json()
    assert status["cost"] == {"screens": 1, "item_views": 4, "comparisons_implied": 5}
    assert status["settings"]["screen"] == "best-worst-4"
    session.store.close()


def test_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    write_input(source)
    with pytest.raises(RankingStoreError, match="screen = 'best-of-9': must be"):
        open_session(source, screen="best-of-9")
    with pytest.raises(RankingStoreError, match="mode full asks for pairs"):
        open_session(source, mode="full", screen="best-of-4")


def test_a_database_from_before_multi_way_screens_resumes(tmp_path: Path) -> None:
    """A pair session whose database lacks the columns and the setting added for
    multi-way screens opens, gets them, and resumes the rater where they were."""
    source = tmp_path / "outputs.jsonl"
    write_input(source, n=8)
    session, tokens = open_session(source, raters=["alice"])
    alice = Rater(TestClient(create_app(session)), tokens["alice"])
    for _ in range(3):
        view = alice.pair()
        left, right = quality_of(view["left"]["html"]), quality_of(view["right"]["html"])
        assert alice.post(view, honest(left, right)).status_code == 201
    due = alice.pair()
    session.store.close()
    old_table = """CREATE TABLE judgments (
        id INTEGER PRIMARY KEY, rater TEXT NOT NULL, prompt_idx INTEGER NOT NULL,
        step INTEGER NOT NULL, kind TEXT NOT NULL, left_idx INTEGER NOT NULL,
        right_idx INTEGER NOT NULL, result TEXT NOT NULL, repeat_of INTEGER, seconds REAL,
        created REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0)"""
    columns = "id, rater, prompt_idx, step, kind, left_idx, right_idx, result, repeat_of, "
    columns += "seconds, created, undone"
    with sqlite3.connect(session.store.path) as db:  # the schema as it was
        db.executescript(
            f"ALTER TABLE judgments RENAME TO new; {old_table};"
            f"INSERT INTO judgments SELECT {columns} FROM new; DROP TABLE new;"
        )
        settings = json.loads(
            db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0]
        )
        del settings["screen"]
        db.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(settings),))

    again, _ = open_session(source)
    alice = Rater(TestClient(create_app(again)), tokens["alice"])
    assert alice.pair() == due and again.settings()["screen"] == "pair"
    view, _ = alice.finish(honest)
    assert quality_of(view["choices"][0]["html"]) == 7
    assert len(preferences(again)) == len(again.store.judgments())
    again.store.close()


def test_the_cli_takes_a_screen_and_exports_its_answers(tmp_path: Path, capsys) -> None:
    session, tokens, client, source = open_screens(tmp_path, "best-of-3")
    rater = ScreenRater(client, tokens["alice"])
    assert rater.answer(rater.screen()).status_code == 201
    session.store.close()
    out = tmp_path / "export"
    assert main(["rank", str(source), "--screen", "best-of-3", "--export", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {row["screen"] for row in rows} == {"best-of-3"}
    assert main(["rank", str(source), "--screen", "best-of-4", "--export", str(out)]) != 0
    assert "was started with screen = 'best-of-3', not 'best-of-4'" in capsys.readouterr().err


def test_prompts_with_fewer_candidates_than_k_get_smaller_screens(tmp_path: Path) -> None:
    """best-worst-4 on a prompt of 3 candidates shows 3; on a prompt of 2, a pair (a tie
    allowed), answered as a pair."""
    source = tmp_path / "outputs.jsonl"
    lines = [
        {
            "prompt_id": "two",
            "prompt": "A?",
            "candidates": ["answer with quality 1", "answer with quality 2"],
        },
        {
            "prompt_id": "three",
            "prompt": "B?",
            "candidates": [f"answer with quality {q}" for q in (5, 9, 7)],
        },
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    session, tokens = open_session(source, raters=["alice"], screen="best-worst-4")
    client = TestClient(create_app(session))
    pair_rater, rater = Rater(client, tokens["alice"]), ScreenRater(client, tokens["alice"])
    view = rater.screen()
    assert view["screen"]["kind"] == "pair" and "left" in view
    choice = rater.post(view, view["items"][0]["id"], view["items"][1]["id"])
    assert choice.status_code == 422 and "this screen is a pair" in choice.json()["detail"]
    while not view["done"] and view["prompt_id"] == "two":
        response = pair_rater.post(view, "tie")
        assert response.status_code == 201, response.text
        view = response.json()["next"]
    assert view["prompt_id"] == "three" and view["screen"]["k"] == 3
    view, _ = rater.finish()
    assert view["done"] and quality_of(view["choices"][1]["html"]) == 9
    session.store.close()
