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
            page.wait_for_function(
                "before => document.getElementById('progress').textContent !== before",
                arg=before,
            )
            assert comparisons < 40
        assert page.locator("#choices .choice").get_attribute("data-candidate") == "c7"
        assert page.inner_text("#message") == ""
        browser.close()

    judged = session.store.judgments(rater="alice")
    assert len(judged) == comparisons >= 7
    assert len(session.store.judgments(rater="alice", include_undone=True)) == comparisons + 1
    assert all(j.result in ("left", "right") for j in judged)
