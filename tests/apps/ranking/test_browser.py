"""End to end in a real headless Chromium: a rater completes a best-of-8 session in the
page, by clicking and by keys, served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from openended.apps.ranking.app import create_app
from openended.apps.ranking.session import open_session

CHROMIUM = Path("/usr/bin/chromium")
# CI installs both (.ci/run); elsewhere the test is skipped when either is missing.
if not os.environ.get("OPENENDED_REQUIRE_BROWSER"):
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)
from playwright import sync_api as playwright_sync  # noqa: E402

pytestmark = pytest.mark.slow  # starts Chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], object]]:
    source = tmp_path / "outputs.jsonl"
    code = "def best():\n    return {q}  # quality {q}\n"
    candidates = [{"id": f"c{q}", "text": code.format(q=q)} for q in (3, 0, 6, 1, 7, 4, 2, 5)]
    line = {"prompt": "Which function is best?", "candidates": candidates, "language": "python"}
    source.write_text(json.dumps(line) + "\n")
    session, tokens = open_session(source, raters=["alice"])
    yield from _serve(session, tokens)


def _serve(session, tokens: dict[str, str]) -> Iterator[tuple[str, dict[str, str], object]]:
    """The app on 127.0.0.1 (uvicorn in a thread) while the test runs."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(session), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", tokens, session
    server.should_exit = True
    thread.join(timeout=10)
    session.store.close()


def wait_for_next(page, before: str) -> None:
    """Until the progress line moves on from `before` (the answer was taken)."""
    page.wait_for_function(
        "before => document.getElementById('progress').textContent !== before", arg=before
    )


def shown_quality(page, side: str) -> int:
    text = page.locator(f"#{side}").inner_text()
    return int(re.search(r"quality (\d+)", text).group(1))


def test_a_rater_finds_the_best_of_8_by_clicking_and_by_keys(served) -> None:
    base, tokens, session = served
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        page.goto(f"{base}/?token={tokens['alice']}")
        page.wait_for_selector("#rating:not([hidden])")
        assert re.fullmatch(r"comparison 1 of about \d+", page.inner_text("#progress"))
        assert page.locator("#left .hl").count() == 1  # code is highlighted

        # A click, then undo it with the button: the same pair comes back.
        first = (page.locator("#left").inner_text(), page.locator("#right").inner_text())
        page.click("#choose-tie")
        page.wait_for_selector("#progress:has-text('comparison 2 ')")
        page.click("#undo")
        page.wait_for_selector("#progress:has-text('comparison 1 ')")
        assert (page.locator("#left").inner_text(), page.locator("#right").inner_text()) == first

        comparisons = 0
        while page.locator("#done").is_hidden():
            left, right = shown_quality(page, "left"), shown_quality(page, "right")
            before = page.inner_text("#progress")
            if comparisons % 2 == 0:  # alternately click a button and press a key
                page.click("#choose-left" if left > right else "#choose-right")
            else:
                page.keyboard.press("a" if left > right else "ArrowRight")
            comparisons += 1
            wait_for_next(page, before)
            assert comparisons < 40
        assert page.locator("#choices .choice").get_attribute("data-candidate") == "c7"
        assert page.inner_text("#message") == ""
        browser.close()

    judged = session.store.judgments(rater="alice")
    assert len(judged) == comparisons >= 7
    assert len(session.store.judgments(rater="alice", include_undone=True)) == comparisons + 1
    assert all(j.result in ("left", "right") for j in judged)


@pytest.fixture
def served_screens(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], object]]:
    source = tmp_path / "outputs.jsonl"
    code = "def best():\n    return {q}  # quality {q}\n"
    candidates = [{"id": f"c{q}", "text": code.format(q=q)} for q in (3, 0, 6, 1, 7, 4, 2, 5)]
    line = {"prompt": "Which function is best?", "candidates": candidates, "language": "python"}
    source.write_text(json.dumps(line) + "\n")
    session, tokens = open_session(source, raters=["alice"], screen="best-of-4")
    yield from _serve(session, tokens)


def slot_qualities(page) -> list[int]:
    panes = page.locator("#multi .item")
    return [
        int(re.search(r"quality (\d+)", panes.nth(k).inner_text()).group(1))
        for k in range(panes.count())
    ]


