"""The ranking app through its HTTP API (FastAPI TestClient), on a real SQLite database."""

from __future__ import annotations

import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import openended
from openended.apps.cli import main
from openended.apps.ranking.app import create_app
from openended.apps.ranking.export import write_exports
from openended.apps.ranking.inputs import RankInputError, load_rank_input
from openended.apps.ranking.session import REPEAT_GAP, open_session
from openended.apps.ranking.store import RankingStoreError


def write_input(path: Path, prompts: int = 1, n: int = 8, seed: int = 0) -> None:
    """Prompts whose candidates state their quality ("answer with quality 5")."""
    rng = np.random.default_rng(seed)
    lines = []
    for k in range(prompts):
        qualities = rng.permutation(n)
        candidates = [{"id": f"c{k}-{q}", "text": f"answer with quality {q}"} for q in qualities]
        lines.append(
            json.dumps({"prompt_id": f"q{k}", "prompt": f"Task {k}", "candidates": candidates})
        )
    path.write_text("\n".join(lines) + "\n")


def quality_of(html: str) -> int:
    return int(html.split("quality ")[1].split("<")[0])


class Rater:
    """A client for one rater token; `prefer(left_q, right_q)` decides each pair."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def pair(self) -> dict:
        response = self.client.get("/api/pair", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, view: dict, result: str, **changes: object):
        body = {
            "prompt_id": view["prompt_id"],
            "step": view["step"],
            "left": view["left"]["id"],
            "right": view["right"]["id"],
            "result": result,
        } | changes
        return self.client.post("/api/judgments", headers=self.headers, json=body)

    def finish(self, prefer, limit: int = 500) -> tuple[dict, int]:
        view, count = self.pair(), 0
        while not view["done"] and count < limit:
            left, right = quality_of(view["left"]["html"]), quality_of(view["right"]["html"])
            response = self.post(view, prefer(left, right))
            assert response.status_code == 201, response.text
            view, count = response.json()["next"], count + 1
        return view, count


def honest(left: int, right: int) -> str:
    return "left" if left > right else "right"


@pytest.fixture
def ranked(tmp_path: Path):
    source = tmp_path / "outputs.jsonl"
    write_input(source, prompts=2, n=8)
    session, tokens = open_session(source, raters=["alice", "bob"])
    yield session, tokens, TestClient(create_app(session)), source
    session.store.close()


def count_judgments(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]


def test_a_noiseless_rater_finds_the_best_of_each_prompt(ranked) -> None:
    session, tokens, client, _ = ranked
    view, count = Rater(client, tokens["alice"]).finish(honest)
    schedule = [j for j in session.store.judgments() if j.kind == "schedule"]
    assert view["done"] and 2 * 7 <= len(schedule) <= 2 * 17  # a bracket, at most the budget
    assert count == len(session.store.judgments())
    assert [quality_of(c["html"]) for c in view["choices"]] == [7, 7]
    # The progress line counts comparisons and knows roughly how many are coming.
    first = Rater(client, tokens["bob"]).pair()
    assert first["progress"] == {
        "prompt": 1,
        "prompts": 2,
        "unit": "comparison",
        "comparison": 1,
        "about": 16,
    }


def test_tokens_are_checked_and_refusals_change_nothing(ranked) -> None:
    session, tokens, client, _ = ranked
    alice = Rater(client, tokens["alice"])
    view = alice.pair()
    assert client.get("/api/pair").status_code == 401
    unknown = client.get("/api/pair", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and "unknown token" in unknown.json()["detail"]
    admin_judging = client.get("/api/pair", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert admin_judging.status_code == 403
    assert client.get("/api/admin/qc", headers=alice.headers).status_code == 403
    forged = client.post(
        "/api/judgments",
        headers={"Authorization": "Bearer nope"},
        json={"prompt_id": "q0", "step": 0, "left": "a", "right": "b", "result": "left"},
    )
    assert forged.status_code == 401
    assert count_judgments(session.store.path) == 0
    assert alice.pair() == view


def test_replayed_and_out_of_order_submissions_are_refused(ranked) -> None:
    session, tokens, client, _ = ranked
    alice = Rater(client, tokens["alice"])
    first = alice.pair()
    assert alice.post(first, "left").status_code == 201
    second = alice.pair()
    replay = alice.post(first, "right")
    assert replay.status_code == 409 and "already judged" in replay.json()["detail"]
    ahead = alice.post(second, "left", step=second["step"] + 1)
    assert ahead.status_code == 409 and "out of order" in ahead.json()["detail"]
    swapped = alice.post(second, "left", left=second["right"]["id"], right=second["left"]["id"])
    assert swapped.status_code == 409 and "not the pair shown" in swapped.json()["detail"]
    later_prompt = alice.post(second, "left", prompt_id="q1")
    assert later_prompt.status_code == 409 and "not due" in later_prompt.json()["detail"]
    unknown_prompt = alice.post(second, "left", prompt_id="nope")
    assert unknown_prompt.status_code == 404
    assert alice.post(second, "better").status_code == 422
    assert alice.post(second, "left", extra=1).status_code == 422
    assert count_judgments(session.store.path) == 1
    assert alice.pair() == second
    events = session.store.events()
    assert [e["type"] for e in events] == ["judgment"]


def test_undo_and_each_rater_sees_only_their_own(ranked) -> None:
    session, tokens, client, _ = ranked
    alice, bob = Rater(client, tokens["alice"]), Rater(client, tokens["bob"])
    first = alice.pair()
    assert first["last_judgment_id"] is None
    judged = alice.post(first, "left").json()
    latest = judged["next"]["last_judgment_id"]
    assert latest == judged["judgment"]["id"]
    bob.post(bob.pair(), "right")

    def undo(judgment_id: int):
        return client.post("/api/undo", headers=alice.headers, json={"judgment_id": judgment_id})

    bobs = client.get("/api/judgments", headers=bob.headers).json()[0]["id"]
    assert undo(bobs).status_code == 409  # not alice's: refused
    undone = undo(latest)
    assert undone.status_code == 200
    assert undone.json()["undone"]["result"] == "left"
    assert undone.json()["next"] == first  # the same pair, same sides, is due again
    replayed = undo(latest)  # a retried undo must not withdraw one more
    assert replayed.status_code == 409 and "nothing to undo" in replayed.json()["detail"]
    mine = client.get("/api/judgments", headers=alice.headers).json()
    assert [(j["result"], j["undone"]) for j in mine] == [("left", True)]
    assert [j["result"] for j in client.get("/api/judgments", headers=bob.headers).json()] == [
        "right"
    ]
    assert alice.post(first, "right").status_code == 201
    second = alice.pair()
    alice.post(second, "left")
    stale = undo(second["last_judgment_id"])  # not the latest any more
    assert stale.status_code == 409 and "not this rater's latest" in stale.json()["detail"]
    assert [e["type"] for e in session.store.events()] == [
        "judgment",
        "judgment",
        "undo",
        "judgment",
        "judgment",
    ]


def test_concurrent_submissions_of_one_pair_record_it_once(ranked) -> None:
    """Two tabs (threads) submit the same step at once: one is recorded, one refused."""
    session, tokens, client, _ = ranked
    alice = Rater(client, tokens["alice"])
    view = alice.pair()
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda r: alice.post(view, r).status_code, ["left", "right"] * 4))
    assert codes == [201] + [409] * 7
    assert count_judgments(session.store.path) == 1


def test_outputs_are_escaped_and_code_is_highlighted(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    fenced = "Use this:\n```python\ndef f():\n    return '<b>'\n```\nDone."
    source.write_text(json.dumps({"prompt": evil, "candidates": [evil, fenced]}) + "\n")
    session, tokens = open_session(source, raters=["alice"])
    view = Rater(TestClient(create_app(session)), tokens["alice"]).pair()
    by_id = {view["left"]["id"]: view["left"]["html"], view["right"]["id"]: view["right"]["html"]}
    assert "<script>" not in by_id["0"] and "<img" not in by_id["0"]
    assert "&lt;script&gt;" in by_id["0"]
    assert 'class="hl"' in by_id["1"] and "&lt;b&gt;" in by_id["1"] and "Done." in by_id["1"]
    session.store.close()


@pytest.mark.slow  # a long session
def test_a_repeat_never_shows_a_recent_pair(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    write_input(source, prompts=3, n=16)
    session, tokens = open_session(source, raters=["alice", "bob"], repeat_rate=0.3)
    client = TestClient(create_app(session))
    for name in ("alice", "bob"):
        Rater(client, tokens[name]).finish(honest)
    judged = session.store.judgments()
    repeats = [j for j in judged if j.kind == "repeat"]
    assert len(repeats) >= 10
    by_id = {j.id: j for j in judged}
    for repeat in repeats:
        assert repeat.step - by_id[repeat.repeat_of].step > REPEAT_GAP
    session.store.close()


def test_judgments_are_committed_and_a_restart_resumes_each_rater(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    write_input(source, n=16)
    session, tokens = open_session(source, raters=["alice"])
    assert session.store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    alice = Rater(TestClient(create_app(session)), tokens["alice"])
    for _ in range(5):
        view = alice.pair()
        assert (
            alice.post(
                view, honest(quality_of(view["left"]["html"]), quality_of(view["right"]["html"]))
            ).status_code
            == 201
        )
        # Committed before the answer: another connection already sees it.
        assert count_judgments(session.store.path) == view["step"] + 1
    due = alice.pair()
    session.store.close()

    again, tokens_again = open_session(source, raters=["alice", "carol"])
    assert tokens_again["alice"] == tokens["alice"] and "carol" in tokens_again
    alice = Rater(TestClient(create_app(again)), tokens["alice"])
    assert alice.pair() == due
    view, _ = alice.finish(honest)
    assert quality_of(view["choices"][0]["html"]) == 15
    again.store.close()


def test_the_database_refuses_other_input_or_settings(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    write_input(source)
    for bad in ({"repeat_rate": 1.5}, {"threshold": 5}, {"budget": -3}, {"mode": "worst"}):
        with pytest.raises(RankingStoreError, match=f"{next(iter(bad))} = .*: must be"):
            open_session(source, **bad)
    assert not (tmp_path / "outputs.ranking.sqlite").exists()  # refused before anything
    with pytest.raises(RankingStoreError, match="no ranking database"):
        open_session(source, create=False)
    session, _ = open_session(source, raters=["alice"], budget=20)
    session.store.close()
    with pytest.raises(RankingStoreError, match="budget = 20, not 30"):
        open_session(source, budget=30)
    session, _ = open_session(source)  # left out: the stored settings
    assert session.budget == 20
    session.store.close()
    write_input(source, seed=1)
    with pytest.raises(RankingStoreError, match="other input"):
        open_session(source)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('{"prompt": "x"}', "line 2: key 'candidates' must be a list of at least 2"),
        ('{"prompt": "x", "candidates": ["only one"]}', "at least 2"),
        ('{"prompt": 3, "candidates": ["a", "b"]}', "line 2: key 'prompt' must be a string"),
        ('{"prompt": "x", "candidates": ["a", 5]}', "line 2: candidates[1]: expected a string"),
        ('{"prompt": "x", "candidates": ["a", "b"], "output": 1}', "unknown key 'output'"),
        (
            '{"prompt_id": "same", "prompt": "x", "candidates": ["a", "b"]}',
            "already used on line 1",
        ),
        (
            '{"prompt": "x", "candidates": [{"id": "k", "text": "a"}, {"id": "k", "text": "b"}]}',
            "candidate id 'k' appears twice",
        ),
    ],
)
def test_malformed_input_files_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(
        '{"prompt_id": "same", "prompt": "x", "candidates": ["a", "b"]}\n' + line + "\n"
    )
    with pytest.raises(RankInputError, match=rf"bad.jsonl: .*{re.escape(message)}"):
        load_rank_input(source)
    assert main(["rank", str(source), "--raters", "1"]) == 2
    assert not (tmp_path / "bad.ranking.sqlite").exists()


@pytest.mark.slow  # four raters finish two sessions
def test_quality_control_flags_a_rater_who_flips_preferences(tmp_path: Path) -> None:
    """Three raters with Bradley-Terry noise and one who picks the worse output: the QC
    report flags only the flipper; repeats come back with sides swapped."""
    source = tmp_path / "outputs.jsonl"
    write_input(source, prompts=2, n=16)
    names = ["r1", "r2", "r3", "flipper"]
    session, tokens = open_session(source, raters=names, repeat_rate=0.15)
    client = TestClient(create_app(session))
    rng = np.random.default_rng(0)

    def noisy(left: int, right: int) -> str:
        p_left = 1 / (1 + np.exp(-(left - right) * 0.8))
        return "left" if rng.random() < p_left else "right"

    for name in names:
        prefer = (
            (lambda left, right: "right" if noisy(left, right) == "left" else "left")
            if name == "flipper"
            else noisy
        )
        view, _ = Rater(client, tokens[name]).finish(prefer)
        assert view["done"]
    report = client.get(
        "/api/admin/qc", headers={"Authorization": f"Bearer {tokens['admin']}"}
    ).json()
    flagged = {name for name, entry in report["raters"].items() if entry["flagged"]}
    assert flagged == {"flipper"}, report["raters"]
    assert "adversarial" in report["raters"]["flipper"]["flags"][0]
    assert report["raters"]["r1"]["consensus_agreement"] > 0.6
    kappas = {tuple(a["raters"]): a["kappa"] for a in report["agreement"]}
    assert kappas[("r1", "r2")] > 0.2 and kappas[("r1", "flipper")] < 0
    repeats = [j for j in session.store.judgments() if j.kind == "repeat"]
    assert repeats
    by_id = {j.id: j for j in session.store.judgments()}
    for repeat in repeats:
        original = by_id[repeat.repeat_of]
        assert (repeat.left_idx, repeat.right_idx) == (original.right_idx, original.left_idx)

    paths = write_exports(session, tmp_path / "export")
    rows = [json.loads(line) for line in paths["preferences"].read_text().splitlines()]
    assert rows and set(rows[0]) >= {"prompt", "chosen", "rejected", "prompt_id", "margin", "rater"}
    honest_rows = [r for r in rows if r["rater"] != "flipper"]
    better = [quality_of(r["chosen"]) > quality_of(r["rejected"]) for r in honest_rows]
    assert np.mean(better) > 0.7
    scores = [json.loads(line) for line in paths["scores"].read_text().splitlines()]
    top = [s for s in scores if s["rank"] == 1]
    assert len(top) == 2 and all(s["candidate_id"].endswith(("-15", "-14", "-13")) for s in top)
    events = paths["events"].read_text().splitlines()
    assert len(events) == len(session.store.judgments())
    assert json.loads(paths["qc"].read_text())["raters"]["flipper"]["flagged"]
    session.store.close()


def test_full_ranking_mode_sorts_with_merge_insertion(tmp_path: Path) -> None:
    source = tmp_path / "outputs.jsonl"
    write_input(source, n=8)
    session, tokens = open_session(source, raters=["alice"], mode="full", repeat_rate=0.0)
    client = TestClient(create_app(session))
    view, count = Rater(client, tokens["alice"]).finish(honest)
    assert view["done"] and count <= 16  # merge-insertion sorts 8 items in at most 16
    ranks = [
        s["candidate_id"]
        for s in client.get(
            "/api/admin/scores", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()
    ]
    assert ranks[0] == "c0-7"
    session.store.close()


def test_rank_a_run_directory_and_export_from_the_cli(
    small_config, scripted_lm, tmp_path: Path
) -> None:
    run_dir = openended.run(small_config(), lm=scripted_lm).run_dir
    prompts = load_rank_input(run_dir)
    assert len(prompts) == 1 and len(prompts[0].candidates) >= 2
    assert prompts[0].language == "python"  # symbolic regression candidates are code
    session, tokens = open_session(run_dir, raters=["alice"])
    client = TestClient(create_app(session))
    view = Rater(client, tokens["alice"]).pair()
    assert 'class="hl"' in view["left"]["html"]  # highlighted by Pygments
    Rater(client, tokens["alice"]).post(view, "left")
    session.store.close()
    out = tmp_path / "export"
    assert main(["rank", str(run_dir), "--export", str(out)]) == 0
    assert len((out / "preferences.jsonl").read_text().splitlines()) == 1
    assert (run_dir / "ranking.sqlite").exists()


def test_without_a_link_the_page_says_so_and_the_admin_view_is_a_page(ranked) -> None:
    _, tokens, client, _ = ranked
    for url in ("/", "/?token=nope"):
        page = client.get(url)
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
        assert "ask the person who runs this session for yours" in page.text
        assert "detail" not in page.text  # no developer JSON
    Rater(client, tokens["alice"]).finish(lambda left, right: "left")  # always the left side
    view = client.get(f"/admin?token={tokens['admin']}")
    assert view.status_code == 200 and "<table>" in view.text
    assert "alice" in view.text and "bob" in view.text
    assert "done" in view.text and "prompt 1 of 2, comparison 1 of about" in view.text
    assert "position bias: picked the left side 100% of the time" in view.text
    assert client.get(f"/?token={tokens['admin']}").text == view.text  # the admin's link
    assert client.get(f"/admin?token={tokens['alice']}").status_code == 403


def test_eight_left_choices_of_eight_are_flagged_as_position_bias() -> None:
    from openended.apps.ranking.quality import _flags, _position
    from openended.apps.ranking.store import StoredJudgment

    def judgment(i: int, result: str) -> StoredJudgment:
        return StoredJudgment(
            id=i,
            rater="r",
            prompt_idx=0,
            step=i,
            kind="schedule",
            left_idx=0,
            right_idx=1,
            result=result,
            repeat_of=None,
            seconds=None,
            created=0.0,
        )

    left8 = _position([judgment(i, "left") for i in range(8)])
    assert round(left8["p_value"], 4) == 0.0078
    assert _flags({"position": left8}, 0, 0, 0, 0) == [
        "position bias: picked the left side 100% of the time (p = 0.00781)"
    ]
    mixed = _position([judgment(i, "left" if i % 2 else "right") for i in range(8)])
    assert _flags({"position": mixed}, 0, 0, 0, 0) == []
