"""The report in a real headless Chromium: follow the lineage of the best back to a seed,
open a candidate's page with its diff and whole error, and watch the live view reload
when a batch is committed after the page was opened."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

import openended
from openended.apps.report.live import create_live_app
from openended.lm.scripted import ScriptedLM
from tests.apps.ranking.test_browser import CHROMIUM, free_port
from tests.domains.test_program import scripted, task  # noqa: F401  (the fixture)

if not os.environ.get("OPENENDED_REQUIRE_BROWSER"):
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)
from playwright import sync_api as playwright_sync

pytestmark = pytest.mark.slow  # starts Chromium


@pytest.fixture
def live(task: dict) -> Iterator[tuple[str, Path]]:  # noqa: F811
    result = openended.run(task, lm=ScriptedLM(scripted))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_live_app(result.run_dir), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", result.run_dir
    server.should_exit = True
    thread.join(timeout=10)


def test_lineage_candidate_pages_and_the_live_view(live: tuple[str, Path]) -> None:
    url, run_dir = live
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        assert "What happened" in page.content()
        batches = page.locator("text=session 1: budget: LM calls (4)")
        assert batches.count() == 1
        # follow the lineage from the best (highlighted) back to a seed, node by node
        best = page.locator("svg.lineage a").last
        best.click()
        page.wait_for_url("**/candidates/*.html")
        while "none (a seed)" not in page.content():
            page.locator("th:text('parents') + td a").first.click()
            page.wait_for_load_state()
        assert "<td>seed</td>" in page.content()
        # a child's page: its diff against the parent, highlighted
        page.goto(url)
        page.locator("svg.lineage a").last.click()
        page.wait_for_url("**/candidates/*.html")
        assert page.locator("pre.diff .del").count() >= 1
        assert page.locator("pre.diff .add").count() >= 1
        # a failed candidate: its whole error on its page
        page.goto(url)
        page.locator("details summary").first.click()
        page.locator("details a").first.click()
        page.wait_for_url("**/candidates/*.html")
        assert page.locator("pre.error").count() == 1
        # the live view: a batch committed after the page was opened shows up by itself
        page.goto(url)
        before = page.locator("text=LM calls").first.evaluate("e => e.parentElement.innerText")
        openended.resume(run_dir, overrides=["budget.max_lm_calls=6"], lm=ScriptedLM(scripted))
        page.wait_for_function(
            "() => document.body.innerText.includes('session 2: budget: LM calls (6)')",
            timeout=20_000,
        )
        after = page.locator("text=LM calls").first.evaluate("e => e.parentElement.innerText")
        assert before != after
        browser.close()