def test_a_rater_finds_the_best_of_8_on_best_of_4_screens(served_screens) -> None:
    base, tokens, session = served_screens
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        page.goto(f"{base}/?token={tokens['alice']}")
        page.wait_for_selector("#rating-multi:not([hidden])")
        assert page.locator("#rating").is_hidden()
        assert re.fullmatch(r"screen 1 of about \d+", page.inner_text("#progress"))
        assert page.locator("#multi .item").count() == 4
        assert page.locator("#multi .item .hl").count() == 4  # code is highlighted
        assert page.inner_text("#question") == "Which of these 4 is best?"

        # Pick the worst on purpose with a key, then undo: the same screen comes back.
        first = slot_qualities(page)
        page.keyboard.press(str(first.index(min(first)) + 1))
        page.wait_for_selector("#progress:has-text('screen 2 ')")
        page.keyboard.press("u")
        page.wait_for_selector("#progress:has-text('screen 1 ')")
        assert slot_qualities(page) == first

        screens = 0
        while page.locator("#done").is_hidden():
            qualities = slot_qualities(page)
            slot = qualities.index(max(qualities)) + 1
            before = page.inner_text("#progress")
            if screens % 2 == 0:  # alternately click a pane's button and press its number
                page.click(f"#best-{slot}")
            else:
                page.keyboard.press(str(slot))
            screens += 1
            wait_for_next(page, before)
            assert screens < 20
        assert page.locator("#choices .choice").get_attribute("data-candidate") == "c7"
        assert page.inner_text("#message") == ""
        browser.close()

    judged = session.store.judgments(rater="alice")
    assert len(judged) == screens >= 3
    assert len(session.store.judgments(rater="alice", include_undone=True)) == screens + 1
    assert all(j.is_choice and len(j.shown) == 4 for j in judged)


@pytest.fixture
def served_best_worst(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], object]]:
    source = tmp_path / "outputs.jsonl"
    candidates = [{"id": f"c{q}", "text": f"answer with quality {q}"} for q in range(8)]
    source.write_text(json.dumps({"prompt": "Which answer?", "candidates": candidates}) + "\n")
    session, tokens = open_session(source, raters=["alice"], screen="best-worst-4")
    yield from _serve(session, tokens)


def test_best_worst_screens_take_keys_b_w_and_refuse_one_item_as_both(
    served_best_worst,
) -> None:
    base, tokens, session = served_best_worst
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        page.goto(f"{base}/?token={tokens['alice']}")
        page.wait_for_selector("#rating-multi:not([hidden])")
        assert page.inner_text("#question") == "Pick the best and the worst of these 4"

        # W first: the next number marks the worst; then B and a number send the answer.
        qualities = slot_qualities(page)
        worst, best = qualities.index(min(qualities)) + 1, qualities.index(max(qualities)) + 1
        page.keyboard.press("w")
        page.keyboard.press(str(worst))
        assert "worst" in page.locator(f"#item-{worst}").get_attribute("class")
        before = page.inner_text("#progress")
        page.keyboard.press("b")
        page.keyboard.press(str(best))
        wait_for_next(page, before)
        first = session.store.judgments(rater="alice")[0]
        names = [c.id for c in session.prompts[0].candidates]
        assert (names[first.best_idx], names[first.worst_idx]) == (
            "c" + str(max(qualities)),
            "c" + str(min(qualities)),
        )

        # The same item as best and worst is refused on the page, then clicks finish it.
        screens = 1
        while page.locator("#done").is_hidden():
            qualities = slot_qualities(page)
            best = qualities.index(max(qualities)) + 1
            worst = qualities.index(min(qualities)) + 1
            before = page.inner_text("#progress")
            if screens == 1:
                page.keyboard.press(str(best))
                page.keyboard.press(str(best))
                assert "must differ" in page.inner_text("#message")
                page.click(f"#worst-{worst}")
            else:
                page.click(f"#best-{best}")
                page.click(f"#worst-{worst}")
            screens += 1
            wait_for_next(page, before)
            assert screens < 20
        assert page.locator("#choices .choice").get_attribute("data-candidate") == "c7"
        browser.close()
    judged = session.store.judgments(rater="alice")
    assert len(judged) == screens and all(j.worst_idx is not None for j in judged)
